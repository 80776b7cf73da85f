"""The swap study's plots (matplotlib, Agg): recovery curves, perplexity against length, passkey by depth and
length, and the learned T5 bias table. Each takes the summary part of the record
(`hf_posenc.evaluation.study.summarize`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402

from hf_posenc.evaluation import measurement  # noqa: E402
from hf_posenc.evaluation.study import BASE  # noqa: E402


def _colors(names: list[str]) -> dict[str, str]:
    """One colour per model, the same in every plot; the base is black."""
    colors = {name: f"C{i}" for i, name in enumerate(n for n in names if n != BASE)}
    return colors | ({BASE: "black"} if BASE in names else {})


def _plain_log_y(ax: Any) -> None:
    """A log y axis labelled with plain numbers (also on minor ticks: short ranges have no major tick)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def plot_recovery(part: dict[str, Any], base_ppl: float, tolerance: float, path: Path) -> None:
    """In-window perplexity against fine-tuning tokens: mean line and +-std band per encoding, base and 2% band; next
    to it passkey accuracy at the window along the same runs, when the probes measured it."""
    curves = part["curves"]
    if not curves:
        return
    passkey = {name: c["points"] for name, c in curves.items() if c["points"][0].get("passkey")}
    fig, axes = plt.subplots(1, 2 if passkey else 1, figsize=(13, 4.5) if passkey else (7.5, 4.5), squeeze=False)
    ax = axes[0][0]
    colors = _colors(list(curves))
    first = next(iter(curves.values()))["points"]
    zero_at = min(p["tokens"] for p in first if p["tokens"]) / 2  # the swap itself (0 tokens), drawn left of the rest
    ticks = [zero_at] + [p["tokens"] for p in first if p["tokens"]]
    labels = ["0"] + [f"{t / 1e6:.1f}M" if t >= 1e6 else f"{t / 1e3:.0f}k" for t in ticks[1:]]
    for name, curve in curves.items():
        points = curve["points"]
        bands = [(p["mean"], p["mean"] - (p["std"] or 0.0), p["mean"] + (p["std"] or 0.0)) for p in points]
        _band(ax, points, bands, zero_at, colors[name], name)
    ax.axhline(base_ppl, color="black", linewidth=1, label=f"base {base_ppl:.1f}")
    ax.axhline(base_ppl * (1 + tolerance), color="black", linewidth=1, linestyle=":", label=f"base +{tolerance:.0%}")
    _plain_log_y(ax)
    ax.set(ylabel="in-window perplexity (lower is better)")
    ax.set_title("Recovery after the swap: mean ± std over seeds", fontsize=10)
    for name, points in passkey.items():
        bands = [(p["passkey"]["mean"], p["passkey"]["low"], p["passkey"]["high"]) for p in points]
        _band(axes[0][1], points, bands, zero_at, colors[name], name)
    if passkey:
        axes[0][1].set(ylabel="passkey accuracy at the window", ylim=(-0.03, 1.03))
        axes[0][1].set_title("Retrieval after the swap: mean and 95% interval", fontsize=10)
    for axis in axes[0]:
        axis.set_xscale("log")
        axis.set_xticks(ticks, labels)
        axis.xaxis.set_minor_locator(plt.NullLocator())
        axis.set(xlabel="fine-tuning tokens (0 = right after the swap)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _band(
    ax: Any,
    points: list[dict[str, Any]],
    bands: list[tuple[float, float, float]],
    zero_at: float,
    color: str,
    label: str,
) -> None:
    """A line through the (mean, low, high) `bands` of the probe points with the band shaded (0 tokens drawn at
    `zero_at`)."""
    xs = [p["tokens"] or zero_at for p in points]
    ax.plot(xs, [b[0] for b in bands], "-o", color=color, label=label, markersize=3)
    ax.fill_between(xs, [b[1] for b in bands], [b[2] for b in bands], color=color, alpha=0.2)


def plot_extrapolation(part: dict[str, Any], path: Path) -> None:
    """Perplexity against length, chunked and sliding, mean +- std (error bars) per model."""
    models, lengths, window = part["models"], part["lengths"], part["window"]
    if not models:
        return
    modes = [m for m in ("chunked", "sliding") if any(measurement(r, n, m) for r in models.values() for n in lengths)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes) + 1, 4.5), sharey=True, squeeze=False)
    axes = axes[0]
    colors = _colors([n for n in models if "inference" not in n])
    for ax, mode in zip(axes, modes):
        for name, result in models.items():
            points = [(n, measurement(result, n, mode)) for n in lengths]
            points = [(n, m) for n, m in points if m and m["status"] == "ok"]
            if not points:
                continue
            xs, ys = [n for n, _ in points], [m["perplexity"] for _, m in points]
            errors = [m.get("std") or 0.0 for _, m in points]
            scaled = "inference" in name
            color = colors.get("rope") if scaled else colors[name]
            style = "--" if "linear" in name else ":" if scaled else "-"
            ax.errorbar(xs, ys, yerr=errors, fmt=style + "o", color=color, label=name, markersize=3, capsize=2)
        ax.axvline(window, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        _plain_log_y(ax)
        ax.set_xticks(lengths, [f"{n}\n({n // window}x)" for n in lengths])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set(xlabel="context length (tokens)", title=f"{mode} perplexity (lower is better)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("perplexity")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Past the window: fine-tuned models, mean ± std over seeds (grey line: trained window)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_passkey_grid(part: dict[str, Any], path: Path) -> None:
    """One heatmap per model: passkey accuracy by depth (rows) and length (columns), mean over seeds."""
    with_passkey = {n: r["passkey"] for n, r in part["models"].items() if r.get("passkey")}
    if not with_passkey:
        return
    count = len(with_passkey)
    columns = min(4, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    fig.subplots_adjust(hspace=0.45)
    for ax, (name, passkey) in zip(axes.flat, with_passkey.items()):
        grid = [
            [passkey["accuracy"][i][j] for i in range(len(passkey["lengths"]))] for j in range(len(passkey["depths"]))
        ]
        values = [[float("nan") if v is None else v for v in row] for row in grid]
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(passkey["lengths"])), [str(n) for n in passkey["lengths"]], fontsize=7)
        ax.set_yticks(range(len(passkey["depths"])), [f"{d:g}" for d in passkey["depths"]], fontsize=7)
        ax.set_title(name, fontsize=8)
        for j, row in enumerate(grid):
            for i, v in enumerate(row):
                ax.text(i, j, "n/a" if v is None else f"{v:.0%}", ha="center", va="center", fontsize=6,
                        color="white" if v is not None and v < 0.6 else "black")  # fmt: skip
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.6, label="accuracy")
    fig.suptitle("Passkey accuracy by length (x) and depth (y); n/a: the model cannot run there", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_position_table(tables: dict[str, Any], path: Path) -> None:
    """Each T5 bias table by bucket and head: its values at conversion and after fine-tuning (left), and the change
    that fine-tuning made, per seed (right)."""
    if not tables:
        return
    fig, axes = plt.subplots(len(tables), 2, figsize=(12, 4 * len(tables)), squeeze=False)
    for (left, right), (name, seeds) in zip(axes, tables.items()):
        first = next(iter(seeds.values()))
        for h in range(len(first["before"][0])):
            left.plot([row[h] for row in first["before"]], "--", color=f"C{h}", linewidth=1)
            for index, table in enumerate(seeds.values()):
                label = f"head {h}" if index == 0 else None
                left.plot([row[h] for row in table["after"]], "-", color=f"C{h}", alpha=0.7, label=label)
                change = [a[h] - b[h] for a, b in zip(table["after"], table["before"])]
                right.plot(change, "-", color=f"C{h}", alpha=0.7, label=label)
        left.set(ylabel="bias added to the attention score")
        left.set_title(f"{name}: at conversion (dashed) and after fine-tuning (solid, each seed)", fontsize=9)
        right.axhline(0, color="grey", linewidth=1)
        right.set(ylabel="after - at conversion")
        right.set_title(f"{name}: what fine-tuning changed", fontsize=9)
        for ax in (left, right):
            ax.set_xlabel("bucket (causal: 0 = the same token, larger = farther back)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
