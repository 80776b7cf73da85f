"""Write evaluation results of one or several models: results.json, results.md and PNG plots."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullLocator  # noqa: E402


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


# A perplexity panel gets a log y axis only when its largest value is more than this many times its smallest.
LOG_SCALE_ABOVE = 3.0
SAME_CURVE = 1e-4  # models whose perplexities agree to this relative tolerance everywhere share one line and label
MODE_TITLES = {"chunked": "non-overlapping chunks", "sliding": "sliding window", "masked": "masked-LM"}


def _series(result: dict[str, Any], lengths: list[int], mode: str) -> list[float]:
    values = [measurement(result, length, mode) for length in lengths]
    return [r["perplexity"] if r and r["status"] == "ok" else math.nan for r in values]


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or abs(x - y) <= SAME_CURVE * abs(y) for x, y in zip(a, b))


def curve_groups(results: dict[str, dict[str, Any]], lengths: list[int], modes: list[str]) -> list[list[str]]:
    """Models grouped by identical curves in every mode (drawn as one line labelled "a = b"), in results' order."""
    curves = {name: [_series(result, lengths, mode) for mode in modes] for name, result in results.items()}
    groups: list[list[str]] = []
    for name, curve in curves.items():
        group = next((g for g in groups if all(map(_same, curve, curves[g[0]]))), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return groups


def perplexity_finding(
    results: dict[str, dict[str, Any]], lengths: list[int], mode: str, window: int | None
) -> dict[str, Any] | None:
    """Which model has the lowest `mode` perplexity past the trained window (without one: at the longest length).

    {"best", "everywhere" (lowest at every length past the window), "length" (the longest length past the window),
    "value" (best's perplexity there), "change" (best's value there / at the window - 1, or None), "spread" (largest /
    smallest - 1 there), "models" (how many ran there), "past_window"}; None when no model ran there.
    """
    past = [n for n in lengths if window and n > window]
    candidates = past or lengths[-1:]
    scores = {name: _series(result, candidates, mode) for name, result in results.items()}
    ran = {name: values for name, values in scores.items() if not math.isnan(values[-1])}
    if not ran:
        return None
    best = min(ran, key=lambda name: ran[name][-1])
    everywhere = len(candidates) > 1 and all(
        not math.isnan(ran[best][i]) and all(math.isnan(v[i]) or ran[best][i] <= v[i] for v in ran.values())
        for i in range(len(candidates))
    )
    last = [values[-1] for values in ran.values()]
    at_window = _series(results[best], [window], mode)[0] if window in lengths else math.nan
    return {
        "best": best,
        "everywhere": everywhere,
        "length": candidates[-1],
        "value": ran[best][-1],
        "change": None if math.isnan(at_window) else ran[best][-1] / at_window - 1,
        "spread": max(last) / min(last) - 1,
        "models": len(ran),
        "past_window": bool(past),
    }


def _group_label(groups: list[list[str]], name: str) -> str:
    return next(" = ".join(group) for group in groups if name in group)


def _panel_finding(finding: dict[str, Any] | None, groups: list[list[str]]) -> str:
    if finding is None:
        return "no model ran past the window"
    best, length, value = _group_label(groups, finding["best"]), finding["length"], finding["value"]
    if len(groups) == 1:  # one model: how it fares past the window
        change = "" if finding["change"] is None else f", {finding['change']:+.1%} against the window"
        return f"{best}: {value:.4g} at {length}{change}"
    if finding["everywhere"]:
        text = f"{best} lowest at every length past the window ({value:.4g} at {length})"
    else:
        text = f"{best} lowest at {length} ({value:.4g})"
    spread = f"; {finding['models']} models within {finding['spread']:.1%} at {length}" if finding["models"] > 1 else ""
    return text + spread


def _overall_finding(findings: dict[str, dict[str, Any] | None], groups: list[list[str]], window: int | None) -> str:
    known = {mode: finding for mode, finding in findings.items() if finding}
    if not known:
        return "Perplexity vs context length"
    past = any(finding["past_window"] for finding in known.values())
    where = f"past the trained window ({window} tokens)" if past else f"at {max(f['length'] for f in known.values())}"
    bests = {mode: _group_label(groups, finding["best"]) for mode, finding in known.items()}
    if len(groups) == 1:
        changes = [f"{f['change']:+.1%} ({mode})" for mode, f in known.items() if f["change"] is not None and past]
        length = max(f["length"] for f in known.values())
        against = f" against the trained window ({window} tokens)" if changes else ""
        name = " = ".join(groups[0])
        return f"{name}: perplexity at {length}{against}" + (": " + ", ".join(changes) if changes else "")
    if len(set(bests.values())) == 1:
        scope = {1: "", 2: " in both modes"}.get(len(bests), " in every mode")
        return f"Lowest perplexity {where}: {next(iter(bests.values()))}{scope}"
    return f"Lowest perplexity {where}: " + ", ".join(f"{best} ({mode})" for mode, best in bests.items())


def plot_perplexity(results: dict[str, dict[str, Any]], lengths: list[int], path: Path | None) -> Figure:
    """Perplexity against context length: one panel per mode (chunked, sliding, masked), one line per model (models
    with identical numbers share one), one legend, and the finding (lowest past the window) in the titles. The y
    axis is linear unless a panel's values span more than LOG_SCALE_ABOVE x. Saved to `path` unless it is None."""
    modes = modes_of(results) or ["chunked"]
    trained = _trained(results)
    groups = curve_groups(results, lengths, modes)
    fig, axes = plt.subplots(1, len(modes), figsize=(6.4 * len(modes), 5), squeeze=False, layout="constrained")
    findings = {}
    for ax, mode in zip(axes[0], modes):
        drawn, rings = [], []
        for index, group in enumerate(groups):
            ys = _series(results[group[0]], lengths, mode)
            points = [(x, y) for x, y in zip(lengths, ys) if not math.isnan(y)]
            drawn += [y for _, y in points]
            style = {"color": f"C{index % 10}", "label": " = ".join(group)}
            if len(points) == 1:  # one length only (an original model inside its window): a ring drawn on top
                rings.append((points[0], style))
            elif points:
                ax.plot(lengths, ys, "-o", markersize=4, alpha=0.9, **style)
        for (x, y), style in rings:
            ax.plot([x], [y], "o", markersize=11, markerfacecolor="none", markeredgewidth=2, zorder=5, **style)
        if trained:
            ax.axvline(trained, color="grey", linestyle=":", linewidth=1)
            if trained not in lengths:  # otherwise its tick says so
                ax.annotate(" trained window", (trained, 0.01), xycoords=("data", "axes fraction"), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [f"{x}\n(trained window)" if x == trained else str(x) for x in lengths])
        ax.xaxis.set_minor_locator(NullLocator())
        if drawn and max(drawn) > LOG_SCALE_ABOVE * min(drawn):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(f"{'masked-LM perplexity' if mode == 'masked' else 'perplexity'} (lower is better)")
        findings[mode] = perplexity_finding(results, lengths, mode, trained)
        finding = textwrap.fill(_panel_finding(findings[mode], groups), 70)  # 70 characters of 9 points: 6.4 inches
        ax.set_title(f"{MODE_TITLES.get(mode, mode)}\n{finding}", fontsize=9)
        ax.grid(True, alpha=0.3)
    entries: dict[str, Any] = {}
    for ax in axes[0]:  # one entry per line, also for a model drawn only in a later panel
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = [label for label in (" = ".join(group) for group in groups) if label in entries]  # results' order
    fig.legend([entries[label] for label in labels], labels, loc="outside lower center", ncol=min(4, len(labels) or 1))
    fig.suptitle(textwrap.fill(_overall_finding(findings, groups, trained), 55 * len(modes)))
    if path is not None:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


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


def passkey_finding(with_passkey: dict[str, dict[str, Any]]) -> str:
    """The best passkey accuracy measured (at the longest length on a tie), or that every model failed."""
    scored = [
        (accuracy, length, name)
        for name, passkey in with_passkey.items()
        for length, accuracy in zip(passkey.get("lengths", []), passkey.get("accuracy_by_length", []))
        if accuracy is not None
    ]
    if not scored:
        return "no model ran"
    accuracy, length, name = max(scored, key=lambda item: item[:2])
    if accuracy == 0:
        return "0% at every length and depth" + (" for every model" if len(with_passkey) > 1 else "")
    return f"best {accuracy:.0%} ({name} at {length})"


def plot_passkey(results: dict[str, dict[str, Any]], path: Path | None) -> Figure | None:
    """One heatmap per model: passkey accuracy by context length (rows) and key depth (columns); the title is wrapped
    into the figure's width. Saved to `path` unless it is None; None when no model has passkey results."""
    with_passkey = {name: r["passkey"] for name, r in results.items() if r.get("passkey")}
    if not with_passkey:
        return None
    columns = min(4, len(with_passkey))
    rows = math.ceil(len(with_passkey) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(max(3.2 * columns + 1, 5), 2.9 * rows + 1), squeeze=False, layout="constrained"
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
    lines = [f"Passkey retrieval: {passkey_finding(with_passkey)}"]
    if any(v is None for passkey in with_passkey.values() for row in passkey["accuracy"] for v in row):
        lines.append("(grey: the model cannot run at that length)")
    width = int(fig.get_figwidth() * 9)  # characters of an 11-point title that fit the figure's width
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


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
