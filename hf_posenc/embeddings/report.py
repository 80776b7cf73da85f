"""The long-embeddings report: results.json, results.md (tables and the targets) and results.png, and the README's
text on the run (`readme_*` and `results_readme`, written into the READMEs by tools/update_readme.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data import TITLES
from ..evaluation.wording import and_join, span

TASKS = ("passkey", "needle")
FIDELITY_TARGET, QUOTE_MARGIN, BEAT_TRUNCATION, LONG_LENGTHS = 0.97, 0.02, 0.20, (1024, 2048)


def write_report(record: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / "results.md").write_text("\n".join(markdown(record)) + "\n")
    if record["methods"]:
        plot(record, out_dir / "results.png")


def _baselines(record: dict[str, Any]) -> list[str]:
    return [label for label in record["methods"] if label.startswith("original")]


def _converted(record: dict[str, Any]) -> list[str]:
    return [label for label in record["methods"] if not label.startswith("original")]


def accuracy_rows(record: dict[str, Any], task: str) -> list[str]:
    methods = record["methods"]
    lengths = sorted({int(n) for m in methods.values() for n in m["summary"].get(task, {})})
    lines = ["| method | " + " | ".join(f"{n:,} tokens" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for label, result in methods.items():
        cells = [result["summary"].get(task, {}).get(str(n)) for n in lengths]
        lines.append(f"| {label} | " + " | ".join(percent(c) for c in cells) + " |")
    return lines


def percent(value: float | None) -> str:
    """An accuracy in percent, to the half point by which 40-query cells differ: '92.5%', '100%'."""
    return "n/a" if value is None else _points(100 * value) + "%"


def _points(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _quote_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def quote(record: dict[str, Any], label: str) -> float | None:
    return record["methods"].get(label, {}).get("summary", {}).get("quote", {}).get("0")


def _accuracy(record: dict[str, Any], label: str, task: str, length: int) -> float | None:
    return record["methods"][label]["summary"].get(task, {}).get(str(length))


def _window_target(record: dict[str, Any], name: str) -> tuple[float | None, float | None, bool]:
    """A converted model's mean cosine to the original, its in-window retrieval, and whether both meet the target."""
    fid = record["fidelity"].get(name, {}).get("mean_cosine")
    ours, original = quote(record, name), quote(record, _baselines(record)[0])
    ok = fid is not None and ours is not None and fid >= FIDELITY_TARGET and abs(ours - original) <= QUOTE_MARGIN
    return fid, ours, ok


def _length_targets(record: dict[str, Any], name: str) -> list[tuple[str, int, float, float, float, bool]]:
    """(task, length, accuracy, truncation's best, chunk-mean's, target met) at each of LONG_LENGTHS measured."""
    baselines = _baselines(record)
    truncated, chunked = baselines[:2], baselines[2]
    rows = []
    for task in TASKS:
        for length in LONG_LENGTHS:
            mine = _accuracy(record, name, task, length)
            if mine is None:
                continue
            best_truncated = max(_accuracy(record, b, task, length) for b in truncated)
            chunk = _accuracy(record, chunked, task, length)
            ok = mine >= best_truncated + BEAT_TRUNCATION - 1e-9 and mine >= chunk - 1e-9
            rows.append((task, length, mine, best_truncated, chunk, ok))
    return rows


def _targets_text() -> str:
    return (
        f"cosine at least {FIDELITY_TARGET} with in-window retrieval within {100 * QUOTE_MARGIN:.0f} points of the "
        f"original's; at {and_join(f'{n:,}' for n in LONG_LENGTHS)} tokens, {100 * BEAT_TRUNCATION:.0f} points over "
        "the best truncation and at least chunk-and-mean-pool"
    )


def targets(record: dict[str, Any]) -> list[str]:
    """The issue's targets, checked against this run's numbers."""
    baselines = _baselines(record)
    if len(baselines) < 3 or not _converted(record):
        return ["(targets are checked once the baselines and a converted model are measured)"]
    original_quote = quote(record, baselines[0])
    lines = []
    for name in _converted(record):
        fid, ours, ok = _window_target(record, name)
        lines.append(
            f"- {name}: fidelity {fid:.4f} (target >= {FIDELITY_TARGET}), in-window retrieval "
            f"{100 * ours:.1f}% against the original's {100 * original_quote:.1f}% (target: within "
            f"{100 * QUOTE_MARGIN:.0f} points) {'✓' if ok else '✗'}"
        )
        for task, length, mine, best_truncated, chunk, ok in _length_targets(record, name):
            lines.append(
                f"  - {task} at {length:,}: {percent(mine)} against truncation's best {percent(best_truncated)} "
                f"(needs +{100 * BEAT_TRUNCATION:.0f}) and chunk-mean's {percent(chunk)} {'✓' if ok else '✗'}"
            )
    return lines


def markdown(record: dict[str, Any]) -> list[str]:
    settings = record["settings"]
    ev = settings["eval"]
    chance = 100 / ev["candidates"]
    lines = [
        f"# Long-document embeddings: {record['model']}",
        "",
        f"Generated by `python recipes/extend_sentence_encoder.py` ({record['date']}, "
        f"{record.get('wall_seconds', 0) / 60:.1f} min{'' if record.get('finished') else ', unfinished'}).",
        f"Window of the original: {record.get('window')} tokens; converted models read {settings['max_length']:,}.",
        "",
        "Top-1 retrieval accuracy among "
        f"{ev['candidates']} candidates (chance {chance:.1f}%), mean over depths {ev['depths']}; each candidate is the "
        f"same stretch of *{ev['haystack_book']}* with its own needle (LongEmbed's synthetic tasks).",
        "",
    ]
    for task in TASKS:
        lines += [f"## {task}", "", *accuracy_rows(record, task), ""]
    baseline = _baselines(record)[0] if _baselines(record) else None
    lines += [
        "## Inside the window",
        "",
        f"Fidelity: cosine between the original's and the converted model's embeddings of {ev['quote_passages']}"
        f" held-out passages of *{ev['quote_book']}* (at most {record.get('window')} tokens). Retrieval: each "
        "query is one sentence of a passage, to be found among all the passages.",
        "",
        "| model | mean cosine | min cosine | in-window retrieval |",
        "|---|---|---|---|",
    ]
    if baseline is not None and quote(record, baseline) is not None:
        lines.append(f"| original | 1 | 1 | {_quote_cell(quote(record, baseline))} |")
    for name in _converted(record):
        fid = record["fidelity"].get(name, {})
        value = quote(record, name)
        lines.append(
            f"| {name} | {fid.get('mean_cosine', float('nan')):.4f} | {fid.get('min_cosine', float('nan')):.4f} | "
            f"{_quote_cell(value)} |"
        )
    lines += [
        "",
        "## Training (distillation from the original)",
        "",
        "| model | steps | tokens | minutes | short loss | long loss |",
        "|---|---|---|---|---|---|",
    ]  # noqa: E501
    for name, t in record["training"].items():
        lines.append(
            f"| {name} | {t['steps']} | {t['tokens']:,} | {t['seconds'] / 60:.1f} | "
            f"{_loss(t['first_short_loss'])} → {_loss(t['final_short_loss'])} | "
            f"{_loss(t['first_long_loss'])} → {_loss(t['final_long_loss'])} |"
        )
    lines += ["", "## Targets", "", *targets(record), "", "![accuracy against length](results.png)"]
    return lines


def _loss(value: float) -> str:
    return f"{max(value, 0.0):.4f}"  # 1 - cosine is >= 0; float rounding can put an exact match a hair below


# The README's text on the run: markdown with one line per paragraph or list item (tools/update_readme.py wraps it).


def _run_time(record: dict[str, Any]) -> str:
    cpu = f", {record['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in record else ""
    return f"{record['wall_seconds'] / 60:.1f} min wall{cpu}{'' if record.get('finished') else ', unfinished'}"


def _queries_per_cell(record: dict[str, Any]) -> int:
    ev = record["settings"]["eval"]
    return len(ev["depths"]) * ev["candidates"]


def _copied_to(record: dict[str, Any], name: str) -> int | None:
    """The table size of an encoding that extends the learned table by copying it (LED's way), else None."""
    spec = record["settings"]["encodings"].get(name) or {}
    return spec.get("max_positions", record["settings"]["max_length"]) if spec.get("method") == "copy" else None


def _cosine(value: float | None) -> str:
    return "n/a" if value is None else "1" if value == 1 else f"{value:.3f}"


def _queries(count: int) -> str:
    return "one query" if count == 1 else f"{count} queries"


def _plural(names: list[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


def readme_objective(record: dict[str, Any]) -> str:
    """The training objective, with the run's settings and token count."""
    from .distill import DistillConfig

    cfg = DistillConfig(**record["settings"]["train"])
    tokens = span((t["tokens"] for t in record["training"].values()), lambda n: f"{n / 1000:.0f}k")
    weighting = "summed" if cfg.long_weight == 1 else f"the long one weighted {cfg.long_weight:g}"
    learning_rate = f"{cfg.learning_rate:.0e}".replace("e-0", "e-")
    return "\n".join(
        [
            "**The objective.** There are no labels, and a CPU budget of minutes. Each optimizer step takes two "
            "batches cut from the training books:",
            f"- short spans ({cfg.min_short_tokens}-{cfg.chunk_length - 2} tokens), whose target is the original's "
            "own embedding. This keeps embeddings inside the window where existing indexes have them.",
            f"- {cfg.long_length:,}-token spans, whose target is the original's chunk-and-mean-pool embedding "
            f"({cfg.chunk_length}-token chunks). It is the best a {record['window']}-token model does on a long text, "
            "and the converted model learns to produce it in one pass with full attention.",
            "",
            f"The loss is 1 - cosine for each batch, {weighting}. Dropout is off, AdamW {learning_rate} with linear "
            f"decay, {cfg.steps} steps ({tokens} tokens) per encoding. The teacher's targets are computed once, so "
            "every encoding trains on the same examples. Contrastive pairs and LongEmbed's APE recipes are not used: "
            "they need more compute than this budget.",
        ]
    )


def readme_evaluation(record: dict[str, Any]) -> str:
    """The evaluation and the table of every method side by side; bold: the best converted model in each column."""
    ev, converted, queries = record["settings"]["eval"], _converted(record), _queries_per_cell(record)
    columns = [(task, n) for task in TASKS for n in LONG_LENGTHS if n in ev["lengths"]]
    lines = [
        "**The evaluation** has the shape of LongEmbed's synthetic tasks (Zhu et al. 2024), built from a held-out "
        f"novel (*{TITLES[ev['haystack_book']]}*). Each of {ev['candidates']} candidate documents is the same "
        f"stretch of the book with its own needle at depth {min(ev['depths']):g}-{max(ev['depths']):g}:",
        "- passkey: a person's pass key; the query asks for that person's key;",
        "- needle: a fact sentence; the query asks about it.",
        "",
        f"Top-1 accuracy is over {queries} queries per cell ({len(ev['depths'])} depths x {ev['candidates']}), so one "
        f"query is {_points(100 / queries)} points; chance is {_points(100 / ev['candidates'])}%. Inside the window, "
        f"fidelity is the cosine to the original's embedding on {ev['quote_passages']} passages of "
        f"*{TITLES[ev['quote_book']]}*, and the quote task finds the passage a sentence comes from among all "
        f"{ev['quote_passages']}. Everything below comes from one run of the default setting "
        f"([results/long_embeddings/results.md](results/long_embeddings/results.md), {_run_time(record)}, "
        f"{record['date'][:10]}), with all rows measured side by side (bold: the best converted model in each column):",
        "",
        "| | "
        + " | ".join(f"{task} {n:,}" for task, n in columns)
        + " | cosine to original (window) | quote retrieval (window) |",
        "| --- " * (len(columns) + 3) + "|",
    ]
    formats = [percent] * len(columns) + [_cosine, _quote_cell]
    rows = {}
    for name in record["methods"]:
        cosine = record["fidelity"].get(name, {}).get("mean_cosine") if name in converted else 1.0
        rows[name] = [*(_accuracy(record, name, *column) for column in columns), cosine, quote(record, name)]
    best = [max((rows[n][i] for n in converted if rows[n][i] is not None), default=None) for i in range(len(formats))]
    for name, values in rows.items():
        cells = [
            f"**{fmt(value)}**" if name in converted and value == top else fmt(value)
            for value, fmt, top in zip(values, formats, best, strict=True)
        ]
        copied = _copied_to(record, name)
        label = name if copied is None else f"{name} (table copied to {copied:,}, LED's way)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_findings(record: dict[str, Any]) -> str:
    """What the run shows, as list items: reach at length, the copied table, and which targets are met."""
    settings, converted, baselines = record["settings"], _converted(record), _baselines(record)
    truncated, chunked = baselines[:2], baselines[2]
    cells = [(task, n) for task in TASKS for n in LONG_LENGTHS if n in settings["eval"]["lengths"]]
    original_quote = quote(record, baselines[0])

    def measured(name: str) -> list[float]:
        return [v for task in TASKS for v in record["methods"][name]["summary"].get(task, {}).values()]

    # reach: the converted models that find everything, or else the best one at length
    group = [name for name in converted if min(measured(name)) == 1.0]
    if group:
        lead = (
            f"{and_join(group)} {_plural(group, 'reads', 'read')} {settings['max_length']:,} tokens and "
            f"{_plural(group, 'finds', 'find')} every needle and every passkey."
        )
    else:
        group = [max(converted, key=lambda name: sum(_accuracy(record, name, *cell) for cell in cells))]
        lead = f"No converted model finds every needle and every passkey; the best at length is {group[0]}."
    margins = [
        100 * (_accuracy(record, n, *c) - _accuracy(record, b, *c)) for n in group for c in cells for b in truncated
    ]
    if min(margins) > 0:
        versus_truncation = f"{_plural(group, 'beats', 'beat')} both truncations by {span(margins, _points)} points"
    else:
        versus_truncation = (
            f"{_plural(group, 'differs', 'differ')} from the truncations by {min(margins):+.1f} to "
            f"{max(margins):+.1f} points"
        )
    ahead, (task, length) = max(
        (_accuracy(record, n, *c) - _accuracy(record, chunked, *c), c) for n in group for c in cells
    )
    versus_chunk = (
        f"chunk-and-mean-pool by up to {_points(100 * ahead)} points ({task} at {length:,})"
        if ahead > 0
        else "not chunk-and-mean-pool"
    )
    minutes = span((record["training"][name]["seconds"] / 60 for name in group), lambda m: f"{m:.1f}")
    items = [
        f"{lead} {_plural(group, 'It', 'They')} {versus_truncation}, and {versus_chunk}, after {minutes} minutes of "
        "training each."
    ]

    # the copied table: the window kept, and where it falls short of chunk-and-mean-pool
    for name in converted:
        if _copied_to(record, name) is None:
            continue
        fid, ours, keeps = _window_target(record, name)
        short = []
        for task in TASKS:
            for n in settings["eval"]["lengths"]:
                mine, chunk = _accuracy(record, name, task, n), _accuracy(record, chunked, task, n)
                if mine is not None and chunk is not None and mine < chunk - 1e-9:
                    missing = _queries(round((chunk - mine) * _queries_per_cell(record)))
                    short.append(
                        f"{task} at {n:,}, which is {missing} short ({percent(mine)} against {percent(chunk)})"
                    )
        items.append(
            f"The copied table {'keeps' if keeps else 'does not keep'} the window's embeddings (cosine {fid:.3f}; "
            f"quote retrieval within {_points(100 * abs(ours - original_quote))} points of the original's). It "
            f"matches or beats chunk-and-mean-pool everywhere{f' except {and_join(short)}' if short else ''}."
        )

    # the targets: keep the window and reach past it
    keepers = [name for name in converted if _window_target(record, name)[2]]
    both = [name for name in keepers if all(row[-1] for row in _length_targets(record, name))]
    if both:
        items.append(f"{and_join(both)} {_plural(both, 'meets', 'meet')} both targets ({_targets_text()}).")
    else:
        sentence = f"No encoding meets both targets in this budget ({_targets_text()})."
        if keepers and not set(keepers) & set(group):
            cosines = span((_window_target(record, name)[0] for name in group), lambda v: f"{v:.2f}")
            gap = max(abs(quote(record, name) - original_quote) for name in group)
            retrieve = _plural(group, "the one that retrieves best", "among the ones that retrieve best")
            sentence += (
                f" {_plural(keepers, 'The one that keeps', 'The ones that keep')} the window ({', '.join(keepers)}) "
                f"{_plural(keepers, 'is', 'are')} not {retrieve} ({', '.join(group)}), whose in-window cosine is "
                f"{cosines} after {settings['train']['steps']} steps ({_plural(group, 'its', 'their')} retrieval "
                f"inside the window stays within {_points(100 * gap)} points of the original's)."
            )
        items.append(sentence)
    return "\n".join(f"- {item}" for item in items)


def results_readme(record: dict[str, Any]) -> str:
    """results/README.md's description of the committed run."""
    settings, ev, queries = record["settings"], record["settings"]["eval"], _queries_per_cell(record)
    measured = [label.removeprefix("original, ") for label in _baselines(record)]
    converted = [
        name if (copied := _copied_to(record, name)) is None else f"{name} (table copied to {copied:,})"
        for name in _converted(record)
    ]
    return "\n".join(
        [
            "`results/long_embeddings/` (results.json, results.md, results.png) is one run of the default setting "
            f"(`recipes/configs/long_embeddings_default.yaml`) on {record['date'][:10]}: {_run_time(record)}. The run "
            f"measures the original {record['model']} ({and_join(measured)}) side by side with {and_join(converted)}. "
            f"Each converted model is trained by distillation from the original for {settings['train']['steps']} "
            "steps.",
            "",
            "The tasks are passkey and needle retrieval in LongEmbed's shape from "
            f"*{TITLES[ev['haystack_book']]}*, and fidelity and quote retrieval inside the window from "
            f"*{TITLES[ev['quote_book']]}*. Both books are held out and never trained on. Each cell of the retrieval "
            f"tables is {queries} queries, so {_points(100 / queries)} points is one query.",
        ]
    )


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 4), sharey=True)
    for ax, task in zip(axes, TASKS, strict=True):
        converted = 0
        for label, result in record["methods"].items():
            points = sorted((int(n), 100 * a) for n, a in result["summary"].get(task, {}).items())
            if not points:
                continue
            if label.startswith("original"):
                ax.plot(*zip(*points, strict=True), "--", marker="o", label=label)
                continue
            # converted models often coincide (at 100%): each a thinner line with its own marker, so all show
            marker, width = "sD^vP*"[converted % 6], max(4.5 - 1.2 * converted, 1.0)
            ax.plot(*zip(*points, strict=True), "-", marker=marker, lw=width, ms=3 + width, label=label, alpha=0.85)
            converted += 1
        ax.axhline(100 / record["settings"]["eval"]["candidates"], color="grey", lw=0.8, ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("document length (tokens)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
