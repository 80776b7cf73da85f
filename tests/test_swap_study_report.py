"""The swap study's summary: means over seeds, recovery and extrapolation as tests, DroPE's claim on nope."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from report_swap_study import timing  # noqa: E402

from hf_posenc.evaluation.study import aggregate, curves, drope, extrapolation, literature, summarize  # noqa: E402

WINDOW, LENGTHS = 256, [256, 512, 1024]


def result(values: list[float], passkey: list[float] | None = None, spans: list[list[float]] | None = None) -> dict:
    """One seed's evaluation: chunked perplexity `values` at LENGTHS (with per-span losses `spans[length]` when
    given); passkey accuracy at one depth per length."""
    records = [
        {"length": n, "mode": "chunked", "status": "ok", "perplexity": v, "loss": math.log(v)}
        | ({"document_losses": spans[i]} if spans else {})
        for i, (n, v) in enumerate(zip(LENGTHS, values))
    ]
    records.append({"length": 2048, "mode": "chunked", "status": "unsupported"})
    key = None
    if passkey is not None:
        key = {"lengths": LENGTHS, "depths": [0.5], "accuracy": [[a] for a in passkey], "accuracy_by_length": passkey,
               "trials": 4}  # fmt: skip
    return {"model": {}, "lengths": LENGTHS, "perplexity": records, "passkey": key}


def test_aggregate_is_the_mean_and_sample_std_over_seeds():
    merged = aggregate([result([10.0, 11.0, 12.0], [1.0, 0.0, 0.5]), result([12.0, 13.0, 15.0], [0.0, 0.0, 0.5])])
    first, last = merged["perplexity"][0], merged["perplexity"][2]
    assert first["perplexity"] == 11.0 and first["std"] == pytest.approx(2**0.5) and first["values"] == [10.0, 12.0]
    assert last["perplexity"] == 13.5 and last["loss"] == pytest.approx((math.log(12.0) + math.log(15.0)) / 2)
    assert merged["perplexity"][3]["status"] == "unsupported" and merged["perplexity"][3]["perplexity"] is None
    assert merged["passkey"]["accuracy"] == [[0.5], [0.0], [0.5]] and merged["seeds"] == 2
    assert merged["passkey"]["accuracy_by_length"] == [0.5, 0.0, 0.5] and merged["passkey"]["accuracy_by_depth"] == [
        pytest.approx(1 / 3)
    ]


def spans_of(level: float, rise: list[float], noise: float, seed: int, units: int = 40) -> list[list[float]]:
    """Per-span losses at LENGTHS: span u has its own difficulty; each length adds `rise` and seed noise."""
    rng = random.Random(seed)
    difficulty = [random.Random(u).gauss(level, 0.5) for u in range(units)]
    return [[d + r + rng.gauss(0, noise) for d in difficulty] for r in rise]


def study(arms: dict[str, list[list[list[float]]]]) -> dict:
    """A record with per-span losses: arms {name: [seed][length][span]}; probes are not needed here."""
    runs = {}
    for name, seeds in arms.items():
        runs[name] = {}
        for s, spans in enumerate(seeds):
            values = [math.exp(sum(row) / len(row)) for row in spans]
            runs[name][str(s)] = {"long_context": result(values, spans=spans), "training": {"probes": []}}
    return {"runs": runs, "window": WINDOW, "lengths": LENGTHS, "settings": {}}


def test_the_literature_check_tests_each_claim_with_seed_and_text_error():
    arms = {
        "sinusoidal": [spans_of(4.6, [0, 0.2, 0.4], 0.01, s) for s in range(3)],  # clearly degrades
        "rope": [spans_of(4.6, [0, 0.01 + 0.02 * s, 0.01 + 0.03 * s], 0.3, s) for s in range(3)],  # noisy: n/s
        "alibi": [spans_of(4.6, [0, -0.01, -0.02], 0.01, s) for s in range(3)],  # falls: holds
        "t5_bias": [spans_of(4.6, [0, 0.0, 0.03], 0.01, s) for s in range(3)],  # rises 3%: does not hold
        "learned": [spans_of(4.6, [0, -0.05, -0.1], 0.01, s) for s in range(3)],  # falls: does not degrade
        "nope": [spans_of(4.6, [0, 0.05, 0.1], 0.01, s) for s in range(3)],
    }
    record = study(arms)
    extrapolated = extrapolation(record)
    found = {v["claim"]: v["reproduces"] for v in literature(record, extrapolated)}
    assert found == {
        "learned degrades past the window": "no",
        "sinusoidal degrades past the window": "yes",
        "rope degrades past the window": "not separated",
        "alibi holds past the window": "yes",
        "t5_bias holds past the window": "no",
        "nope sits between them (at the longest length)": "no",  # above learned's, which falls
    }
    sinusoidal = extrapolated["sinusoidal"]["1024"]
    assert math.exp(sinusoidal["mean"]) == pytest.approx(math.exp(0.4), rel=0.01) and sinusoidal["se_text"] > 0
    assert sinusoidal["df"] > 2  # text error adds degrees of freedom beyond the seeds'


def probe(perplexity: float, windows: list[float], hits: list[int], step: int, seed: int) -> dict:
    return {"step": step, "tokens": step * 1000, "perplexity": perplexity, "window_losses": windows,
            "passkey": sum(hits) / len(hits), "passkey_hits": hits, "passkey_first_key_token": hits,
            "passkey_seed": 10_000 + seed}  # fmt: skip


def curve_record(pretraining: int = 1_000_000) -> dict:
    """A base at loss 4.0 on 50 windows; nope swaps to +1.0 and recovers to +0.5 then +0.1; the control sits at
    +0.05 throughout; rope recovers to +0.01 at the end."""
    windows = [4.0 + random.Random(u).gauss(0, 0.3) for u in range(50)]

    def run(offsets: list[float], seed: int, hits: list[int]) -> dict:
        rng = random.Random(seed)
        probes = [probe(math.exp(4.0 + o), [w + o + rng.gauss(0, 0.001) for w in windows], hits, step, seed)
                  for step, o in zip([0, 5, 10], offsets)]  # fmt: skip
        return {"training": {"probes": probes}, "long_context": result([1.0, 1.0, 1.0])}

    runs = {
        "nope": {str(s): run([1.0, 0.5, 0.1], s, [0] * 100) for s in range(3)},
        "rope": {str(s): run([1.0, 0.3, 0.01], s, [1] * 60 + [0] * 40) for s in range(3)},
        "learned": {str(s): run([0.0, 0.05, 0.05], s, [1] * 100) for s in range(3)},
    }
    base = {"perplexity": math.exp(4.0), "window_losses": windows}
    settings = {"curve": {"passkey_trials": 20}, "eval": {"passkey_depths": [0.5] * 5}}
    return {"runs": runs, "base_result": base, "base_pretraining_tokens": pretraining, "window": WINDOW,
            "lengths": LENGTHS, "settings": settings}  # fmt: skip


def test_recovery_is_tested_against_the_base_and_against_the_control():
    found = curves(curve_record())
    rope = found["rope"]
    assert rope["points"][-1]["vs_base"]["mean"] == pytest.approx(0.01, abs=1e-3)
    assert rope["recovered"] == {"base": 10_000, "control": 10_000}
    nope = found["nope"]
    assert nope["recovered"] == {"base": None, "control": None}  # +0.1 in log-perplexity is +10.5%
    assert nope["points"][-1]["vs_control"]["mean"] == pytest.approx(0.05, abs=1e-3)
    assert found["learned"]["recovered"]["base"] == 0 and "vs_control" not in found["learned"]["points"][0]
    assert rope["points"][-1]["passkey"]["mean"] == pytest.approx(0.6)
    assert rope["points"][-1]["passkey"]["low"] < 0.6 < rope["points"][-1]["passkey"]["high"]


def test_drope_uses_the_nope_arm_within_one_percent_of_pretraining():
    record = curve_record(pretraining=1_000_000)  # 1% = 10,000 tokens: the last probe
    found = drope(record, curves(record))
    assert found["arm"] == "nope" and found["tokens"] == 10_000
    assert found["gap_closed"] == pytest.approx(0.9, abs=0.01) and found["reproduces"] == "no"
    record = curve_record(pretraining=600_000)  # 1% = 6,000: the probe at 5,000 tokens
    assert drope(record, curves(record))["gap_closed"] == pytest.approx(0.5, abs=0.01)


def test_records_without_per_unit_losses_still_summarise_on_the_seed_spread():
    record = curve_record()
    for seeds in record["runs"].values():
        for run in seeds.values():
            for p in run["training"]["probes"]:
                del p["window_losses"], p["passkey_hits"], p["passkey_first_key_token"], p["passkey_seed"]
    del record["base_result"]["window_losses"]
    found = curves(record)
    assert found["rope"]["points"][-1]["vs_base"]["se_text"] == 0
    assert found["rope"]["points"][-1]["passkey"]["mean"] == pytest.approx(0.6)  # from accuracy x 100 prompts
    assert summarize(record)["text_error"] is False


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ({"finished": True}, "CPU time 2.0 min (finished)"),
        ({"finished": True, "sessions": 2, "cpu_complete": True}, "over 2 sessions, CPU time 2.0 min (finished)"),
        ({"finished": True, "sessions": 2}, "CPU time at least 2.0 min (finished); an interrupted session's"),
        ({}, "CPU time at least 2.0 min (in progress / interrupted)"),
        ({"cpu_complete": True}, "CPU time 2.0 min (in progress / interrupted)"),
    ],
)
def test_timing_says_when_the_cpu_time_is_a_lower_bound(record, says):
    """Records written before workers' CPU time was counted mid-study give it as a lower bound once resumed."""
    assert says in timing({"wall_seconds": 600, "cpu_seconds": 120, **record})


@pytest.mark.parametrize(
    ("wall", "says"),
    [
        (1000, "close to the least its CPU time allows on 2 cores of this speed (16.5 min)"),
        (2200, "on 2 cores of this speed it cannot take less than 16.5 min"),
    ],
)
def test_the_run_time_is_set_against_what_the_cpu_time_allows(wall, says):
    from report_swap_study import floor_text

    assert says in floor_text({"wall_seconds": wall, "cpu_seconds": 1980, "machine": {"cpus": 2}})


@pytest.mark.parametrize("study", ["swap_study", "swap_study_long", "recovery_validation", "swap_study_recovery"])
def test_the_committed_summary_is_what_the_committed_measurements_give(study):
    """results.json's derived part (read by results.md, the plots and the README) is summarize() of its own record."""
    record = json.loads((Path(__file__).resolve().parents[1] / "results" / study / "results.json").read_text())
    assert json.loads(json.dumps(summarize(record), default=str)) == record["gpt2"]


def test_a_record_whose_first_filed_run_is_a_later_seed_still_reports():
    """Workers file runs as they finish: seed 1 may come before seed 0."""
    from report_swap_study import held_out_text

    record = curve_record()
    for arm in record["runs"]:
        del record["runs"][arm]["0"]
    record["settings"].update(finetune={"mixed_precision": "bf16"})
    record["settings"]["curve"].update(windows_per_book=4)
    record["settings"]["eval"].update(spans_per_book=2, passkey_trials=20, precision="bf16")
    assert "every seed draws its own keys" in held_out_text(record)
    assert curves(record)["rope"]["points"][-1]["vs_base"]["mean"] == pytest.approx(0.01, abs=1e-3)
    assert summarize(record)["text_error"] is True  # read from seed 1's probes


def test_scaled_lengths_merge_with_passkey_at_some_lengths_only():
    """A rope + scaling result per length, passkey left out past 2x: the merged result keeps every length's
    perplexity and the passkey of the lengths that have it."""
    from hf_posenc.evaluation.study import merge_lengths

    def one(length: int, keyed: bool) -> dict:
        key = {"lengths": [length], "depths": [0.5], "accuracy": [[1.0]], "hits": [[[1]]], "trials": 1}
        return {"lengths": [length], "perplexity": [{"length": length}], "passkey": key if keyed else None}

    merged = merge_lengths([one(512, True), one(1024, False), one(2048, False)])
    assert merged["lengths"] == [512, 1024, 2048] and len(merged["perplexity"]) == 3
    assert merged["passkey"]["lengths"] == [512] and merged["passkey"]["hits"] == [[[1]]]
    second = one(2048, True)
    second["passkey"]["accuracy"] = [[0.0]]
    both = merge_lengths([one(512, True), second])["passkey"]
    assert both["accuracy_by_length"] == [1.0, 0.0] and both["accuracy_by_depth"] == [0.5]
    assert merge_lengths([one(1024, False)])["passkey"] is None


def test_arm_settings_are_said_in_words_and_grouped():
    from report_swap_study import arm_settings_lines

    settings = {"encodings": {
        "rope": {"finetune": {"attention_transfer_weight": 1.0}},
        "alibi": {"finetune": {"attention_transfer_weight": 1.0}},
        "t5_bias": {"options": {"init": "alibi"}, "finetune": {"position_lr_multiplier": 0}},
        "nope": {"finetune": {"gradual_swap_steps": 0.5, "lm_weight": 0.5}},
        "learned": {},
    }}  # fmt: skip
    lines = arm_settings_lines(settings)
    assert len(lines) == 3 and lines[0].startswith("- `rope`, `alibi`: attention transfer from the unconverted")
    assert lines[0].endswith("weight 1), what the recipes do after a swap.")
    assert lines[1] == "- `t5_bias`: converted with init=alibi; the position parameters frozen."
    assert lines[2] == "- `nope`: the old table fading out over 50% of the steps; lm_weight=0.5."
    assert not any("learned" in line for line in lines)


def test_the_default_is_compared_with_plain_fine_tuning_at_both_budgets():
    """readme_changes: each swap of a run against the plain arm of a record with twice the budget, at its end and at
    the run's budget; which side of plain's end the run lands is decided by interval overlap."""
    from report_swap_study import readme_changes

    def record(ends: dict[str, tuple[float, float]], budget: int) -> dict:
        def point(tokens: int, low: float, high: float) -> dict:
            interval = {"mean": (low + high) / 2, "low": low, "high": high}
            return {"tokens": tokens, "vs_base": interval, "passkey": {"mean": 0.5, "low": 0.4, "high": 0.6}}

        curves = {arm: {"points": [point(0, 1.0, 1.1), point(budget // 2, low + 0.01, high + 0.01),
                                   point(budget, low, high)]} for arm, (low, high) in ends.items()}  # fmt: skip
        curves["learned"] = {"points": [point(budget, 0.0, 0.01)]}
        ratio = {"2048": {"mean": 0.01, "low": 0.0, "high": 0.02}}
        return {"gpt2": {"curves": curves, "lengths": [256, 2048], "window": 256,
                         "extrapolation": {arm: ratio for arm in ends}}}  # fmt: skip

    plain = record({"rope": (0.05, 0.06), "t5_bias": (0.05, 0.06), "alibi": (0.05, 0.06), "nope": (0.3, 0.4)}, 600)
    mine = record({"rope": (0.01, 0.02), "t5_bias": (0.055, 0.07), "alibi": (0.08, 0.09)}, 300)
    text = readme_changes(mine, plain)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == ["| `rope`", "| `t5_bias`", "| `alibi`"]  # not nope, not control
    assert rows[0].split(" | ")[1:4] == ["+5.7% [+5.1, +6.2]", "+6.7% [+6.2, +7.3]", "+1.5% [+1.0, +2.0]"]
    assert text.splitlines()[0].startswith("| arm | vs the base: plain, 600 | plain, 300 (mid-run) | this run, 300")
    said = text.splitlines()[-2:]
    assert said[0] == (
        "In-window perplexity after 300 tokens of this run, against plain fine-tuning after 600: below (the intervals "
        "apart): `rope`; overlap: `t5_bias`; above (the intervals apart): `alibi`."
    )
    assert said[1].startswith("In-window perplexity after 300 tokens of this run, against plain fine-tuning after 300 "
                              "(mid-run): below (the intervals apart): `rope`; overlap: `t5_bias`")  # fmt: skip


def test_each_record_is_filed_under_its_own_folder():
    """The long study has a method arm beside its plain rope, yet it is the long study; a method arm beside its plain
    arm under 1M tokens is the recovery study; swaps that all carry the recipes' method, with no plain arm, are the
    default study."""
    from report_swap_study import record_folder

    attention = {"encoding": "rope", "finetune": {"attention_transfer_weight": 1.0}}

    def record(encodings: dict, steps: int, data: dict | None = None) -> dict:
        return {"settings": {"encodings": encodings, "data": data or {}}, "steps": steps, "tokens_per_step": 4096}

    assert record_folder(record({"rope": {}, "rope_attention": attention}, 1172)) == "swap_study_long"
    assert record_folder(record({"rope": {}, "rope_attention": attention}, 147)) == "swap_study_recovery"
    assert record_folder(record({"rope": {"finetune": {"attention_transfer_weight": 1.0}}, "learned": {}}, 74)) == (
        "swap_study"
    )
    assert record_folder(record({"rope": {}}, 74, {"validation_books": ["austen_emma"]})) == "recovery_validation"


def test_a_rerun_says_which_conclusions_moved_and_which_held():
    """readme_rerun: a finding moves when its verdict, its first budget within the tolerance, or its passkey interval
    (by overlap) changes between the earlier record and the rerun; arms only the rerun has are named, not compared."""
    from report_swap_study import readme_rerun

    def record(date: str, passkey: dict[str, tuple[float, float]], recovered: dict[str, int | None],
               verdicts: dict[str, str], gap: float) -> dict:  # fmt: skip
        def point(low: float, high: float) -> dict:
            interval = {"mean": (low + high) / 2, "low": low, "high": high}
            return {"tokens": 600, "vs_base": {"mean": 0.01, "low": 0.0, "high": 0.02}, "passkey": interval}

        curves = {arm: {"points": [point(*passkey[arm])], "recovered": {"base": recovered[arm]}} for arm in passkey}
        rise = {"2048": {"mean": 0.01, "low": 0.0, "high": 0.02}}
        drope = {"arm": "nope", "gap_closed": gap, "reproduces": "yes" if gap > 0.95 else "no"}
        return {"date": date, "gpt2": {
            "curves": curves, "lengths": [256, 2048], "window": 256, "tolerance": 0.02, "drope": drope,
            "extrapolation": {arm: rise for arm in passkey},
            "verdicts": [{"claim": claim, "reproduces": said} for claim, said in verdicts.items()]}}  # fmt: skip

    earlier = record("2026-11-30", {"rope": (0.5, 0.8), "alibi": (0.0, 0.1)}, {"rope": 100, "alibi": None},
                     {"rope degrades past the window": "yes", "alibi holds past the window": "yes"}, 0.6)  # fmt: skip
    verdicts = {"rope degrades past the window": "not separated", "alibi holds past the window": "yes"}
    now = record("2026-12-05", {"rope": (0.6, 0.9), "alibi": (0.3, 0.5), "nope": (0.0, 0.0)},
                 {"rope": 200, "alibi": None, "nope": None}, verdicts, 0.62)  # fmt: skip
    text = readme_rerun(now, earlier)
    assert text.startswith("Earlier: the run of 2026-11-30; now: the run of 2026-12-05.")
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| `")]
    assert rows == ["| `rope`", "| `alibi`"]
    moved, held, new = text.splitlines()[-3:]
    assert moved == (
        "Conclusions that moved: `rope` within 2% of the base: at 100 earlier, at 200 now; `alibi`'s passkey at the "
        "window (5% [0, 10] -> 40% [30, 50]); *rope degrades past the window* (**yes** -> **not separated**)."
    )
    assert held == (
        "Conclusions that held: `rope`'s passkey at the window (65% [50, 80] -> 75% [60, 90]); *alibi holds past the "
        "window* (**yes** -> **yes**); DroPE's claim on `nope` (60% -> 62% of the gap closed; **no** -> **no**)."
    )
    assert new == "New in this run: `nope`."
