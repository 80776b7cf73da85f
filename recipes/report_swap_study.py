"""The swap study's report: results.json, results.md (tables, recovery, extrapolation, passkey, the literature
check) and PNG plots, all as mean +- std over the seeds.

python recipes/report_swap_study.py results/swap_study   # redraw results.md, the PNGs and results.json's gpt2 part
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hf_posenc.evaluation import measurement
from hf_posenc.evaluation.recovery import curve_summary, mean_std, tokens_to_recover

BASE = "original (no fine-tuning)"
TOLERANCE = 0.02  # "recovered": mean in-window perplexity within 2% of the base's
MODES = ("chunked", "sliding")
DESCRIBE = {"chunked": "non-overlapping chunks", "sliding": "sliding window, stride half the length"}


# ---------------- aggregation over seeds ----------------
def ppl(result: dict[str, Any] | None, length: int, mode: str = "chunked") -> float | None:
    record = measurement(result, length, mode) if result else None
    return record["perplexity"] if record and record["status"] == "ok" else None


def cell_means(grids: list[list[list[float | None]]]) -> list[list[float | None]]:
    """The mean of each cell over several same-shaped grids (None where no grid has a value)."""
    return [[mean_std([g[i][j] for g in grids])[0] for j in range(len(row))] for i, row in enumerate(grids[0])]


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' `evaluate_long_context` results as one in the same shape: each perplexity record holds the
    mean perplexity and loss over the seeds (status "ok" only where every seed ran) with "std" and "values"; passkey
    accuracy and token accuracy are means per cell, and the by-length and by-depth means are taken from them."""
    first = results[0]
    records = []
    for record in first["perplexity"]:
        length, mode = record["length"], record["mode"]
        found = [measurement(r, length, mode) for r in results]
        values = [m["perplexity"] if m and m["status"] == "ok" else None for m in found]
        ok = all(v is not None for v in values)
        mean, std = mean_std(values)
        loss = mean_std([m["loss"] for m in found])[0] if ok else None
        records.append({**record, "status": "ok" if ok else record["status"], "values": values,
                        "perplexity": mean if ok else None, "std": std if ok else None, "loss": loss})  # fmt: skip
    passkey = None
    if first.get("passkey"):
        accuracy = cell_means([r["passkey"]["accuracy"] for r in results])
        passkey = {
            **first["passkey"],
            "accuracy": accuracy,
            "token_accuracy": cell_means([r["passkey"]["token_accuracy"] for r in results]),
            "accuracy_by_length": [mean_std(row)[0] for row in accuracy],
            "accuracy_by_depth": [mean_std(column)[0] for column in zip(*accuracy)],
            "seeds": len(results),
        }
    return {**first, "perplexity": records, "passkey": passkey, "seeds": len(results)}


def scaled_result(record: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The rope + `kind` rows over the seeds: each length's result (its own scaling factor) merged into one."""
    per_seed = (record.get("scaling") or {}).get(kind) or {}
    if not per_seed:
        return None
    merged = []
    for seed_results in per_seed.values():
        results = [seed_results[n] for n in sorted(seed_results, key=int)]
        one = {**results[0], "perplexity": [r for res in results for r in res["perplexity"]]}
        one["lengths"] = [n for res in results for n in res["lengths"]]
        if results[0].get("passkey"):
            one["passkey"] = {**results[0]["passkey"], "lengths": one["lengths"]} | {
                key: [row for res in results for row in res["passkey"][key]] for key in ("accuracy", "token_accuracy")
            }
        merged.append(one)
    return aggregate(merged)


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The derived part of the record (`gpt2`): per-encoding means over seeds, curves, recovery budgets, verdicts."""
    runs, window, lengths = record.get("runs", {}), record["window"], record["lengths"]
    base = record["base_result"]
    models: dict[str, Any] = {}
    if base.get("long_context"):
        models[BASE] = base["long_context"]
    curves, training = {}, {}
    for name, seeds in runs.items():
        results = [seeds[s]["long_context"] for s in sorted(seeds, key=int)]
        models[name] = aggregate(results)
        probes = [seeds[s]["training"]["probes"] for s in sorted(seeds, key=int)]
        curve = curve_summary(probes)
        curves[name] = {
            "points": curve,
            "tokens_to_within_2pct_of_base": tokens_to_recover(curve, base["perplexity"], TOLERANCE),
        }
        if all("passkey" in probe for run in probes for probe in run):
            curves[name]["passkey"] = curve_summary(probes, key="passkey")
        training[name] = {"in_window_ppl_right_after_swap": curve[0]["mean"] if curve else None,
                          "in_window_ppl_after_fine_tuning": curve[-1]["mean"] if curve else None}  # fmt: skip
    for kind in (record.get("settings") or {}).get("scaling") or []:
        scaled = scaled_result(record, kind)
        if scaled is not None:
            models[f"rope + {kind} (inference)"] = scaled
    return {"window": window, "lengths": lengths, "models": models, "training": training, "curves": curves,
            "verdicts": verdicts(models, window, lengths)}  # fmt: skip


def rise(result: dict[str, Any] | None, window: int, length: int) -> tuple[float, bool] | None:
    """Chunked perplexity at `length` over the same model's at its window (means over seeds), and whether it rose by
    more than the seed noise: the mean per-seed rise exceeds twice its standard error (paired by seed; with one seed,
    any rise counts)."""
    inside, outside = (measurement(result, n, "chunked") if result else None for n in (window, length))
    if not inside or not outside or inside["status"] != "ok" or outside["status"] != "ok":
        return None
    pairs = [(a, b) for a, b in zip(inside.get("values") or [], outside.get("values") or []) if a and b]
    differences = [b - a for a, b in pairs] or [outside["perplexity"] - inside["perplexity"]]
    mean, std = mean_std(differences)
    return outside["perplexity"] / inside["perplexity"], mean > 2 * (std or 0.0) / math.sqrt(len(differences))


def verdicts(models: dict[str, Any], window: int, lengths: list[int]) -> list[dict[str, Any]]:
    """The literature's ordering (Press et al. 2022), point by point, on chunked perplexity past the window: a model
    "degrades" where its perplexity rises above its in-window value by more than the seed noise, and "holds" where it
    does not rise beyond the noise at any length."""
    longer = [n for n in lengths if n > window]
    if not longer:
        return []

    def rises(name: str) -> list[tuple[float, bool] | None]:
        return [rise(models.get(name), window, n) for n in longer]

    def text(name: str) -> str:
        cells = []
        for r, n in zip(rises(name), longer):
            cells.append(
                f"n/a at {n // window}x" if r is None else f"x{r[0]:.3f}{'*' if r[1] else ''} at {n // window}x"
            )
        return ", ".join(cells)

    def complete(values: list) -> bool:
        return all(v is not None for v in values)

    out = []
    for name in ("sinusoidal", "learned"):
        if name in models:
            values = rises(name)
            ok = complete(values) and values[-1][1]
            out.append({"claim": f"{name} degrades past the window", "reproduces": ok, "evidence": text(name)})
    if "rope" in models:
        values = rises("rope")
        ok = complete(values) and values[-1][1] and all(b[0] >= a[0] for a, b in zip(values, values[1:]))
        out.append({"claim": "rope degrades with distance", "reproduces": ok, "evidence": text("rope")})
    for name in ("alibi", "t5_bias"):
        if name in models:
            values = rises(name)
            ok = complete(values) and not any(v[1] for v in values)
            out.append({"claim": f"{name} holds past the window", "reproduces": ok, "evidence": text(name)})
    if "nope" in models:
        at_end = {name: (rises(name)[-1] or (None,))[0] for name in models if name != BASE and "inference" not in name}
        holders = [v for n, v in at_end.items() if n in ("alibi", "t5_bias") and v]
        degraders = [v for n, v in at_end.items() if n in ("rope", "sinusoidal", "learned") and v]
        nope = at_end.get("nope")
        ok = bool(nope and holders and degraders and max(holders) <= nope <= min(degraders))
        out.append(
            {"claim": "nope sits between them (at the longest length)", "reproduces": ok, "evidence": text("nope")}
        )
    return out


# ---------------- markdown ----------------
def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.1f} ± {std:.1f}" if std else f"{mean:.1f}"


def _pm_pct(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{mean:.0%}" + (f" ± {std:.0%}" if std else "")


def _tokens(n: int | None) -> str:
    if n is None:
        return "not within budget"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def base_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    base = record["base_result"]
    s = record["settings"]
    pre = record.get("base_pretraining_tokens")
    budget = record["steps"] * record["tokens_per_step"]
    share = f" ({100 * budget / pre:.3g}% of the base's {pre / 1e6:.2f}M pretraining tokens)" if pre else ""
    nope = part["training"].get("nope", {}).get("in_window_ppl_right_after_swap")
    lines = [
        f"Base: `{record['base']}`, a GPT-2 with a learned table of {record['window']} positions. Every encoding is "
        f"fine-tuned from it with seeds {', '.join(map(str, s['seeds']))} for {budget:,} tokens{share}, "
        f"{record['steps']} steps of {record['tokens_per_step']:,} tokens; the training blocks are the training "
        f"books plus {mixture_text(record['mixture'], s.get('mixture') or {})}. Evaluation: the held-out books. "
        "Numbers are mean ± std over the seeds.",
        "",
        "## The base",
        "",
        "| in-window perplexity | bpc | unigram bpc | bpc / unigram | perplexity with `nope` (no positions) |",
        "| --- | --- | --- | --- | --- |",
        f"| {base['perplexity']:.2f} | {base['bpc']:.3f} | {_f(base.get('unigram_bpc'), '{:.3f}')} | "
        f"{_f(base['bpc'] / base['unigram_bpc'] if base.get('unigram_bpc') else None, '{:.3f}')} | "
        f"{_f(nope)} ({_f(nope / base['perplexity'] if nope else None, 'x{:.3f}')}) |",
        "",
    ]
    return lines


def mixture_text(mixture: dict[str, Any], settings: dict[str, Any]) -> str:
    packed = "packed " if settings.get("retrieval_packed") else ""
    text = f"{mixture['actual_fraction']:.0%} {packed}passkey blocks"
    if mixture.get("copy_blocks"):
        text += f" and {mixture['actual_copy_fraction']:.0%} repeated-random-token blocks"
    return text


def recovery_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    base_ppl = record["base_result"]["perplexity"]
    curves = part["curves"]
    if not curves:
        return []
    points = next(iter(curves.values()))["points"]
    header = " | ".join(_tokens(p["tokens"]) if p["tokens"] else "0 (swap)" for p in points)
    lines = [
        "## Recovery: in-window perplexity against fine-tuning tokens",
        "",
        f"Probed along each run (cosine schedule over the whole budget). Base: {base_ppl:.2f}; "
        f"recovered = mean within {TOLERANCE:.0%} of it ({base_ppl * (1 + TOLERANCE):.2f}).",
        "",
        f"| encoding | {header} | swap / base | recovered at |",
        "| --- |" + " --- |" * (len(points) + 2),
    ]
    for name, curve in curves.items():
        cells = " | ".join(_pm(p["mean"], p["std"]) for p in curve["points"])
        swap = curve["points"][0]["mean"]
        recovered = _tokens(curve["tokens_to_within_2pct_of_base"])
        lines.append(f"| `{name}` | {cells} | {_f(swap / base_ppl if swap else None, 'x{:.3f}')} | {recovered} |")
    return lines + ["", "![recovery](recovery.png)", ""]


def passkey_curve_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    """Passkey accuracy at the window along fine-tuning, when the probes measured it."""
    curves = {name: curve["passkey"] for name, curve in part["curves"].items() if curve.get("passkey")}
    if not curves:
        return []
    points = next(iter(curves.values()))
    header = " | ".join(_tokens(p["tokens"]) if p["tokens"] else "0 (swap)" for p in points)
    base = (record["base_result"].get("long_context") or {}).get("passkey") or {}
    at_window = dict(zip(base.get("lengths", []), base.get("accuracy_by_length", []))).get(part["window"])
    lines = [
        "## Retrieval along the way: passkey accuracy at the window against fine-tuning tokens",
        "",
        f"Probed with the recovery curve: {part['window']}-token prompts, the evaluation's depths, "
        f"{record['settings']['curve']['passkey_trials']} keys per depth and seed. "
        f"The base: {_f(at_window, '{:.0%}')}.",
        "",
        f"| encoding | {header} |",
        "| --- |" + " --- |" * len(points),
    ]
    for name, curve in curves.items():
        lines.append(f"| `{name}` | " + " | ".join(_pm_pct(p["mean"], p["std"]) for p in curve) + " |")
    return lines + [""]


def extrapolation_lines(record: dict[str, Any], part: dict[str, Any]) -> list[str]:
    window, lengths, models = part["window"], part["lengths"], part["models"]
    lines = ["## Extrapolation: perplexity at 1x-8x the window, after the full budget", ""]
    for mode in MODES:
        lines += [
            f"**{mode}** ({DESCRIBE[mode]})",
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
    max_tokens = (record.get("settings") or {}).get("eval", {}).get("max_tokens")
    lines += [
        f"Every length scores the same tokens (the first {max_tokens:,} of the held-out text), so the columns compare; "
        "the recovery probe scores windows spread over both books, so its numbers differ from the 1x column. "
        "`rope + linear` and `rope + yarn` are the fine-tuned rope models run with that RoPE scaling at inference "
        "(factor = length / window) and no further training; at 1x they are plain `rope`.",
        "",
        "![extrapolation](extrapolation.png)",
        "",
    ]
    return lines


def passkey_lines(part: dict[str, Any]) -> list[str]:
    window, lengths = part["window"], part["lengths"]
    with_passkey = {n: r["passkey"] for n, r in part["models"].items() if r.get("passkey")}
    if not with_passkey:
        return []
    depths = next(iter(with_passkey.values()))["depths"]
    lines = [
        "## Passkey retrieval",
        "",
        f"Accuracy (exact key, greedy) by length, mean over depths {', '.join(f'{d:g}' for d in depths)} and seeds.",
        "",
        "| model | " + " | ".join(f"{n} ({n // window}x)" for n in lengths) + " |",
        "| --- |" + " --- |" * len(lengths),
    ]
    for name, passkey in with_passkey.items():
        by_length = dict(zip(passkey["lengths"], passkey["accuracy_by_length"]))
        lines.append(f"| `{name}` | " + " | ".join(_f(by_length.get(n), "{:.0%}") for n in lengths) + " |")
    lines += [
        "",
        "Answer tokens right (teacher-forced: each token predicted from the prompt and the answer's earlier tokens), "
        "mean over depths and seeds; a key counts as retrieved above only when all its tokens are right:",
        "",
        "| model | " + " | ".join(f"{n} ({n // window}x)" for n in lengths) + " |",
        "| --- |" + " --- |" * len(lengths),
    ]
    for name, passkey in with_passkey.items():
        rows = dict(zip(passkey["lengths"], passkey["token_accuracy"]))
        cells = [_f(mean_std(rows[n])[0] if n in rows else None, "{:.0%}") for n in lengths]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines + ["", "By depth: ![passkey](passkey.png)", ""]


def table_lines(record: dict[str, Any]) -> list[str]:
    tables = record.get("position_tables") or {}
    lines = []
    for name, seeds in tables.items():
        moved = [
            max(abs(a - b) for row_a, row_b in zip(t["after"], t["before"]) for a, b in zip(row_a, row_b))
            for t in seeds.values()
        ]
        lines += [
            f"## The `{name}` table moved",
            "",
            f"Largest change of any bucket's bias over fine-tuning: {', '.join(f'{m:.3f}' for m in moved)} "
            "(per seed). Values by bucket and head, before and after: ![table](position_table.png)",
            "",
        ]
    return lines


def verdict_lines(part: dict[str, Any]) -> list[str]:
    if not part["verdicts"]:
        return []
    lines = [
        "## Does the literature's ordering reproduce?",
        "",
        "Chunked perplexity at each length over the same model's at its window, mean over seeds; * = a rise beyond "
        "the seed noise (the mean per-seed rise is over twice its standard error). Degrades = a rise beyond the "
        "noise at the longest length; holds = no rise beyond the noise at any length.",
        "",
        "| claim (Press et al. 2022) | reproduces | ratio to the in-window perplexity |",
        "| --- | --- | --- |",
    ]
    for v in part["verdicts"]:
        lines.append(f"| {v['claim']} | {'yes' if v['reproduces'] else '**no**'} | {v['evidence']} |")
    return lines + [""]


def run_lines(record: dict[str, Any]) -> list[str]:
    lines = ["## Training runs", "", "| encoding | seed | steps | tokens | train loss | tokens/s |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, seeds in record.get("runs", {}).items():
        for seed, run in seeds.items():
            t = run["training"]
            lines.append(
                f"| `{name}` | {seed} | {t['steps']} | {t['tokens']:,} | {_f(t['train_loss'], '{:.3f}')} | "
                f"{t['tokens_per_second']:,.0f} |"
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
    part = summarize(record) if "base_result" in record else None  # None: nothing measured yet
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
    lines += base_lines(record, part) + recovery_lines(record, part) + passkey_curve_lines(record, part)
    lines += extrapolation_lines(record, part)
    lines += passkey_lines(part) + table_lines(record) + verdict_lines(part) + run_lines(record)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_recovery(part, record["base_result"]["perplexity"], TOLERANCE, out / "recovery.png")
    plot_extrapolation(part, out / "extrapolation.png")
    plot_passkey_grid(part, out / "passkey.png")
    plot_position_table(record.get("position_tables") or {}, out / "position_table.png")


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
