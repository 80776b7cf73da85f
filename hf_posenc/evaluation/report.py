"""Write evaluation results of one or several models: results.json, results.md and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def measurement(result: dict[str, Any], length: int, mode: str) -> dict[str, Any] | None:
    """The perplexity record of `result` at `length` in `mode` ("chunked", "sliding" or "masked")."""
    for record in result.get("perplexity", []):
        if record["length"] == length and record["mode"] == mode:
            return record
    return None


def modes_of(results: dict[str, dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for result in results.values():
        for record in result.get("perplexity", []):
            if record["mode"] not in seen:
                seen.append(record["mode"])
    return seen


def _cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    if record["status"] == "ok":
        return f"{record['perplexity']:.2f}"
    return {"unsupported": "n/a (positions)", "too_short": "n/a (short docs)"}.get(record["status"], "error")


def markdown_table(results: dict[str, dict[str, Any]], lengths: list[int]) -> str:
    """One row per model: perplexity by mode and length, then passkey accuracy by length."""
    modes = modes_of(results)
    header = ["model"] + [f"{mode} ppl @ {length}" for mode in modes for length in lengths]
    has_passkey = any(r.get("passkey") for r in results.values())
    if has_passkey:
        header += [f"passkey @ {length}" for length in lengths]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, result in results.items():
        cells = [f"`{name}`"] + [_cell(measurement(result, length, mode)) for mode in modes for length in lengths]
        if has_passkey:
            passkey = result.get("passkey") or {}
            by_length = dict(zip(passkey.get("lengths", []), passkey.get("accuracy_by_length", [])))
            cells += ["-" if by_length.get(length) is None else f"{by_length[length]:.0%}" for length in lengths]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_perplexity(results: dict[str, dict[str, Any]], lengths: list[int], path: Path) -> None:
    """Perplexity (log scale) against context length, one line per model and mode; missing points are gaps."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"chunked": "-o", "sliding": "--s", "masked": "-o"}
    for index, (name, result) in enumerate(results.items()):
        color = f"C{index % 10}"
        for mode in modes_of({name: result}):
            values = [measurement(result, length, mode) for length in lengths]
            ys = [r["perplexity"] if r and r["status"] == "ok" else math.nan for r in values]
            label = name if mode in ("chunked", "masked") else f"{name} ({mode})"
            ax.plot(lengths, ys, styles.get(mode, "-o"), color=color, label=label, alpha=0.9)
    trained = _trained(results)
    if trained:
        ax.axvline(trained, color="grey", linestyle=":", linewidth=1, label=f"trained window ({trained})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(lengths, [str(x) for x in lengths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity" if "masked" not in modes_of(results) else "masked-LM perplexity")
    ax.set_title("Perplexity vs context length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss_by_position(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean next-token loss by position, at the longest length each model ran."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, result) in enumerate(results.items()):
        runs = [r for r in result.get("perplexity", []) if r["mode"] == "chunked" and r["status"] == "ok"]
        if not runs:
            continue
        longest = max(runs, key=lambda r: r["length"])
        ax.plot(
            longest["position_bins"],
            longest["loss_by_position"],
            color=f"C{index % 10}",
            label=f"{name} (@{longest['length']})",
        )
    trained = _trained(results)
    if trained:
        ax.axvline(trained, color="grey", linestyle=":", linewidth=1, label=f"trained window ({trained})")
    ax.set_xlabel("token position")
    ax.set_ylabel("mean next-token loss (nats)")
    ax.set_title("Loss by position in the context")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_passkey(results: dict[str, dict[str, Any]], path: Path) -> None:
    """One heatmap per model: passkey accuracy by context length (rows) and key depth (columns)."""
    with_passkey = {name: r["passkey"] for name, r in results.items() if r.get("passkey")}
    if not with_passkey:
        return
    columns = min(4, len(with_passkey))
    rows = math.ceil(len(with_passkey) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns + 1, 2.9 * rows + 0.6), squeeze=False, layout="constrained"
    )
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    for ax in axes.flat[len(with_passkey) :]:
        ax.axis("off")
    for ax, (name, passkey) in zip(axes.flat, with_passkey.items()):
        grid = [[math.nan if v is None else v for v in row] for row in passkey["accuracy"]]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(passkey["depths"])), [f"{d:.0%}" for d in passkey["depths"]], fontsize=7)
        ax.set_yticks(range(len(passkey["lengths"])), [str(x) for x in passkey["lengths"]], fontsize=7)
        ax.set_xlabel("key depth", fontsize=8)
        ax.set_ylabel("context length", fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy")
    fig.suptitle("Passkey retrieval (grey: model cannot run at that length)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _trained(results: dict[str, dict[str, Any]]) -> int | None:
    for result in results.values():
        trained = result.get("model", {}).get("trained_context_length")
        if trained:
            return int(trained)
    return None


def write_report(
    results: dict[str, dict[str, Any]], lengths: list[int], out_dir: str | Path, title: str = "Long-context evaluation"
) -> dict[str, Path]:
    """Write results.json, results.md and the PNG plots for one or more models; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "perplexity_plot": out / "perplexity_vs_length.png",
        "position_plot": out / "loss_by_position.png",
        "passkey_plot": out / "passkey_heatmap.png",
    }
    paths["json"].write_text(json.dumps({"lengths": lengths, "models": results}, indent=2) + "\n")
    plot_perplexity(results, lengths, paths["perplexity_plot"])
    plot_loss_by_position(results, paths["position_plot"])
    plot_passkey(results, paths["passkey_plot"])
    body = [f"# {title}", "", markdown_table(results, lengths), ""]
    body += [f"![{key}]({p.name})" for key, p in paths.items() if p.suffix == ".png" and p.exists()]
    paths["markdown"].write_text("\n".join(body) + "\n")
    return {key: p for key, p in paths.items() if p.exists()}
