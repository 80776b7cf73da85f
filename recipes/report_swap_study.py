"""The swap study's report: results.json, results.md (tables, ranking, recovery check) and PNG plots.

python recipes/report_swap_study.py results/swap_study   # redraw results.md and the PNGs from results.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hf_posenc.evaluation import markdown_table, measurement
from hf_posenc.evaluation.report import plot_loss_by_position, plot_passkey, plot_perplexity

BASE = "original (no fine-tuning)"
CONTROL = "original + fine-tuning"
RECOVERY_TOLERANCE = 0.05


def ppl(result: dict[str, Any], length: int, mode: str = "chunked") -> float | None:
    record = measurement(result, length, mode)
    return record["perplexity"] if record and record["status"] == "ok" else None


def ranking(models: dict[str, dict[str, Any]], length: int, mode: str) -> list[tuple[str, float]]:
    """Models that ran at `length`, best (lowest perplexity) first."""
    scored = [(name, ppl(result, length, mode)) for name, result in models.items()]
    return sorted(((n, p) for n, p in scored if p is not None), key=lambda item: item[1])


def recovery_rows(part: dict[str, Any]) -> list[dict[str, Any]]:
    """In-window perplexity of every fine-tuned model against the base and the equally fine-tuned original."""
    models, window = part["models"], part["window"]
    base, control = models.get(BASE), models.get(CONTROL)
    base_ppl = ppl(base, window) if base else None
    control_ppl = ppl(control, window) if control else None
    rows = []
    for name, result in models.items():
        if name == BASE:
            continue
        value = ppl(result, window)
        training = part["training"].get(name, {})
        rows.append(
            {
                "model": name,
                "right_after_swap": training.get("in_window_ppl_right_after_swap"),
                "after_fine_tuning": value,
                "vs_base": value / base_ppl - 1 if value and base_ppl else None,
                "vs_control": value / control_ppl - 1 if value and control_ppl else None,
                "recovered": bool(value and base_ppl and value <= base_ppl * (1 + RECOVERY_TOLERANCE)),
            }
        )
    return rows


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def gpt2_section(part: dict[str, Any]) -> list[str]:
    models, window, lengths = part["models"], part["window"], part["lengths"]
    lines = [
        f"## GPT-2: learned absolute positions swapped, fine-tuned, evaluated at {', '.join(map(str, lengths))} tokens",
        "",
        f"Base: `{part.get('base')}` (trained window {window}). Perplexity on held-out books "
        "(non-overlapping chunks; `sliding` = sliding window, stride half the length); passkey = retrieval accuracy.",
        "",
        markdown_table(models, lengths),
        "",
        "### Ranking (chunked perplexity, lower is better)",
        "",
    ]
    for length in lengths:
        ranked = ranking(models, length, "chunked")
        label = "inside the window" if length == window else f"at {length // window}x ({length})"
        lines.append(f"- {label}: " + (" < ".join(f"`{n}` {p:.1f}" for n, p in ranked) or "no model ran"))
    lines += [
        "",
        f"### Recovery of in-window perplexity (target: within {RECOVERY_TOLERANCE:.0%} of the base model)",
        "",
        "| model | ppl @ window right after swap | after fine-tuning | vs base | vs original + same fine-tuning | "
        "within 5% of base |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in recovery_rows(part):
        lines.append(
            f"| `{row['model']}` | {_f(row['right_after_swap'])} | {_f(row['after_fine_tuning'])} | "
            f"{_f(row['vs_base'], '{:+.1%}')} | {_f(row['vs_control'], '{:+.1%}')} | "
            f"{'yes' if row['recovered'] else 'no'} |"
        )
    lines += ["", "![perplexity](gpt2_perplexity_vs_length.png)", "", "![loss by position](gpt2_loss_by_position.png)"]
    lines += ["", "![passkey](gpt2_passkey_heatmap.png)", ""]
    return lines


def write_study_report(record: dict[str, Any], out_dir: str | Path, write_json: bool = True) -> None:
    """Write results.json (unless `write_json` is False), results.md and the PNG plots of a swap study record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if write_json:
        (out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    minutes = record.get("wall_seconds", 0) / 60
    status = "finished" if record.get("finished") else "in progress / interrupted"
    lines = [
        "# Swap study",
        "",
        f"{record['date']}; machine: {record['machine']['processor']}, {record['machine']['cpus']} CPUs, "
        f"torch {record['machine']['torch']}, transformers {record['machine']['transformers']}; "
        f"wall time {minutes:.1f} min, CPU time {record.get('cpu_seconds', 0) / 60:.1f} min ({status}).",
        "",
    ]
    gpt2 = record["gpt2"]
    if gpt2["models"]:
        lines += gpt2_section(gpt2)
        plot_perplexity(gpt2["models"], gpt2["lengths"], out / "gpt2_perplexity_vs_length.png")
        plot_loss_by_position(gpt2["models"], out / "gpt2_loss_by_position.png")
        plot_passkey(gpt2["models"], out / "gpt2_passkey_heatmap.png")
    lines += ["## Training runs", "", "| model | steps | tokens | train loss | eval loss | tokens/s |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, run in gpt2["training"].items():
        lines.append(
            f"| `{name}` | {run['steps']} | {run['tokens']:,} | {_f(run['train_loss'], '{:.3f}')} | "
            f"{_f(run['eval_loss'], '{:.3f}')} | {run['tokens_per_second']:,.0f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def render(out_dir: str | Path) -> Path:
    """Write results.md and the PNG plots again from the results.json in `out_dir`, without rerunning anything."""
    out = Path(out_dir)
    write_study_report(json.loads((out / "results.json").read_text()), out, write_json=False)
    return out / "results.md"


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python recipes/report_swap_study.py RESULTS_DIR   (the folder holding results.json)")
    print(f"Wrote {render(sys.argv[1])} and its plots")
