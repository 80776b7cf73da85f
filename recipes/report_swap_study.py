"""The swap study's report: results.json (the record and what `hf_posenc.evaluation.study.summarize` derives from
it), results.md (tables with intervals, the literature check as tests) and PNG plots.

python recipes/report_swap_study.py results/swap_study   # redraw results.md, the PNGs and results.json's gpt2 part
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hf_posenc.evaluation import measurement
from hf_posenc.evaluation.methods import method_settings
from hf_posenc.evaluation.study import BASE, CONTROL, log_ratio_percent, summarize
from hf_posenc.evaluation.wording import and_join
from hf_posenc.training.recovery.settings import DEFAULT_METHOD

MODES = ("chunked", "sliding")
AS_TRAINED = ", as training does"
DESCRIBE = {"chunked": "non-overlapping chunks", "sliding": "sliding window, stride half the length"}


# ---------------- formatting ----------------
def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.1f} ± {std:.1f}" if std else f"{mean:.1f}"


def change(interval: dict[str, Any] | None) -> str:
    """A log-ratio interval as a change in percent with its 95% interval, e.g. "+4.5% [+3.4, +5.6]"."""
    if not interval:
        return "n/a"
    mean, low, high = log_ratio_percent(interval)
    return f"{mean:+.1f}% [{low:+.1f}, {high:+.1f}]"


def ratio(interval: dict[str, Any] | None) -> str:
    """A log-ratio interval as a ratio, e.g. "x1.04 [1.02, 1.06]"."""
    if not interval:
        return "n/a"
    mean, low, high = (math.exp(interval[key]) for key in ("mean", "low", "high"))
    return f"x{mean:.3f} [{low:.3f}, {high:.3f}]"


def share(interval: dict[str, Any] | None) -> str:
    """A proportion interval, e.g. "67% [52, 81]"."""
    if not interval:
        return "n/a"
    return f"{interval['mean']:.0%} [{100 * interval['low']:.0f}, {100 * interval['high']:.0f}]"


def tokens(n: int | None) -> str:
    if n is None:
        return "not within budget"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


# ---------------- sections ----------------
def intro_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    s = record["settings"]
    pre = record.get("base_pretraining_tokens")
    budget = record["steps"] * record["tokens_per_step"]
    pct = f" ({100 * budget / pre:.3g}% of the base's {pre / 1e6:.2f}M pretraining tokens)" if pre else ""
    text_error = (
        "Intervals are 95% and count the seed spread (t distribution) and the text-sampling error (a bootstrap over "
        "the scored windows, spans and prompts) together."
        if part["text_error"]
        else "Intervals are 95% and count the seed spread alone (t distribution): this record predates per-window "
        "losses, so text-sampling error is not in them."
    )
    return [
        f"Base: `{record['base']}`, a GPT-2 with a learned table of {record['window']} positions. Every arm is "
        f"fine-tuned from it with seeds {', '.join(map(str, s['seeds']))} for {budget:,} tokens{pct}, "
        f"{record['steps']} steps of {record['tokens_per_step']:,} tokens; the training blocks are the training "
        f"books plus {mixture_text(record['mixture'], s.get('mixture') or {})}. {text_error}",
        "",
        *(["Arms with settings of their own:", "", *arm_settings_lines(s), ""] if arm_settings_lines(s) else []),
        held_out_text(record),
        "",
    ]


def held_out_text(record: dict[str, Any]) -> str:
    """What the probes and the evaluation score, as the record's settings say."""
    s = record["settings"]
    e, curve = s["eval"], s["curve"]
    if e.get("spans_per_book"):
        text = (
            f"Held-out books: in-window probes score {curve['windows_per_book']} windows of {record['window']} "
            f"tokens spread over each whole book; past the window, {e['spans_per_book']} spans of "
            f"{max(record['lengths'])} tokens spread over each whole book, cut into chunks of each length."
        )
    else:
        text = (
            f"Held-out books: the first {e.get('max_tokens', 0):,} tokens of the held-out text at every length, "
            f"and {curve['windows_per_book']} windows per book from its first "
            f"{8 * (e.get('max_tokens', 0) + 2 * max(record['lengths'])):,} characters."
        )
    runs = next(iter((record.get("runs") or {}).values()), {})  # the first arm's runs: any seed may be done first
    first = next(iter(runs.values()))["training"]["probes"][0] if runs else {}
    keys = (
        "every seed draws its own keys, and the evaluation others than the probes"
        if "passkey_seed" in first
        else "every seed, probe and evaluation used the same keys (this record predates per-seed keys)"
    )
    precision = e.get("precision", "fp32")
    return (f"{text} Passkey: {curve.get('passkey_trials', 0)} keys per depth at {len(e['passkey_depths'])} depths "
            f"per probe and {e['passkey_trials']} per depth and length in the evaluation{keyed_text(record)}; "
            f"{keys}. Scoring runs in "
            f"{precision}{AS_TRAINED if precision == s['finetune'].get('mixed_precision') else ''}.")  # fmt: skip


def keyed_text(record: dict[str, Any]) -> str:
    """Where the evaluation's passkey runs, when not at every length (eval.passkey_factors)."""
    factors = record["settings"]["eval"].get("passkey_factors")
    if factors is None or set(factors) >= set(record["settings"]["eval"]["factors"]):
        return ""
    return f" (at {and_join(f'{f}x' for f in factors)} the window only; perplexity at every length)"


def mixture_text(mixture: dict[str, Any], settings: dict[str, Any]) -> str:
    packed = "packed " if settings.get("retrieval_packed") else ""
    text = f"{mixture['actual_fraction']:.0%} {packed}passkey blocks"
    if mixture.get("copy_blocks"):
        text += f" and {mixture['actual_copy_fraction']:.0%} repeated-random-token blocks"
    return text


def base_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    base = record["base_result"]
    nope = part["curves"].get("nope", {}).get("points", [{}])[0]
    fp32 = base.get("fp32")
    lines = [
        "## The base",
        "",
        "| in-window perplexity | bpc | unigram bpc | bpc / unigram | in fp32 | with `nope` (no positions) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {base['perplexity']:.2f} | {base['bpc']:.3f} | {_f(base.get('unigram_bpc'), '{:.3f}')} | "
        f"{_f(base['bpc'] / base['unigram_bpc'] if base.get('unigram_bpc') else None, '{:.3f}')} | "
        f"{_f(fp32['perplexity'] if fp32 else None)} | {_f(nope.get('mean'))} ({ratio(nope.get('vs_base'))}) |",
        "",
    ]
    if fp32:
        lines += [
            f"The fp32 column scores the same {fp32['windows']} windows in full precision, as the study base's own "
            "report does (`hf_posenc/data/study_base/base_report.json`); the study scores in "
            f"{record['settings']['eval'].get('precision', 'fp32')}, as the runs train.",
            "",
        ]
    return lines


def recovery_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    curves = part["curves"]
    if not curves:
        return []
    points = next(iter(curves.values()))["points"]
    header = " | ".join(tokens(p["tokens"]) if p["tokens"] else "0 (swap)" for p in points)
    tol = part["tolerance"]
    lines = [
        "## Recovery: in-window perplexity against fine-tuning tokens",
        "",
        f"Mean ± std over seeds, probed along each run (cosine schedule over the whole budget). Base: "
        f"{record['base_result']['perplexity']:.2f}. Recovered = within {tol:.0%} as a test: the 95% interval of the "
        f"change lies below +{tol:.0%}, against the base and against the no-swap control (`{CONTROL}`) at the same "
        "budget.",
        "",
        f"| arm | {header} |",
        "| --- |" + " --- |" * len(points),
    ]
    for name, curve in curves.items():
        lines.append(f"| `{name}` | " + " | ".join(_pm(p["mean"], p["std"]) for p in curve["points"]) + " |")
    lines += [
        "",
        "At the full budget:",
        "",
        "| arm | vs the base | vs the control | recovered (base) at | recovered (control) at |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, curve in curves.items():
        last = curve["points"][-1]
        control = "-" if name == CONTROL else change(last.get("vs_control"))
        rec = curve["recovered"]
        lines.append(f"| `{name}` | {change(last['vs_base'])} | {control} | {tokens(rec['base'])} | "
                     f"{'-' if name == CONTROL else tokens(rec['control'])} |")  # fmt: skip
    return lines + ["", "![recovery](recovery.png)", ""]


def passkey_curve_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    curves = {name: c["points"] for name, c in part["curves"].items() if c["points"][0].get("passkey")}
    if not curves:
        return []
    points = next(iter(curves.values()))
    header = " | ".join(tokens(p["tokens"]) if p["tokens"] else "0 (swap)" for p in points)
    s = record["settings"]
    prompts = s["curve"]["passkey_trials"] * len(s["eval"]["passkey_depths"])
    base = part["passkey"].get(BASE, {}).get(str(part["window"]))
    chance = _chance(record)
    lines = [
        "## Retrieval along the way: passkey at the window against fine-tuning tokens",
        "",
        f"Exact keys, {prompts} prompts per seed and probe ({len(s['seeds'])} seeds); the base: "
        f"{share(base)}. Chance: {_f(chance.get('key'), '{:.4%}')} for a key, "
        f"{_f(chance.get('first_key_token'), '{:.0%}')} for its first key token.",
        "",
        f"| arm | {header} |",
        "| --- |" + " --- |" * len(points),
    ]
    for name, curve in curves.items():
        lines.append(f"| `{name}` | " + " | ".join(share(p.get("passkey")) for p in curve) + " |")
    if all(c[-1].get("first_key_token") for c in curves.values()):
        lines += [
            "",
            "The first key token (the first answer token that differs between keys; it cannot be copied from the "
            "answer's own earlier tokens), at the full budget:",
            "",
            "| arm | first key token | chance |",
            "| --- | --- | --- |",
        ]
        for name, curve in curves.items():
            lines.append(f"| `{name}` | {share(curve[-1]['first_key_token'])} | "
                         f"{_f(chance.get('first_key_token'), '{:.0%}')} |")  # fmt: skip
    return lines + [""]


def _chance(record: dict[str, Any]) -> dict[str, float]:
    passkey = (record["base_result"].get("long_context") or {}).get("passkey") or {}
    return passkey.get("chance") or {}


def extrapolation_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    window, lengths, models = part["window"], part["lengths"], part["models"]
    lines = ["## Extrapolation: perplexity at 1x-8x the window, after the full budget", ""]
    for mode in MODES:
        if not any(measurement(r, n, mode) for r in models.values() for n in lengths):
            continue
        lines += [
            f"**{mode}** ({DESCRIBE[mode]}), mean ± std over seeds",
            "",
            "| model | " + " | ".join(f"{n} ({n // window}x)" for n in lengths) + " |",
            "| --- |" + " --- |" * len(lengths),
        ]
        for name, result in models.items():
            cells = []
            for n in lengths:
                m = measurement(result, n, mode)
                cells.append(_pm(m["perplexity"], m.get("std")) if m and m["status"] == "ok" else "n/a")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    longer = [n for n in lengths if n > window]
    lines += [
        "**The rise past the window**: chunked perplexity at each length over the same model's at its window, with "
        "its 95% interval (rope + scaling: over plain rope's at the window, same seed).",
        "",
        "| model | " + " | ".join(f"{n // window}x" for n in longer) + " |",
        "| --- |" + " --- |" * len(longer),
    ]
    for name, cells in part["extrapolation"].items():
        lines.append(f"| `{name}` | " + " | ".join(ratio(cells.get(str(n))) for n in longer) + " |")
    lines += [
        "",
        "Every length scores the same text, so the columns compare. `rope + linear` and `rope + yarn` are the "
        "fine-tuned rope models run with that RoPE scaling at inference (factor = length / window) and no further "
        "training.",
        "",
        "![extrapolation](extrapolation.png)",
        "",
    ]
    return lines


def passkey_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    window = part["window"]
    if not part["passkey"]:
        return []
    lengths = [n for n in part["lengths"] if any(str(n) in cells for cells in part["passkey"].values())]  # measured
    e = record["settings"]["eval"]
    prompts = e["passkey_trials"] * len(e["passkey_depths"])
    lines = [
        "## Passkey retrieval after the full budget",
        "",
        f"Exact key, greedy; {prompts} prompts per length and seed over depths "
        f"{', '.join(f'{d:g}' for d in e['passkey_depths'])} (mean over seeds, 95% interval).",
        "",
        "| model | " + " | ".join(f"{n} ({n // window}x)" for n in lengths) + " |",
        "| --- |" + " --- |" * len(lengths),
    ]
    for name, cells in part["passkey"].items():
        lines.append(f"| `{name}` | " + " | ".join(share(cells.get(str(n))) for n in lengths) + " |")
    return lines + ["", "By depth: ![passkey](passkey.png)", ""]


def table_lines(record: dict[str, Any]) -> list[str]:
    lines = []
    for name, seeds in (record.get("position_tables") or {}).items():
        lines += [
            f"## The `{name}` table moved",
            "",
            f"Largest change of any bucket's bias over fine-tuning: {', '.join(f'{m:.3f}' for m in moved(seeds))} "
            "(per seed). Values by bucket and head, before and after: ![table](position_table.png)",
            "",
        ]
    return lines


def moved(seeds: dict[str, Any]) -> list[float]:
    """The largest change of any bucket's bias over fine-tuning, per seed."""
    return [
        max(abs(a - b) for row_a, row_b in zip(t["after"], t["before"]) for a, b in zip(row_a, row_b))
        for t in seeds.values()
    ]


def verdict_lines(part: dict[str, Any]) -> list[str]:
    if not part["verdicts"]:
        return []
    lines = [
        "## Does the literature's ordering reproduce?",
        "",
        "Each claim of Press et al. (2022) as a test on the rise past the window (above): degrades = the interval at "
        f"the longest length lies above 1; holds = every length's interval lies below x{1 + part['tolerance']:.2f} "
        '(and "no" when one lies above 1); "not separated" = the test cannot tell. nope sits between = its rise '
        "exceeds alibi's and t5_bias's and falls short of rope's, sinusoidal's and learned's, each difference paired "
        "by seed and span.",
        "",
        "| claim (Press et al. 2022) | reproduces | evidence |",
        "| --- | --- | --- |",
    ]
    for v in part["verdicts"]:
        lines.append(f"| {v['claim']} | {v['reproduces']} | {evidence_text(v, part['window'])} |")
    return lines + [""]


def evidence_text(verdict: dict[str, Any], window: int) -> str:
    """A literature verdict's evidence: each length's rise, or nope's paired differences with the others."""
    evidence = verdict["evidence"]
    if "comparisons" in evidence:
        return "; ".join(f"{c['higher']} - {c['lower']} {change(c)}" for c in evidence["comparisons"]) or "n/a"
    return ", ".join(f"{ratio(i)} at {int(n) // window}x" for n, i in evidence.items()) or "n/a"


def drope_lines(part: dict[str, Any]) -> list[str]:
    d = part.get("drope")
    if not d:
        return []
    return [
        "## DroPE's claim, on the matching arm",
        "",
        "DroPE (Gelberg et al. 2025) drops a pretrained model's RoPE (RoPE -> NoPE) and recovers with under 1% of the "
        "pretraining tokens. The matching arm here is `nope`, from a learned table instead of RoPE (learned -> NoPE). "
        f"At {tokens(d['tokens'])} tokens ({d['share_of_pretraining']:.2%} of pretraining) it has closed "
        f"{d['gap_closed']:.1%} [{d['gap_closed_low']:.1%}, {d['gap_closed_high']:.1%}] of the swap's gap in "
        f"log-perplexity against the base. Over {d['claim']:.0%}: {d['reproduces']}.",
        "",
    ]


def comparison_lines(part: dict[str, Any]) -> list[str]:
    if not part["comparisons"]:
        return []
    lines = [
        "## Arms that differ in one setting",
        "",
        "At the full budget, a minus b, paired by seed (in-window perplexity change and passkey at the window, "
        "95% intervals):",
        "",
        "| a | b | what differs | in-window perplexity | passkey at the window |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in part["comparisons"]:
        passkey = c.get("passkey")
        text = f"{100 * passkey['mean']:+.0f} points [{100 * passkey['low']:+.0f}, {100 * passkey['high']:+.0f}]" if (
            passkey) else "n/a"  # fmt: skip
        lines.append(f"| `{c['a']}` | `{c['b']}` | {c['differs']} | {change(c['perplexity'])} | {text} |")
    return lines + [""]


def method_text(entry: dict[str, Any]) -> str:
    """A method arm's settings, e.g. "distill_weight=1, attention_transfer_weight=1 (learning_rate=0.001)"."""
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["method"].items())
    also = ", ".join(f"{k}={'the default' if v is None else v}" for k, v in entry["also"].items())
    return text + (f" ({also})" if also else "")


def equal_compute_text(point: dict[str, Any]) -> str:
    """At equal compute: plain at the tokens the method's CPU time buys, or else (past plain's budget) the method at
    the tokens plain's CPU time buys, e.g. "plain +4.1%" / "method +3.2%"; "-" when neither curve reaches."""
    plain, method = point.get("plain_equal_compute"), point.get("method_equal_compute")
    if plain is not None:
        return f"plain {100 * math.expm1(plain):+.1f}%"
    return "-" if method is None else f"method {100 * math.expm1(method):+.1f}%"


def gap_text(gap: dict[str, Any]) -> str:
    return f"{gap['mean']:.0%} [{100 * gap['low']:.0f}, {100 * gap['high']:.0f}]"


def methods_lines(part: dict[str, Any]) -> list[str]:
    """The conversion methods against plain fine-tuning of each encoding, and the targets as tests."""
    found, goals = part.get("methods") or [], part.get("targets")
    if not found:
        return []
    lines = [
        "## Conversion methods against plain fine-tuning",
        "",
        "Each method arm beside plain fine-tuning of its encoding (the same seeds and windows). *Gap closed*: the "
        "share of the swap's jump in log-perplexity over the base (plain's first probe) that the arm has removed. *vs "
        "plain*: in-window perplexity of the method over plain at the same tokens, paired by seed and window. *At "
        "equal compute* (perplexity over the base, means only, curves read between probes linearly in log tokens): "
        "plain at the tokens the method's CPU time would have bought it, or where that is past plain's budget, the "
        "method at the tokens plain's CPU time bought (compare with plain's own number at these tokens); '-' where "
        "neither curve reaches. *Cost*: training CPU seconds per token over plain's (probes left out; the teacher's "
        "forward pass included). Probes of a gradual swap score the model without the fading table.",
        "",
        "| arm | method | cost | tokens | vs the base | gap closed | vs plain | at equal compute | passkey |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in found:
        cost = f"x{entry['cost']:.2f}" if entry["cost"] else "n/a"
        for point in entry["points"][1:]:
            equal_text = equal_compute_text(point)
            lines.append(
                f"| `{entry['arm']}` | {method_text(entry)} | {cost} | {tokens(point['tokens'])} | "
                f"{change(point['vs_base'])} | {gap_text(point['gap_closed'])} | {change(point['vs_plain'])} | "
                f"{equal_text} | {share(point.get('passkey'))} |"
            )
    lines.append("")
    if not goals:
        return lines
    lines += ["### Targets", ""]
    for encoding, row in goals["best"].items():
        text = (
            f"- `{encoding}`, best method `{row['arm']}` at {tokens(row['tokens'])} tokens: in-window "
            f"{change(row['vs_base'])} against the base (target at most +2%): **{row['in_window']}**"
        )
        if "passkey" in row:
            verdict = row["passkey_verdict"]
            text += f"; passkey at the window {share(row['passkey'])} (target at least 90%): **{verdict}**"
        x = row.get("extrapolation")
        if x:
            limit = f"{x['limit']:.2f}"
            text += f"; {x['length']:,} tokens over the window {ratio(x)} (target at most {limit}): **{x['verdict']}**"
        lines.append(text + ".")
    drope_rows = [d for d in (part.get("drope"), *(part.get("drope_methods") or [])) if d]
    if any(d["arm"] != "nope" for d in drope_rows):
        cells = "; ".join(
            f"`{d['arm']}` {d['gap_closed']:.0%} [{100 * d['gap_closed_low']:.0f}, {100 * d['gap_closed_high']:.0f}]"
            f" ({d['reproduces']})"
            for d in drope_rows
        )
        lines.append(
            f"- `nope` against DroPE's claim (a model recovers from dropping its positions with under 1% of the "
            f"pretraining tokens; read here as at least {drope_rows[0]['claim']:.0%} of the swap's gap closed at "
            f"{tokens(drope_rows[0]['tokens'])} tokens, {drope_rows[0]['share_of_pretraining']:.2%} of pretraining), "
            f"the gap each arm closed and whether the claim holds: {cells}."
        )
    if goals["early"]:
        lines += [
            "",
            f"At {tokens(goals['early_tokens'])} tokens (about 0.3% of the base's pretraining), the share of the "
            "swap's gap each method arm has closed (aim: 95%):",
            "",
            "| arm | gap closed | over 95% |",
            "| --- | --- | --- |",
        ]
        lines += [f"| `{e['arm']}` | {gap_text(e['gap_closed'])} | {e['verdict']} |" for e in goals["early"]]
    return lines + [""]


def run_lines(record: dict[str, Any]) -> list[str]:
    lines = ["## Training runs", "", "| arm | seed | steps | tokens | tokens/s | CPU us/token | peak learning rates |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for name, seeds in record.get("runs", {}).items():
        for seed, run in seeds.items():
            t = run["training"]
            rates = ", ".join(f"{k} {v:g}" for k, v in (t.get("learning_rates") or {}).items()) or "-"
            cpu = _f(t.get("cpu_seconds_per_token") and 1e6 * t["cpu_seconds_per_token"], "{:.0f}")
            lines.append(
                f"| `{name}` | {seed} | {t['steps']} | {t['tokens']:,} | {t['tokens_per_second']:,.0f} | {cpu} | "
                f"{rates} |"
            )
    return lines


def timing(record: dict[str, Any]) -> str:
    """Wall and CPU time, the sessions a resumed study took, and whether it finished. The CPU time is a lower
    bound when a session's fine-tuning workers ended before they were counted (records without `cpu_complete`
    that were resumed or never finished)."""
    sessions = record.get("sessions", 1)
    complete = record.get("cpu_complete", record.get("finished") and sessions == 1)
    cpu = f"{'at least ' if not complete else ''}{record.get('cpu_seconds', 0) / 60:.1f} min"
    over = f" over {sessions} sessions" if sessions > 1 else ""
    status = "finished" if record.get("finished") else "in progress / interrupted"
    text = f"wall time {record.get('wall_seconds', 0) / 60:.1f} min{over}, CPU time {cpu} ({status})"
    return text + ("; an interrupted session's fine-tuning workers are not in the CPU time" if not complete else "")


def write_study_report(record: dict[str, Any], out_dir: str | Path) -> None:
    """Write results.json (the record and what the report derives from it), results.md and the PNG plots."""
    from plots_swap_study import plot_extrapolation, plot_passkey_grid, plot_position_table, plot_recovery

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    part = summarize(record) if "base_result" in record and record.get("runs") else None
    record = {**record, "gpt2": part}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    m = record["machine"]
    lines = [
        "# Swap study",
        "",
        f"{record['date']}; {m['processor']}, {m['cpus']} CPUs, torch {m['torch']}, transformers "
        f"{m['transformers']}; {timing(record)}.",
        "",
    ]
    if part is None:
        (out / "results.md").write_text("\n".join(lines + ["Nothing measured yet."]) + "\n")
        return
    lines += intro_lines(record, part) + base_lines(record, part) + recovery_lines(record, part)
    lines += passkey_curve_lines(record, part) + extrapolation_lines(record, part) + passkey_lines(record, part)
    lines += verdict_lines(part) + drope_lines(part) + comparison_lines(part) + methods_lines(part)
    lines += table_lines(record)
    lines += run_lines(record)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_recovery(part, record["base_result"]["perplexity"], part["tolerance"], out / "recovery.png")
    plot_extrapolation(part, out / "extrapolation.png")
    plot_passkey_grid(part, out / "passkey.png")
    plot_position_table(record.get("position_tables") or {}, out / "position_table.png")


# ---------------- README text (tools/update_readme.py renders these blocks from results.json) ----------------
def readme_run(record: dict[str, Any]) -> str:
    """The run paragraph: what ran, where, and its CPU and wall time from the record."""
    s, m = record["settings"], record["machine"]
    runs = sum(len(seeds) for seeds in record["runs"].values())
    cpu = record["cpu_seconds"] / 60
    lower = "" if record.get("cpu_complete", record.get("sessions", 1) == 1) else "at least "
    sessions = record.get("sessions", 1)
    over = f" over {sessions} sessions (resumed with `--resume`)" if sessions > 1 else ""
    workers = s.get("workers", 1)
    budget = record["steps"] * record["tokens_per_step"]
    return (
        f"The committed `results/{record_folder(record)}/` is one run of that command on {record['date'][:10]} on a "
        f"{m['cpus']}-core {m['processor']} machine{over}: **{lower}{cpu:.0f} CPU min** for "
        f"{len(record['runs'])} arms x {len(s['seeds'])} seeds = {runs} fine-tuning runs of {budget:,} tokens "
        f"({100 * budget / record['base_pretraining_tokens']:.3g}% of the base's pretraining tokens), {workers} at a "
        "time. Its "
        f"wall time here was {record['wall_seconds'] / 60:.1f} min{load_text(record)}; {floor_text(record)}, and a "
        "slower or busy machine takes longer."
    )


def floor_text(record: dict[str, Any]) -> str:
    """The least wall time the CPU time allows on the record's cores, and whether the run came close to it."""
    cores = record["machine"]["cpus"]
    floor = record["cpu_seconds"] / 60 / cores
    if record["wall_seconds"] / 60 <= 1.1 * floor:
        return f"that is close to the least its CPU time allows on {cores} cores of this speed ({floor:.1f} min)"
    return f"on {cores} cores of this speed it cannot take less than {floor:.1f} min"


def load_text(record: dict[str, Any]) -> str:
    """What the record says of other jobs on the machine: its highest 1-minute load average above its cores."""
    load, cores = record.get("load_average_max"), record["machine"]["cpus"]
    if load is None:
        return ""
    busy = "shared with other jobs" if load > cores + 0.5 else "otherwise idle"
    return f" (the highest 1-minute load average seen was {load:.1f} on {cores} cores: {busy})"


def record_folder(record: dict[str, Any]) -> str:
    from hf_posenc.evaluation.methods import method_arms

    if (record["settings"].get("data") or {}).get("validation_books"):
        return "recovery_validation"
    if record["steps"] * record["tokens_per_step"] > 1_000_000:
        return "swap_study_long"
    return "swap_study_recovery" if method_arms(record["settings"]) else "swap_study"


def readme_setup(record: dict[str, Any]) -> str:
    """The setup bullets: budget, schedule, arms, what is scored, and the statistics."""
    s, part = record["settings"], record["gpt2"]
    f = s["finetune"]
    budget = record["steps"] * record["tokens_per_step"]
    pre = record["base_pretraining_tokens"]
    probes = [tokens(t) for t in (p * record["tokens_per_step"] for p in record["probe_steps"][1:])]
    arms = [f"`{name}`" for name in record["runs"]]
    lines = [
        f"- Arms: {', '.join(arms)}; `{CONTROL}` is the no-swap control (the base's own table, copied out to "
        f"{max(record['lengths']):,} positions), fine-tuned on the same data with the same budget and schedule.",
        *arm_settings_lines(s),
        f"- Each arm is fine-tuned for {budget:,} tokens ({100 * budget / pre:.3g}% of the base's {pre / 1e6:.1f}M "
        f"pretraining tokens): {record['steps']} AdamW steps of {f['batch_size']} x {record['window']} tokens, "
        f"learning rate {f['learning_rate']:g}, {f['warmup_steps']} warmup steps and "
        f"{f.get('lr_scheduler', 'cosine')} decay, "
        f"{f['mixed_precision']} autocast, with seeds {', '.join(map(str, s['seeds']))}.",
        f"- The fine-tuning blocks keep the base's pretraining mixture with other keys: "
        f"{mixture_text(record['mixture'], s.get('mixture') or {})}, the rest training books.",
        f"- Probes at 0 and after {', '.join(probes)} tokens; then the evaluation at "
        f"{', '.join(f'{n:,}' for n in record['lengths'])} tokens. {held_out_text(record)}",
        "- Every number below is a mean over seeds with its 95% interval: the t distribution over the seeds "
        "together with a bootstrap over the scored windows, spans and prompts (`hf_posenc.evaluation.statistics`). "
        'A claim is made only where its interval separates; otherwise the table says "not separated". Nothing '
        "was tuned on the held-out books.",
    ]
    if not part["text_error"]:
        lines[-1] = ("- Every number below is a mean over seeds with its 95% interval over the seeds alone (this "
                     "record predates per-window losses, so text-sampling error is not in the intervals), and the "
                     "passkey numbers rest on the same 15 prompts for every seed and probe.")  # fmt: skip
    for c in part["comparisons"]:
        lines.append(f"- `{c['a']}` and `{c['b']}` differ in one setting: {c['differs']}.")
    return "\n".join(lines)


ARM_SETTING_TEXT = {
    "attention_transfer_weight": "attention transfer from the unconverted original (KL to its attention, every layer "
    "and head, weight {:g})",
    "distill_weight": "distillation from the original's logits (weight {:g})",
    "gradual_swap_steps": "the old table fading out over {}",
    "position_lr_multiplier": "the position parameters at {:g}x the learning rate",
}


def arm_settings_lines(settings: dict[str, Any]) -> list[str]:
    """A bullet per set of arms sharing settings of their own (conversion options, fine-tuning settings), in words
    where known."""
    grouped: dict[str, list[str]] = {}
    for name, spec in settings["encodings"].items():
        spec = spec or {}
        said = [f"converted with {key}={value}" for key, value in (spec.get("options") or {}).items()]
        for key, value in (spec.get("finetune") or {}).items():
            if key == "gradual_swap_steps":
                value = f"{value:.0%} of the steps" if value < 1 else f"{value:g} steps"
            if key == "position_lr_multiplier" and value == 0:
                said.append("the position parameters frozen")
                continue
            text = ARM_SETTING_TEXT.get(key)
            said.append(text.format(value) if text else f"{key}={value}")
            if DEFAULT_METHOD.get(key) == value and len(DEFAULT_METHOD) == 1:
                said[-1] += ", what the recipes do after a swap"
        if said:
            grouped.setdefault("; ".join(said), []).append(f"`{name}`")
    return [f"- {', '.join(names)}: {text}." for text, names in grouped.items()]


def readme_in_window(record: dict[str, Any]) -> str:
    """The base's in-window numbers and the recovery table."""
    base, part = record["base_result"], record["gpt2"]
    curves = part["curves"]
    points = next(iter(curves.values()))["points"]
    shown = [p for p in points[1:] if p is points[-1] or p["tokens"] >= points[-1]["tokens"] / 8][-3:]
    fp32 = base.get("fp32")
    head = (
        f"The base scores {base['perplexity']:.1f} in the window ({base['bpc']:.3f} bits per character, "
        f"{base['bpc'] / base['unigram_bpc']:.2f} x a unigram model's {base['unigram_bpc']:.3f})"
        + (f"; in fp32, as its own report measures it, {fp32['perplexity']:.1f}" if fp32 else "")
        + "."
    )
    header = " | ".join(f"after {tokens(p['tokens'])}" for p in shown)
    lines = [
        head,
        "",
        f"| arm | right after the swap | {header} | vs the base | vs the control | within 2% of the base at | "
        "within 2% of the control at |",
        "| --- | --- |" + " --- |" * (len(shown) + 4),
    ]
    for name, curve in curves.items():
        pts = curve["points"]
        at = {p["tokens"]: p for p in pts}
        cells = [_pm(at[p["tokens"]]["mean"], at[p["tokens"]]["std"]) for p in shown]
        last, rec = pts[-1], curve["recovered"]
        control = "-" if name == CONTROL else change(last.get("vs_control"))
        lines.append(
            f"| `{name}` | {pts[0]['mean']:.1f} ({ratio(pts[0]['vs_base']).split(' ')[0]}) | {' | '.join(cells)} | "
            f"{change(last['vs_base'])} | {control} | {tokens(rec['base'])} | "
            f"{'-' if name == CONTROL else tokens(rec['control'])} |"
        )
    return "\n".join(lines)


def readme_retrieval(record: dict[str, Any]) -> str:
    """Passkey at the window along the way, the first key token, and chance."""
    part = record["gpt2"]
    curves = {name: c["points"] for name, c in part["curves"].items() if c["points"][0].get("passkey")}
    points = next(iter(curves.values()))
    shown = [p for p in points[1:] if p["tokens"] >= points[-1]["tokens"] / 8][-3:]
    chance = _chance(record)
    base = part["passkey"].get(BASE, {}).get(str(part["window"]))
    header = " | ".join(f"after {tokens(p['tokens'])}" for p in shown)
    lines = [
        f"| arm | right after the swap | {header} | first key token at the end |",
        "| --- | --- |" + " --- |" * (len(shown) + 1),
        f"| base | {share(base)} |" + " - |" * len(shown) + " - |",
    ]
    for name, pts in curves.items():
        at = {p["tokens"]: p for p in pts}
        cells = " | ".join(share(at[p["tokens"]].get("passkey")) for p in shown)
        first = share(pts[-1].get("first_key_token"))
        lines.append(f"| `{name}` | {share(pts[0].get('passkey'))} | {cells} | {first} |")
    if chance:
        lines += ["", f"Chance: {chance['key']:.4%} for a whole key, {chance['first_key_token']:.0%} for its first "
                      "key token (the first answer token that differs between keys; it cannot be copied from the "
                      "answer's own earlier tokens)."]  # fmt: skip
    return "\n".join(lines)


def readme_extrapolation(record: dict[str, Any]) -> str:
    """Chunked perplexity past the window, the rise at the longest length, and passkey by length."""
    part = record["gpt2"]
    window, lengths = part["window"], part["lengths"]
    longest = str(max(lengths))
    keyed = [n for n in lengths if any(str(n) in cells for cells in part["passkey"].values())]  # passkey measured
    lines = [
        "| model | " + " | ".join(f"{n:,} ({n // window}x)" for n in lengths) + f" | {int(longest) // window}x / 1x | "
        "passkey " + " / ".join(f"{n // window}x" for n in keyed) + " |",
        "| --- |" + " --- |" * (len(lengths) + 2),
    ]
    for name, result in part["models"].items():
        cells = []
        for n in lengths:
            m = measurement(result, n, "chunked")
            cells.append(_pm(m["perplexity"], m.get("std")) if m and m["status"] == "ok" else "n/a")
        rise = ratio(part["extrapolation"].get(name, {}).get(longest)) if name != BASE else "-"
        passkey = part["passkey"].get(name, {})
        keys = " / ".join(_f((passkey.get(str(n)) or {}).get("mean"), "{:.0%}") for n in keyed)
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {rise} | {keys} |")
    return "\n".join(lines)


def readme_changes(record: dict[str, Any], plain_record: dict[str, Any]) -> str:
    """This run's swaps against plain fine-tuning of the same arms in `plain_record` (the recovery study, whose plain
    arms are the earlier default: same base, data, mixture, seeds and in-window probes, twice the budget): in-window
    perplexity against the base at both budgets, passkey and its first key token at the window, and the rise past the
    window. Intervals from two runs are compared by overlap only (not a paired test)."""
    part, plain = record["gpt2"], plain_record["gpt2"]
    budget = next(iter(part["curves"].values()))["points"][-1]["tokens"]
    plain_budget = next(iter(plain["curves"].values()))["points"][-1]["tokens"]
    longest = str(max(part["lengths"]))
    factor = int(longest) // part["window"]
    lines = [
        f"| arm | vs the base: plain, {tokens(plain_budget)} | plain, {tokens(budget)} (mid-run) | this run, "
        f"{tokens(budget)} | passkey at the window: plain / this run | first key token: plain / this run | "
        f"{factor}x / 1x: plain / this run |",
        "| --- |" + " --- |" * 6,
    ]
    sides: dict[str, dict[str, list[str]]] = {"end": {}, "mid": {}}
    for name, curve in part["curves"].items():
        if name == CONTROL or name not in plain["curves"]:
            continue
        mine, theirs = curve["points"][-1], plain["curves"][name]["points"]
        mid = next((p for p in theirs if p["tokens"] == budget), None)
        end = theirs[-1]
        lines.append(
            f"| `{name}` | {change(end['vs_base'])} | {change(mid and mid['vs_base'])} | {change(mine['vs_base'])} | "
            f"{share(end.get('passkey'))} / {share(mine.get('passkey'))} | {share(end.get('first_key_token'))} / "
            f"{share(mine.get('first_key_token'))} | {ratio(plain['extrapolation'].get(name, {}).get(longest))} / "
            f"{ratio(part['extrapolation'].get(name, {}).get(longest))} |"
        )
        for key, other in (("end", end), ("mid", mid)):
            if other is not None:
                sides[key].setdefault(_side(mine["vs_base"], other["vs_base"]), []).append(f"`{name}`")
    lines.append("")
    for key, tokens_there in (("end", plain_budget), ("mid", budget if budget != plain_budget else None)):
        if tokens_there is None or not sides[key]:
            continue
        said = "; ".join(f"{side}: {', '.join(names)}" for side, names in sides[key].items())
        lines.append(f"In-window perplexity after {tokens(budget)} tokens of this run, against plain fine-tuning "
                     f"after {tokens(tokens_there)}{' (mid-run)' if key == 'mid' else ''}: {said}.")  # fmt: skip
    spans = [r.get("settings", {}).get("eval", {}).get("spans_per_book") for r in (plain_record, record)]
    if spans[0] != spans[1] and None not in spans:
        lines.append(f"The rise past the window is scored on {spans[0]} spans per held-out book in the plain run and "
                     f"{spans[1]} in this one.")  # fmt: skip
    return "\n".join(lines)


def _side(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where interval `a` lies against interval `b`: below, above, or overlapping (not a paired test)."""
    if a["high"] < b["low"]:
        return "below (the intervals apart)"
    return "above (the intervals apart)" if a["low"] > b["high"] else "overlap"


def readme_rerun(record: dict[str, Any], earlier: dict[str, Any]) -> str:
    """What a rerun changed against an earlier record of the same study: each arm both ran, at the full budget in
    both (in-window perplexity against each run's own base, the first budget within the tolerance of the base,
    passkey at the window, the rise at the longest length), then which conclusions moved and which held. Two records
    are compared by interval overlap (not a paired test); a finding moves when its verdict does."""
    part, old = record["gpt2"], earlier["gpt2"]
    longest = str(max(part["lengths"]))
    factor = int(longest) // part["window"]
    tol = f"{part['tolerance']:.0%}"
    arms = [name for name in part["curves"] if name in old["curves"]]
    lines = [
        f"Earlier: the run of {earlier['date'][:10]}; now: the run of {record['date'][:10]}. Each cell is earlier / "
        "now, at the full budget.",
        "",
        f"| arm | vs the base | within {tol} of the base at | passkey at the window | {factor}x / 1x |",
        "| --- |" + " --- |" * 4,
    ]
    moved_, held = [], []
    for name in arms:
        now, then = part["curves"][name], old["curves"][name]
        end, end_then = now["points"][-1], then["points"][-1]
        at = [tokens(c["recovered"]["base"]) if name != CONTROL else "-" for c in (then, now)]
        rise = [ratio(p["extrapolation"].get(name, {}).get(longest)) for p in (old, part)]
        lines.append(
            f"| `{name}` | {change(end_then['vs_base'])} / {change(end['vs_base'])} | {at[0]} / {at[1]} | "
            f"{share(end_then.get('passkey'))} / {share(end.get('passkey'))} | {rise[0]} / {rise[1]} |"
        )
        if name != CONTROL and at[0] != at[1]:
            moved_.append(f"`{name}` within {tol} of the base: at {at[0]} earlier, at {at[1]} now")
        if end.get("passkey") and end_then.get("passkey"):
            said = f"`{name}`'s passkey at the window ({share(end_then['passkey'])} -> {share(end['passkey'])})"
            (held if _side(end["passkey"], end_then["passkey"]) == "overlap" else moved_).append(said)
    earlier_verdicts = {v["claim"]: v for v in old["verdicts"]}
    for verdict in part["verdicts"]:
        then = earlier_verdicts.get(verdict["claim"])
        if then is not None:
            said = f"*{verdict['claim']}* (**{then['reproduces']}** -> **{verdict['reproduces']}**)"
            (held if then["reproduces"] == verdict["reproduces"] else moved_).append(said)
    d, d_then = part.get("drope"), old.get("drope")
    if d and d_then:
        said = (
            f"DroPE's claim on `{d['arm']}` ({d_then['gap_closed']:.0%} -> {d['gap_closed']:.0%} of the gap closed; "
            f"**{d_then['reproduces']}** -> **{d['reproduces']}**)"
        )
        (held if d_then["reproduces"] == d["reproduces"] else moved_).append(said)
    lines += [
        "",
        "Conclusions that moved: " + ("; ".join(moved_) if moved_ else "none") + ".",
        "Conclusions that held: " + ("; ".join(held) if held else "none") + ".",
    ]
    new_arms = [f"`{name}`" for name in part["curves"] if name not in old["curves"]]
    if new_arms:
        lines.append(f"New in this run: {and_join(new_arms)}.")
    return "\n".join(lines)


def readme_validation(record: dict[str, Any]) -> str:
    """The recovery methods on the validation split (`--setting recovery_validation`): each arm at the last probe,
    against the base and plain fine-tuning of its encoding (the plain arm named where it is not the encoding's own),
    with its first-key-token retrieval and cost."""
    part, runs = record["gpt2"], record["runs"]
    books = ", ".join(f"`{b}`" for b in record["settings"]["data"]["validation_books"])
    found = {entry["arm"]: entry for entry in part["methods"]}
    last = {arm: curve["points"][-1] for arm, curve in part["curves"].items()}
    budget = tokens(next(iter(last.values()))["tokens"])
    seeds = len(record["settings"]["seeds"])
    lines = [
        f"Settings were chosen on a validation split: {books} held out of fine-tuning and scored (the held-out books "
        f"are not read), {budget} tokens per run, {seeds} seed{'s' if seeds > 1 else ''} "
        f"(`python recipes/swap_study.py --setting recovery_validation`, "
        "[`results/recovery_validation/`](results/recovery_validation/results.md)). In-window perplexity at the "
        "end against the base and against plain fine-tuning of the same encoding (95% intervals over the scored "
        "windows), the passkey's first key token at the window, and training CPU time per token against plain:",
        "",
        "| arm | method | in-window vs the base | vs plain | first key token | cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm in runs:
        entry, point = found.get(arm), last[arm]
        finetune = (record["settings"]["encodings"].get(arm) or {}).get("finetune") or {}
        own = method_settings(finetune)
        plain = "plain" + (f" ({', '.join(f'{k}={v}' for k, v in finetune.items())})" if finetune else "")
        method = method_text(entry) if entry else method_text({"method": own, "also": {}}) if own else plain
        method = "no swap (the control)" if arm == CONTROL else method
        versus = change(entry["points"][-1]["vs_plain"]) if entry and entry["points"] else "-"
        if entry and entry["plain"] != entry["encoding"]:
            versus += f" (vs `{entry['plain']}`)"
        cost = f"x{entry['cost']:.2f}" if entry and entry["cost"] else "-"
        lines.append(
            f"| `{arm}` | {method} | {change(point['vs_base'])} | {versus} | {share(point.get('first_key_token'))} "
            f"| {cost} |"
        )
    return "\n".join(lines)


def readme_methods(record: dict[str, Any]) -> str:
    """The recovery study's table: per swap, plain fine-tuning and each method, the share of the gap closed at the
    early budget, and at the full budget perplexity against the base and plain (at equal tokens and compute),
    passkey at the window and cost; the control last."""
    from hf_posenc.evaluation.methods import gap_interval

    part = record["gpt2"]
    curves = part["curves"]
    early = (part.get("targets") or {}).get("early_tokens")
    budget = tokens(record["steps"] * record["tokens_per_step"])
    lines = [
        f"| arm | method | cost | gap closed at {tokens(early)} | vs the base at {budget} | vs plain | at equal "
        "compute | passkey at the window |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def at(points: list[dict[str, Any]], n: int | None) -> dict[str, Any] | None:
        return next((p for p in points if p["tokens"] == n), None)

    plains = list(dict.fromkeys(entry["plain"] for entry in part["methods"]))
    for plain in plains:
        points = curves[plain]["points"]
        swap, first = points[0]["vs_base"]["mean"], at(points, early)
        gap = gap_text(gap_interval(swap, first["vs_base"])) if first else "-"
        end = points[-1]
        lines.append(
            f"| `{plain}` | plain | x1.00 | {gap} | {change(end['vs_base'])} | - | - | {share(end.get('passkey'))} |"
        )
        for entry in (e for e in part["methods"] if e["plain"] == plain and e["points"]):
            first, end = at(entry["points"], early), entry["points"][-1]
            cost = f"x{entry['cost']:.2f}" if entry["cost"] else "n/a"
            gap = gap_text(first["gap_closed"]) if first else "-"
            equal_text = equal_compute_text(end)
            lines.append(
                f"| `{entry['arm']}` | {method_text(entry)} | {cost} | {gap} | {change(end['vs_base'])} | "
                f"{change(end['vs_plain'])} | {equal_text} | {share(end.get('passkey'))} |"
            )
    if CONTROL in curves:
        end = curves[CONTROL]["points"][-1]
        lines.append(
            f"| `{CONTROL}` | no swap (the control) | - | - | {change(end['vs_base'])} | - | - | "
            f"{share(end.get('passkey'))} |"
        )
    return "\n".join(lines)


def readme_shortfall(record: dict[str, Any], long_record: dict[str, Any] | None = None) -> str:
    """Why the conversion targets were missed, from the record: how much of the gap every arm closes early and what
    is left at the budget, each kind of method against plain fine-tuning, and retrieval (with, from `long_record`,
    when plain fine-tuning of rope brings passkey back)."""
    part = record["gpt2"]
    curves, found = part["curves"], [e for e in part["methods"] if e["points"]]
    early = (part.get("targets") or {}).get("early_tokens")
    budget = found[0]["points"][-1]["tokens"]

    def at(points: list[dict[str, Any]], n: int | None) -> dict[str, Any] | None:
        return next((p for p in points if p["tokens"] == n), None)

    from hf_posenc.evaluation.methods import gap_interval

    plains = list(dict.fromkeys(e["plain"] for e in found))
    plain_gaps = [gap_interval(curves[a]["points"][0]["vs_base"]["mean"], at(curves[a]["points"], early)["vs_base"])
                  for a in plains if at(curves[a]["points"], early)]  # fmt: skip
    method_gaps = [at(e["points"], early)["gap_closed"] for e in found if at(e["points"], early)]
    span = lambda gaps: f"{min(g['mean'] for g in gaps):.0%} to {max(g['mean'] for g in gaps):.0%}"  # noqa: E731
    best = min(found, key=lambda e: e["points"][-1]["vs_base"]["mean"])
    first = at(best["points"], early)
    lines = [
        f"- **Most of the gap closes early.** At {tokens(early)} tokens plain "
        f"fine-tuning has closed {span(plain_gaps)} of the swap's gap in log-perplexity (by encoding) and the method "
        f"arms {span(method_gaps)}; from there to {tokens(budget)} the best arm, `{best['arm']}`, went from "
        f"{change(first['vs_base']) if first else '-'} to {change(best['points'][-1]['vs_base'])} against the base."
    ]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in found:
        kinds.setdefault(method_text({"method": entry["method"], "also": {}}), []).append(entry)
    for kind, entries in kinds.items():
        cells = ", ".join(f"`{e['encoding']}` {change(e['points'][-1]['vs_plain'])}" for e in entries)
        costs = [e["cost"] for e in entries if e["cost"]]
        cost = f" at x{min(costs):.2f}-{max(costs):.2f} the CPU time" if costs else ""
        lines.append(f"- {kind}: in-window against plain fine-tuning at {tokens(budget)} tokens {cells}{cost}.")
    swaps = [e for e in found if e["points"][-1].get("passkey")] + [
        {"arm": a, "points": curves[a]["points"]} for a in plains if curves[a]["points"][-1].get("passkey")
    ]
    if swaps:
        top = max(swaps, key=lambda e: e["points"][-1]["passkey"]["mean"])
        none = sum(e["points"][-1]["passkey"]["high"] < 0.05 for e in swaps)
        text = (
            f"- **Retrieval.** Passkey at the window is under 5% (upper interval "
            f"end) for {none} of the {len(swaps)} swapped arms; the best is `{top['arm']}` with "
            f"{share(top['points'][-1]['passkey'])}."
        )
        rope = ((long_record or {}).get("gpt2") or {}).get("curves", {}).get("rope")
        if rope:
            back = [p for p in rope["points"] if (p.get("passkey") or {}).get("mean", 0) > 0]
            if back:
                text += (
                    f" With plain fine-tuning in the long study, rope's passkey is 0% up to "
                    f"{tokens(max(p['tokens'] for p in rope['points'] if p['tokens'] < back[0]['tokens']))} tokens "
                    f"and {back[0]['passkey']['mean']:.0%} at {tokens(back[0]['tokens'])}, "
                    f"{back[-1]['passkey']['mean']:.0%} at {tokens(back[-1]['tokens'])}."
                )
        lines.append(text)
    return "\n".join(lines)


def readme_targets(record: dict[str, Any]) -> str:
    """The conversion targets as tests, one list item each (results.md's Targets section)."""
    lines = methods_lines(record["gpt2"])
    start = lines.index("### Targets") + 2 if "### Targets" in lines else len(lines)
    return "\n".join(lines[start:]).strip()


def readme_findings(record: dict[str, Any]) -> str:
    """The findings, each stated from the summary's tests."""
    part = record["gpt2"]
    curves, tol = part["curves"], part["tolerance"]
    swapped = {n: c for n, c in curves.items() if n != CONTROL}
    right_after = {n: c["points"][0]["vs_base"]["mean"] for n, c in swapped.items()}
    ends = {n: c["points"][-1] for n, c in swapped.items()}
    budget = tokens(next(iter(curves.values()))["points"][-1]["tokens"])
    recovered = [f"`{n}` (at {tokens(c['recovered']['base'])})" for n, c in swapped.items() if c["recovered"]["base"]]
    order = sorted(ends, key=lambda n: ends[n]["vs_base"]["mean"])
    lines = [
        f"- **The swap costs x{math.exp(min(right_after.values())):.2f}-x{math.exp(max(right_after.values())):.2f} "
        f"in-window perplexity at once** ({', '.join(f'`{n}` x{math.exp(v):.2f}' for n, v in right_after.items())}).",
        f"- **After {budget} tokens**, in-window perplexity against the base: "
        + ", ".join(f"`{n}` {change(ends[n]['vs_base'])}" for n in order)
        + f". Within {tol:.0%} of the base as a test: "
        + (", ".join(recovered) if recovered else "none")
        + ". Against the no-swap control at the same budget: "
        + ", ".join(f"`{n}` {change(ends[n].get('vs_control'))}" for n in order)
        + ".",
    ]
    retrieval = {n: c["points"][-1].get("passkey") for n, c in curves.items()}
    if all(retrieval.values()):
        lines.append(
            f"- **Retrieval at the window after {budget} tokens**: "
            + ", ".join(f"`{n}` {share(i)}" for n, i in retrieval.items())
            + "."
        )
    for v in part["verdicts"]:
        text = evidence_text(v, part["window"])
        lines.append(f"- Press et al. (2022): *{v['claim']}*: **{v['reproduces']}** ({text}).")
    d = part.get("drope")
    if d:
        lines.append(
            f"- **DroPE's claim on its matching arm, `nope`** (learned -> NoPE here, RoPE -> NoPE in DroPE): at "
            f"{tokens(d['tokens'])} tokens ({d['share_of_pretraining']:.2%} of pretraining) it has closed "
            f"{d['gap_closed']:.0%} [{d['gap_closed_low']:.0%}, {d['gap_closed_high']:.0%}] of the swap's gap; "
            f"over {d['claim']:.0%}: **{d['reproduces']}**."
        )
    for c in part["comparisons"]:
        p = c.get("passkey")
        if p:
            lines.append(
                f"- `{c['a']}` against `{c['b']}` ({c['differs']}): passkey at the window "
                f"{100 * p['mean']:+.0f} points [{100 * p['low']:+.0f}, {100 * p['high']:+.0f}]"
                f" ({'separated' if p['separated'] else 'not separated'}), in-window perplexity "
                f"{change(c['perplexity'])}."
            )
    if part["text_error"]:
        se = [(p["vs_base"]["se_seed"], p["vs_base"]["se_text"]) for c in curves.values() for p in c["points"][1:]]
        lines.append(
            f"- **Noise.** In the window, the standard error from the seeds is at most "
            f"{100 * max(a for a, _ in se):.2f}% and from the text at most {100 * max(b for _, b in se):.2f}% of "
            "perplexity; both are in every interval."
        )
    return "\n".join(lines)


def render(out_dir: str | Path) -> Path:
    """Write results.md, the PNG plots and the derived `gpt2` part of results.json again from the measurements in
    `out_dir`/results.json, without rerunning anything."""
    out = Path(out_dir)
    write_study_report(json.loads((out / "results.json").read_text()), out)
    return out / "results.md"


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python recipes/report_swap_study.py RESULTS_DIR   (the folder holding results.json)")
    print(f"Wrote {render(sys.argv[1])} and its plots")
