"""Run metadata, the JSON record, the Markdown ratio tables and the PNG plot of one benchmark run.

python -m benchmarks.report [benchmarks/results.json]   # render RESULTS.md and results.png again
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers

from .models import ORIGINAL
from .settings import SCALING_DECODE_TARGET, TARGET_BACKEND, TARGETS, Settings


def machine() -> dict:
    """Machine, versions, date and load: everything needed to read the numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import hf_posenc

    info = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_posenc": hf_posenc.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_start": load_average(),
        "command": shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]]),
    }
    return info


def load_average() -> float | None:
    """The 1-minute load average: how busy the machine was besides the benchmark."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def rounded(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def busy(meta: dict) -> bool:
    """True when the load average says other work competed for the cores."""
    loads = [meta.get(key) for key in ("load_average_start", "load_average_end")]
    return meta.get("gpu") is None and any(load is not None and load > 0.75 * meta["cpu_count"] for load in loads)


def settings_record(settings: Settings) -> dict:
    return {
        "shape": settings.shape.as_dict(),
        "cases": [case.label for case in settings.cases],
        "encodings": list(settings.encodings),
        "backends": list(settings.backends),
        "rounds": settings.rounds,
        "min_run_time_s": settings.min_run_time,
        "threads": settings.threads,
        "device": settings.device,
        "dtype": str(settings.dtype).removeprefix("torch."),
        "quick": settings.quick,
        "clock": settings.clock,
        "notes": list(settings.notes),
    }


def write_json(path: Path, meta: dict, settings: Settings, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": meta, "settings": settings_record(settings), "rows": rows}
    path.write_text(json.dumps(record, indent=1) + "\n")


def targets_text() -> str:
    """The targets as one line: "rope: forward >= 0.98, ...; t5_bias: ..."."""
    signs = {"forward": ">=", "train": ">=", "decode": "<=", "memory": "<="}
    return "; ".join(
        f"{encoding}: " + ", ".join(f"{kind} {signs[kind]} {value}" for kind, value in targets.items())
        for encoding, targets in TARGETS.items()
    )


def target_mark(encoding: str, backend: str, kind: str, value: float | None) -> str:
    """' ✓'/' ✗' where the issue sets a CPU sdpa target for this cell, else ''."""
    target = TARGETS.get(encoding, {}).get(kind)
    if value is None or target is None or backend != TARGET_BACKEND:
        return ""
    ok = value >= target if kind in ("forward", "train") else value <= target
    return " ✓" if ok else " ✗"


def ratio_table(rows: list[dict], backend: str, encodings: list[str], key: str = "ratio") -> list[str]:
    """One Markdown table: encodings down, workloads (time ratios, then peak-memory ratios) across."""
    mine = [row for row in rows if row["backend"] == backend]
    labels = list(dict.fromkeys(row["label"] for row in mine))
    memory_labels = [label for label in labels if not label.startswith("decode")] if key == "ratio" else []
    header = [f"{label} {'speed' if not label.startswith('decode') else 'latency'}" for label in labels]
    header += [f"mem {label}" for label in memory_labels]
    lines = ["| encoding | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for encoding in encodings:
        cells = []
        by_label = {row["label"]: row for row in mine if row["encoding"] == encoding}
        for label in labels:
            row = by_label.get(label, {})
            cells.append(cell(row, key, encoding, backend))
        for label in memory_labels:
            cells.append(cell(by_label.get(label, {}), "memory_ratio", encoding, backend))
        lines.append(f"| {encoding} | " + " | ".join(cells) + " |")
    return lines


def cell(row: dict, key: str, encoding: str, backend: str) -> str:
    if not row:
        return "–"
    if "error" in row:
        return "n/a"
    value = row.get(key)
    if value is None:
        return "–"
    kind = "memory" if key == "memory_ratio" else row["case"]
    if key == "ratio_best":
        return f"{value:.3f}"
    if key == "round_ratio_median":
        low, high = row["round_ratio_interval"]
        return f"{value:.3f} [{low:.3f}–{high:.3f}]"
    spread = f" ({row['ratio_low']:.2f}–{row['ratio_high']:.2f})" if key == "ratio" and "ratio_low" in row else ""
    return f"{value:.3f}{spread}{target_mark(encoding, backend, kind, value)}"


def scaling_table(rows: list[dict], backend: str, encodings: list[str]) -> list[str]:
    """Decode latency of rope with each scaling type against plain rope (same rounds), with the per-round range."""
    scaled = [name for name in encodings if name.startswith("rope_")]
    mine = {(row["encoding"], row["label"]): row for row in rows if row["backend"] == backend and "times_s" in row}
    labels = list(dict.fromkeys(row["label"] for row in rows if row["backend"] == backend and row["case"] == "decode"))
    if not scaled or not labels or not any(("rope", label) in mine for label in labels):
        return []
    lines = ["| rope scaling | " + " | ".join(f"{label} latency / rope" for label in labels) + " |"]
    lines.append("|---" * (len(labels) + 1) + "|")
    for name in scaled:
        cells = []
        for label in labels:
            row, rope = mine.get((name, label)), mine.get(("rope", label))
            if row is None or rope is None:
                cells.append("n/a")
                continue
            per_round = [t / r for t, r in zip(row["times_s"], rope["times_s"], strict=True)]
            value = row["median_s"] / rope["median_s"]
            mark = " ✓" if value <= SCALING_DECODE_TARGET else " ✗"
            cells.append(f"{value:.3f} ({min(per_round):.2f}–{max(per_round):.2f}){mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def absolute_table(rows: list[dict], backends: list[str], clock: str = "wall") -> list[str]:
    """The original model's absolute numbers, so that the ratios can be read against them."""
    what = "original (per CPU-second)" if clock == "cpu" else "original"
    lines = [f"| backend | workload | {what} | peak memory |", "|---|---|---|---|"]
    for row in rows:
        if row["encoding"] != ORIGINAL or row["backend"] not in backends or "error" in row:
            continue
        speed = (
            f"{row['tokens_per_s']:,.0f} tokens/s"
            if "tokens_per_s" in row
            else f"{row['s_per_token'] * 1e3:.2f} ms per decode step (batch {row['batch']})"
        )
        lines.append(f"| {row['backend']} | {row['label']} | {speed} | {row['peak_bytes'] / 2**20:,.1f} MiB |")
    return lines


def write_markdown(path: Path, meta: dict, settings: Settings, rows: list[dict], plot_name: str | None) -> None:
    shape = settings.shape
    encodings = [ORIGINAL, *settings.encodings]
    lines = [
        "# hf_posenc benchmarks: converted / original",
        "",
        f"Generated by `{meta['command']}` on {meta['date_utc']}.",
        "",
        f"- Machine: {meta['cpu']} ({meta['cpu_count']} cores visible, torch threads: {settings.threads})"
        + (f", GPU {meta['gpu']}" if meta.get("gpu") else ", no GPU")
        + f"; {meta['platform']}.",
        f"- Versions: Python {meta['python']}, torch {meta['torch']}, transformers {meta['transformers']}, "
        f"hf_posenc {meta['hf_posenc']}.",
        f"- Model: GPT-2, {shape.layers} layers x {shape.hidden} wide, {shape.heads} heads, vocab {shape.vocab}, "
        f"random weights, {str(settings.dtype).removeprefix('torch.')}; batch {shape.batch}"
        + (" where a workload's label gives no B=" if any(case.batch for case in settings.cases) else "")
        + f"; device {settings.device}.",
        f"- Timing: torch.utils.benchmark `blocked_autorange` on the "
        f"{'process CPU-time' if settings.clock == 'cpu' else 'wall'} clock after one warm-up call, "
        f"{settings.rounds} interleaved rounds per workload (every variant once per round, order rotated), "
        f"median of the rounds. Load average at start: {rounded(meta.get('load_average_start'))}, "
        f"at end: {rounded(meta.get('load_average_end'))}.",
        "- Peak memory: bytes allocated by one call above what was allocated before it (CPU: torch's allocation "
        "events from `torch.profiler`; CUDA: `max_memory_allocated`).",
        "",
        "Speed = original time / converted time (forward, train step, prefill: higher is better); latency = "
        "converted / original per decoded token with the KV cache (lower is better); in brackets the range of that "
        "ratio over the rounds; mem = converted / original "
        f"peak memory (lower is better). ✓/✗: the CPU {TARGET_BACKEND} targets ({targets_text()}).",
        "",
    ]
    if busy(meta) and settings.clock == "wall":
        lines += [
            f"**The machine was busy with other work during this run (load average up to "
            f"{rounded(max(meta.get('load_average_start') or 0, meta.get('load_average_end') or 0))} on "
            f"{meta['cpu_count']} cores): the time ratios carry that noise; the memory ratios are exact.**",
            "",
        ]
    if settings.device == "cpu":
        lines += ["- GPU rows (bf16 on sdpa, flash_attention_2, flex_attention) are not measured here: no GPU.", ""]
    lines += [f"- {note}" for note in settings.notes]
    if settings.notes:
        lines.append("")
    for backend in settings.backends:
        backend_rows = [row for row in rows if row["backend"] == backend]
        if not backend_rows:
            continue
        baseline = backend_rows[0]["baseline_backend"]
        against = "" if baseline == backend else f" (original on {baseline}: GPT-2 cannot run {backend})"
        lines += [f"## {backend}{against}", "", *ratio_table(rows, backend, encodings), ""]
        scaling = scaling_table(rows, backend, encodings)
        if scaling:
            lines += [
                f"RoPE scaling types against plain rope (target <= {SCALING_DECODE_TARGET}; range over rounds):",
                "",
                *scaling,
                "",
            ]
        if any("round_ratio_median" in row for row in backend_rows):
            lines += [
                "Paired: the median of the per-round ratios (each variant against the original measured in the same "
                "round, so that a slow drift of the machine's speed cancels), with a distribution-free 95 % interval "
                "of that median in brackets:",
                "",
                *ratio_table(rows, backend, encodings, key="round_ratio_median"),
                "",
            ]
        lines += [
            "Best of rounds (minimum time of each variant; less sensitive to other load on the machine):",
            "",
            *ratio_table(rows, backend, encodings, key="ratio_best"),
            "",
        ]
        errors = {row["encoding"]: row["error"] for row in backend_rows if "error" in row}
        lines += [f"- n/a {name}: {error}" for name, error in errors.items()]
        if errors:
            lines.append("")
    lines += ["## Original model, absolute", "", *absolute_table(rows, list(settings.backends), settings.clock), ""]
    if plot_name:
        lines += [f"![converted / original]({plot_name})", ""]
    path.write_text("\n".join(lines))


def plot(path: Path | None, rows: list[dict], settings: Settings):
    """Per backend, two panels with a y label each saying which way is better: speed (original time / converted time:
    forward, train step, prefill; higher is better) and cost (converted / original: decode latency per token, then
    peak memory; lower is better). Bars start at 1.0 (= the original); whiskers: the range over the rounds where
    recorded. One legend. Saved to `path` unless it is None; returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in settings.backends if any(row["backend"] == b for row in rows)]
    panels = []
    for backend in backends:
        mine = [row for row in rows if row["backend"] == backend and "ratio" in row]
        labels = list(dict.fromkeys(row["label"] for row in mine))
        kind = {row["label"]: row["ratio_kind"] for row in mine}
        speed_items = [(label, label, "ratio") for label in labels if kind[label] == "throughput"]
        latency_items = [(f"{label}\nlatency", label, "ratio") for label in labels if kind[label] == "latency"]
        memory_items = [(f"{label}\nmemory", label, "memory_ratio") for label in labels if kind[label] == "throughput"]
        panels.append((backend, mine, speed_items, latency_items, memory_items))
    # a run without forward/train/prefill (or without decode and memory) gets no empty panel
    columns = [
        name
        for name, present in (("speed", any(p[2] for p in panels)), ("cost", any(p[3] or p[4] for p in panels)))
        if present
    ] or ["speed"]
    first = panels[0] if panels else (None, [], [], [], [])
    sizes = {"speed": len(first[2]), "cost": len(first[3]) + len(first[4])}
    fig, axes = plt.subplots(
        max(len(backends), 1),
        len(columns),
        figsize=(15 if len(columns) == 2 else 9, 3.8 * max(len(backends), 1) + 0.5),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": [max(sizes[c], 1) for c in columns]},
    )
    for row_axes, (backend, mine, speed_items, latency_items, memory_items) in zip(axes, panels):
        for ax, column in zip(row_axes, columns):
            if column == "speed":
                bars(ax, mine, settings.encodings, speed_items)
                ax.set_title(f"{backend}: speed (forward, train step, prefill)")
                ax.set_ylabel("original time / converted time\n↑ higher is better")
                continue
            bars(ax, mine, settings.encodings, latency_items + memory_items)
            if latency_items and memory_items:
                ax.axvline(len(latency_items) - 0.5, color="grey", linestyle="--", linewidth=1)
            ax.set_title(f"{backend}: cost (decode latency per token | peak memory)")
            ax.set_ylabel("converted / original\n↓ lower is better")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    ncol = max(len(labels), 1) if len(columns) == 2 else max(min(len(labels), 4), 1)  # fits the figure's width
    fig.legend(handles, labels, loc="outside upper center", ncol=ncol, title="converted to")
    if path is not None:
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def bars(ax, rows: list[dict], encodings, items: list[tuple[str, str, str]]) -> None:
    """Grouped bars from 1.0 for each (tick label, workload label, row key) in `items`, one bar per encoding."""
    width = 0.8 / max(len(encodings), 1)
    for index, encoding in enumerate(encodings):
        by_label = {row["label"]: row for row in rows if row["encoding"] == encoding}
        values, low, high = [], [], []
        for _, label, key in items:
            row = by_label.get(label) or {}
            value = row.get(key) or float("nan")
            spread = key == "ratio" and "ratio_low" in row
            values.append(value)
            low.append(max(value - row["ratio_low"], 0) if spread else 0)
            high.append(max(row["ratio_high"] - value, 0) if spread else 0)
        positions = [i + (index - (len(encodings) - 1) / 2) * width for i in range(len(items))]
        heights = [v - 1 for v in values]
        errors = [low, high] if any(low) or any(high) else None
        container = ax.bar(positions, heights, width, bottom=1.0, label=encoding, color=f"C{index}", yerr=errors)
        ax.bar_label(container, labels=["n/a" if math.isnan(v) else f"{v:.2f}" for v in values], fontsize=6, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(items)), [tick for tick, _, _ in items], fontsize=8)
    ax.margins(y=0.15)


def print_summary(rows: list[dict], settings: Settings) -> None:
    for backend in settings.backends:
        print(f"\n{backend}")
        print("\n".join(ratio_table(rows, backend, list(settings.encodings))))


def settings_from_record(record: dict) -> Settings:
    """The Settings a results.json was produced with (enough to render it again)."""
    from .models import Shape
    from .workloads import Case

    saved = record["settings"]
    cases = tuple(Case.from_label(label) for label in saved["cases"])
    return Settings(
        shape=Shape(**saved["shape"]),
        cases=cases,
        encodings=tuple(saved["encodings"]),
        backends=tuple(saved["backends"]),
        rounds=saved["rounds"],
        min_run_time=saved["min_run_time_s"],
        threads=saved["threads"],
        device=saved["device"],
        dtype=getattr(torch, saved["dtype"]),
        quick=saved["quick"],
        clock=saved.get("clock", "wall"),
        notes=saved.get("notes", []),
    )


def render(json_path: Path) -> Path:
    """Write RESULTS.md and results.png next to a results.json (also one left by an interrupted run)."""
    record = json.loads(json_path.read_text())
    settings = settings_from_record(record)
    png_path = json_path.with_name("results.png")
    plot(png_path, record["rows"], settings)
    md_path = json_path.with_name("RESULTS.md")
    write_markdown(md_path, record["machine"], settings, record["rows"], png_path.name)
    return md_path


if __name__ == "__main__":
    print(f"Wrote {render(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / 'results.json')}")
