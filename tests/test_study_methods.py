"""The conversion-methods part of a swap study's summary: method arms against plain fine-tuning, cost, targets."""

from __future__ import annotations

import copy
import math
import random

import pytest

from hf_posenc.evaluation.methods import at_tokens, method_arms, methods, targets
from hf_posenc.evaluation.study import curves
from tests.test_swap_study_report import curve_record, probe


def test_method_arms_pair_each_method_with_plain_fine_tuning_of_the_same_encoding():
    settings = {"encodings": {
        "rope": {},
        "rope_distill": {"encoding": "rope", "finetune": {"distill_weight": 1.0, "learning_rate": 1e-3}},
        "rope_off": {"encoding": "rope", "finetune": {"lm_weight": 1.0, "gradual_swap_steps": 0}},  # nothing on
        "rope_kd": {"encoding": "rope", "finetune": {"lm_weight": 0.0, "distill_weight": 1.0}},  # no LM loss
        "t5_bias": {"options": {"init": "alibi"}},
        "t5_zero_attention": {"encoding": "t5_bias", "finetune": {"attention_transfer_weight": 2.0}},
        "t5_attention": {"encoding": "t5_bias", "options": {"init": "alibi"},
                         "finetune": {"attention_transfer_weight": 2.0}},
        "alibi_gradual": {"encoding": "alibi", "finetune": {"gradual_swap_steps": 0.5}},  # no plain alibi arm
    }}  # fmt: skip
    found = method_arms(settings)
    assert set(found) == {"rope_distill", "rope_kd", "t5_attention"}  # t5_zero_attention's options differ
    assert found["rope_kd"]["method"] == {"lm_weight": 0.0, "distill_weight": 1.0}
    assert found["rope_distill"]["plain"] in {"rope", "rope_off"}
    assert found["rope_distill"]["method"] == {"distill_weight": 1.0}
    assert found["rope_distill"]["also"] == {"learning_rate": 1e-3}
    assert found["t5_attention"] == {"encoding": "t5_bias", "plain": "t5_bias",
                                     "method": {"attention_transfer_weight": 2.0}, "also": {}}  # fmt: skip


def with_method(cost_plain: float = 1e-3, cost_method: float = 2e-3) -> dict:
    """The curve record (rope: +1.0, +0.3, +0.01 at 0, 5k, 10k tokens) plus rope_attention: +1.0, +0.1, +0.005."""
    record = curve_record()
    windows = [w - 1.0 for w in record["runs"]["rope"]["0"]["training"]["probes"][0]["window_losses"]]
    runs = record["runs"]
    runs["rope_attention"] = {}
    for seed in range(3):
        rng = random.Random(100 + seed)
        probes = [probe(math.exp(4.0 + o), [w + o + rng.gauss(0, 0.001) for w in windows], [1] * 95 + [0] * 5, s, seed)
                  for s, o in zip([0, 5, 10], [1.0, 0.1, 0.005])]  # fmt: skip
        runs["rope_attention"][str(seed)] = {"training": {"probes": probes, "cpu_seconds_per_token": cost_method},
                                             "long_context": runs["rope"]["0"]["long_context"]}  # fmt: skip
        runs["rope"][str(seed)]["training"]["cpu_seconds_per_token"] = cost_plain
    record["settings"]["encodings"] = {"rope": {}, "nope": {}, "learned": {},
                                       "rope_attention": {"encoding": "rope",
                                                          "finetune": {"attention_transfer_weight": 1.0}}}  # fmt: skip
    return record


def test_a_method_is_compared_with_plain_at_equal_tokens_and_at_equal_compute():
    record = with_method()
    (entry,) = methods(record, curves(record))
    assert entry["arm"] == "rope_attention" and entry["plain"] == "rope" and entry["cost"] == pytest.approx(2.0)
    start, middle, end = entry["points"]
    assert middle["gap_closed"]["mean"] == pytest.approx(0.9, abs=0.01)  # 1 - 0.1 / 1.0
    assert middle["gap_closed"]["low"] < 0.9 < middle["gap_closed"]["high"]
    assert middle["vs_plain"]["mean"] == pytest.approx(-0.2, abs=0.01) and middle["vs_plain"]["high"] < 0
    # equal compute: at 5k tokens the method's CPU time buys plain 10k tokens, where plain is at +0.01
    assert middle["plain_equal_compute"] == pytest.approx(0.01, abs=1e-3)
    assert end["plain_equal_compute"] is None  # past plain's budget: the method at half its tokens instead
    assert end["method_equal_compute"] == pytest.approx(0.1, abs=1e-3)  # its probe at 5k against plain at 10k
    assert middle["passkey"]["mean"] == pytest.approx(0.95)
    assert middle["passkey_vs_plain"]["mean"] == pytest.approx(0.35)
    record = with_method(cost_method=1e-3)
    assert methods(record, curves(record))[0]["points"][1]["plain_equal_compute"] == pytest.approx(0.3, abs=1e-3)


def test_equal_compute_reads_the_curve_linearly_in_log_tokens():
    points = [{"tokens": t, "vs_base": {"mean": v}} for t, v in ((0, 2.0), (1000, 1.0), (4000, 0.0))]
    assert at_tokens(points, 2000) == pytest.approx(0.5)
    assert at_tokens(points, 1000) == pytest.approx(1.0) and at_tokens(points, 4000) == pytest.approx(0.0)
    assert at_tokens(points, 500) is None and at_tokens(points, 5000) is None


def test_targets_test_the_best_method_and_the_early_gap():
    record = with_method()
    record["base_pretraining_tokens"] = 5000 / 0.003  # the early budget is the probe at 5,000 tokens
    found = methods(record, curves(record))
    extrapolated = {"rope_attention": {"1024": {"mean": math.log(1.02), "low": math.log(1.01), "high": math.log(1.03)}}}
    result = targets(record, found, extrapolated)
    best = result["best"]["rope"]
    assert best["arm"] == "rope_attention" and best["tokens"] == 10_000
    assert best["in_window"] == "met"  # +0.5%, its interval well under +2%
    assert best["passkey_verdict"] == "met"  # 95% of 300 prompts: the interval is above 90%
    assert best["extrapolation"]["verdict"] == "met" and best["extrapolation"]["limit"] == 1.05
    (early,) = result["early"]
    assert early["tokens"] == 5000 and early["verdict"] == "missed"  # 90% of the gap, the aim is 95%
    worse = copy.deepcopy(record)
    for run in worse["runs"]["rope_attention"].values():
        last = run["training"]["probes"][-1]
        last["window_losses"] = [w + 0.05 for w in last["window_losses"]]
    assert targets(worse, methods(worse, curves(worse)), {})["best"]["rope"]["in_window"] == "missed"


def test_the_report_lists_each_method_and_each_target_verdict():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from report_swap_study import methods_lines

    record = with_method()
    record["base_pretraining_tokens"] = 5000 / 0.003
    found = methods(record, curves(record))
    text = "\n".join(methods_lines({"methods": found, "targets": targets(record, found, {})}))
    assert "| `rope_attention` | attention_transfer_weight=1 | x2.00 | 5k | +10.5% [" in text
    assert "| 90% [" in text and "| plain +1.0% |" in text  # gap closed; plain at equal compute (+0.01 in log)
    assert "| method +10.5% |" in text  # at the budget: the method at half its tokens (its 5k probe, +0.1 in log)
    assert "best method `rope_attention` at 10k tokens" in text and text.count("**met**") == 2
    assert "| `rope_attention` | 90% [" in text and "| missed |" in text
    assert methods_lines({"methods": [], "targets": None}) == []


def test_the_readme_tables_of_a_recovery_record_come_from_its_summary():
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "recipes"))
    from report_swap_study import change, readme_methods, readme_targets, record_folder

    record = json.loads((root / "results" / "recovery_validation" / "results.json").read_text())
    assert record_folder(record) == "recovery_validation"
    table = readme_methods(record).splitlines()
    part = record["gpt2"]
    for entry in part["methods"]:
        (row,) = [line for line in table if line.startswith(f"| `{entry['arm']}` |")]
        assert change(entry["points"][-1]["vs_plain"]) in row and change(entry["points"][-1]["vs_base"]) in row
    plains = {entry["plain"] for entry in part["methods"]}
    assert {line.split("`")[1] for line in table if "| plain | x1.00 |" in line} == plains
    assert table[-1].startswith("| `learned` | no swap (the control) |")
    targets = readme_targets(record)
    for encoding, row in part["targets"]["best"].items():
        assert f"- `{encoding}`, best method `{row['arm']}`" in targets and f"**{row['in_window']}**" in targets
    assert targets.count("\n| `") == len(part["targets"]["early"])


def test_drope_is_checked_for_nope_with_each_method():
    """A nope arm with a method is held to DroPE's claim like plain nope: its own gap closed within 1% of the
    pretraining tokens, in the summary and in the report's targets."""
    import sys
    from pathlib import Path

    from hf_posenc.evaluation.study import drope, summarize

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from report_swap_study import methods_lines

    record = with_method()
    record["base_pretraining_tokens"] = 1_000_000  # 1% = 10k tokens: the last probe
    record["runs"]["nope_attention"] = copy.deepcopy(record["runs"].pop("rope_attention"))
    encodings = record["settings"]["encodings"]
    encodings["nope_attention"] = {"encoding": "nope", "finetune": encodings.pop("rope_attention")["finetune"]}
    summary = summarize(record)
    (found,) = summary["drope_methods"]
    assert found == drope(record, curves(record), "nope_attention") and found["arm"] == "nope_attention"
    assert found["gap_closed"] > summary["drope"]["gap_closed"]  # +0.005 left in log, against plain nope's +0.1
    text = "\n".join(methods_lines(summary))
    (line,) = [row for row in text.splitlines() if "DroPE" in row]
    assert "`nope` 90% [" in line and f"`nope_attention` {found['gap_closed']:.0%} [" in line
    assert summarize(with_method())["drope_methods"] == []  # no nope method arm


def test_the_shortfall_is_stated_from_the_record():
    """Each method kind's line carries its own arms' differences from plain, and the retrieval line the long study's
    first budget with passkey back."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "recipes"))
    from report_swap_study import change, readme_shortfall, tokens

    record = json.loads((root / "results" / "recovery_validation" / "results.json").read_text())
    long_record = json.loads((root / "results" / "swap_study_long" / "results.json").read_text())
    text = readme_shortfall(record, long_record)
    for entry in record["gpt2"]["methods"]:
        assert f"`{entry['encoding']}` {change(entry['points'][-1]['vs_plain'])}" in text
    back = next(p for p in long_record["gpt2"]["curves"]["rope"]["points"] if p["passkey"]["mean"] > 0)
    assert f"{back['passkey']['mean']:.0%} at {tokens(back['tokens'])}" in text
    assert readme_shortfall(record) == text.split(" With plain fine-tuning in the long study")[0]
