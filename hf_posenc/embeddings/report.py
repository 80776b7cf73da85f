"""The long-embeddings report: results.json, results.md (top-1 and nDCG@10 per task and length, the targets of
issues 24 and 26, the trade-off and the recommended arm), results.png and results_tradeoff.png, and the README's
text on the run, written into the READMEs by tools/update_readme.py.

Two record shapes: a run of the current recipe has `tasks` (LongEmbed-difficulty passkey and needle, content
retrieval) and is rendered by `readme_training`, `readme_results`, `readme_verdict` and `results_run`; the committed
run before them (8-candidate tasks sharing one haystack) by the original `readme_objective`, `readme_evaluation`,
`readme_findings` and `results_readme`, which hand a record of the current shape to the new renderers.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..data import TITLES
from ..evaluation.wording import and_join, span
from . import targets as rules

# the committed run's tasks and targets (its README renderers below); the current ones are in targets.py
TASKS = ("passkey", "needle")
FIDELITY_TARGET, QUOTE_MARGIN, BEAT_TRUNCATION, LONG_LENGTHS = 0.97, 0.02, 0.20, (1024, 2048)
ABOUT = {
    "passkey": "each candidate is its own stretch of the books with a made-up person's pass key at its own depth; "
    "the query asks for that person's key (LongEmbed's passkey task)",
    "needle": "each candidate is its own stretch of the books with a fact about a made-up place at its own depth; "
    "the query asks about it (LongEmbed's needle task)",
    "content": "distinct, non-overlapping documents; each is queried by one of its own sentences; nothing is planted",
    "passkey_shared": "the candidates share one haystack and differ only in the pass key (the earlier tasks)",
    "needle_shared": "the candidates share one haystack and differ only in the fact (the earlier tasks)",
}
README_LENGTHS = 3  # the README table shows each task at its longest three lengths
TRADEOFF_PNG = "results_tradeoff.png"


def write_report(record: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / "results.md").write_text("\n".join(markdown(record)) + "\n")
    if record["methods"]:
        plot(record, out_dir / "results.png")
    if any(point["score"] is not None for point in rules.tradeoff(record)):
        plot_tradeoff(record, out_dir / TRADEOFF_PNG)


def retrieval_tasks(record: dict[str, Any]) -> list[str]:
    return list(record.get("tasks", {}))


def _ndcg_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def metric_rows(record: dict[str, Any], task: str, metric: str) -> list[str]:
    """A table of `metric` ("top-1" or "nDCG@10") for every method (baselines first) at every length of `task`."""
    lengths = rules.task_lengths(record, task)
    lines = ["| method | " + " | ".join(f"{n:,} tokens" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for label in record["methods"]:
        if metric == "top-1":
            cells = [_pct(rules.top1(record, label, task, n)) for n in lengths]
        else:
            cells = [_ndcg_cell(rules.ndcg(record, label, task, n)) for n in lengths]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _cells(task: dict[str, Any], key: str) -> list[Any]:
    return [cell[key] for cell in task["lengths"].values()]


def _count(values: list[int]) -> str:
    return span(values, lambda n: f"{n:,.0f}")


def task_rows(record: dict[str, Any]) -> list[str]:
    """Per task: books, lengths, candidates, queries, chance and the depths of what the queries ask for."""
    lines = [
        "| task | books | lengths | candidates | queries per length | chance (top-1) | depth of what is asked for |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, task in record["tasks"].items():
        candidates, lengths = _cells(task, "candidates"), [int(n) for n in task["lengths"]]
        depths = _cells(task, "depths")
        low, high = min(d["min"] for d in depths), max(d["max"] for d in depths)
        median = statistics.median(d["median"] for d in depths)
        chance = span((100 / n for n in candidates), lambda v: f"{v:.1f}%")
        lines.append(
            f"| {name} | {', '.join(f'*{TITLES[b]}*' for b in task['books'])} | {_count(lengths)} | "
            f"{_count(candidates)} | {_count(_cells(task, 'queries'))} | {chance} | "
            f"{low:.2f}-{high:.2f} of the document (median {median:.2f}) |"
        )
    return lines


def window_rows(record: dict[str, Any]) -> list[str]:
    truncated, _ = rules.baselines(record)
    lines = ["| model | mean cosine | min cosine | in-window retrieval |", "|---|---|---|---|"]
    if truncated and rules.quote(record, truncated[0]) is not None:
        lines.append(f"| original | 1 | 1 | {_pct(rules.quote(record, truncated[0]))} |")
    for name in rules.converted(record):
        fid = record["fidelity"].get(name, {})
        lines.append(
            f"| {name} | {fid.get('mean_cosine', float('nan')):.4f} | {fid.get('min_cosine', float('nan')):.4f} | "
            f"{_pct(rules.quote(record, name))} |"
        )
    return lines


def _encoding(record: dict[str, Any], name: str) -> str:
    spec = {k: v for k, v in (record["settings"]["encodings"].get(name) or {}).items() if k != "train"}
    encoding = spec.pop("encoding", name)
    return ", ".join([encoding, *(f"{k} {v}" for k, v in spec.items())])


def _overrides(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (summary.get("overrides") or {}).items()) or "-"


def training_rows(record: dict[str, Any]) -> list[str]:
    lines = [
        "| arm | encoding | train overrides | steps | tokens | minutes | short loss | long loss | other terms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in record["training"].items():
        terms = [f"{term} {t[f'first_{term}_loss']:.3f} → {t[f'final_{term}_loss']:.3f}"
                 for term in ("contrastive", "token", "attention") if f"first_{term}_loss" in t]  # fmt: skip
        contrastive = "; ".join(terms) or "-"
        lines.append(
            f"| {name} | {_encoding(record, name)} | {_overrides(t)} | {t['steps']} | {t['tokens']:,} | "
            f"{t['seconds'] / 60:.1f} | {_loss(t['first_short_loss'])} → {_loss(t['final_short_loss'])} | "
            f"{_loss(t['first_long_loss'])} → {_loss(t['final_long_loss'])} | {contrastive} |"
        )
    return lines


def _loss(value: float) -> str:
    return f"{max(value, 0.0):.4f}"  # 1 - cosine is >= 0; float rounding can put an exact match a hair below


def target_lines(record: dict[str, Any]) -> list[str]:
    """Each converted arm against the targets of issues 24 and 26, a yes/no per target with the numbers."""
    truncated, chunked = rules.baselines(record)
    if not truncated or chunked is None or not rules.converted(record):
        return ["(the targets are checked once the baselines and a converted model are measured)"]
    lines = [f"E5-Base-4k's numbers: {rules.E5_SOURCE}.", ""]
    for name in rules.converted(record):
        for issue, checks in ((24, rules.issue24_checks(record, name)), (26, rules.issue26_checks(record, name))):
            verdict = "met" if rules.met(checks) else "not met"
            lines.append(f"- {name}, issue {issue}: **{verdict}**")
            lines += [f"  - {check.line()}" for check in checks]
    return lines


def tradeoff_rows(record: dict[str, Any]) -> list[str]:
    """In-window mean cosine against content top-1 at the two longest lengths: the converted arms, then the
    baselines (cosine 1: they are the original)."""
    lengths = rules.long_lengths(record)
    truncated, chunked = rules.baselines(record)
    longest = f" at {lengths[-1]:,} (paired, 95%)" if lengths else ""
    lines = [
        "| model | in-window mean cosine | "
        + " | ".join(f"content top-1 at {n:,}" for n in lengths)
        + f" | mean | on the front | vs chunk-and-mean-pool{longest} |",
        "|---" * (len(lengths) + 5) + "|",
    ]
    for point in rules.tradeoff(record):
        cosine = "n/a" if point["cosine"] is None else f"{point['cosine']:.4f}"
        cells = [_pct(point["content"][n]) for n in lengths]
        front = "yes" if point["pareto"] else "no"
        versus = rules.versus(record, point["name"], chunked, rules.CONTENT, lengths[-1]) if lengths else "n/a"
        lines.append(
            f"| {point['name']} | {cosine} | " + " | ".join(cells) + f" | {_pct(point['score'])} | {front} | {versus} |"
        )
    for label in [*truncated, *([chunked] if chunked else [])]:
        cells = [_pct(rules.top1(record, label, rules.CONTENT, n)) for n in lengths]
        score = _pct(rules.content_score(record, label))
        lines.append(f"| {label} | 1 | " + " | ".join(cells) + f" | {score} | - | - |")
    return lines


def markdown(record: dict[str, Any]) -> list[str]:
    settings = record["settings"]
    books = record.get("books", {})
    held = all(book in _held_out() for book in books.get("eval", []))
    lines = [
        f"# Long-document embeddings: {record['model']}",
        "",
        f"Generated by `python recipes/extend_sentence_encoder.py` ({record['date']}, {_run_time(record)}).",
        f"Window of the original: {record.get('window')} tokens; converted models read {settings['max_length']:,}.",
        f"Evaluated on {_titles(books.get('eval', []))} ("
        + ("held out: never trained on" if held else "validation books: held out of this run's distillation")
        + f"); trained on {_titles(books.get('train', []))}.",
    ]
    if record.get("precision") == "bf16":
        lines.append("Retrieval embeddings in bf16 autocast, for every method alike; fidelity in fp32.")
    lines += ["", "## Tasks", "", *task_rows(record), ""]
    lines += [f"- {task}: {ABOUT.get(task, task)}." for task in retrieval_tasks(record)]
    lines += [
        "",
        "Top-1: the share of queries whose own document ranks first (chance: 1 / candidates). nDCG@10 (LongEmbed's "
        "metric, here x 100): 1 / log2(rank + 1) of the own document within the top 10, else 0.",
        "",
    ]
    for task in retrieval_tasks(record):
        lines += [f"## {task}", "", "Top-1 accuracy:", "", *metric_rows(record, task, "top-1"), ""]
        lines += ["nDCG@10:", "", *metric_rows(record, task, "nDCG@10"), ""]
    quote_book = TITLES.get(settings["eval"]["quote_book"], settings["eval"]["quote_book"])
    lines += [
        "## Inside the window",
        "",
        f"Fidelity: cosine between the original's and the converted model's embeddings of "
        f"{settings['eval']['quote_passages']} passages of *{quote_book}* (at most {record.get('window')} tokens). "
        "Retrieval: each query is one sentence of a passage, to be found among all the passages.",
        "",
        *window_rows(record),
        *change_lines(record),
        "",
        "## Training (distillation from the original)",
        "",
        *training_rows(record),
        "",
        f"Teacher passes: {record.get('teacher_passes', 'n/a')} (arms that read the same examples share one).",
        "",
        "## Targets",
        "",
        *target_lines(record),
        "",
        "## Trade-off: keeping the window against reading long documents",
        "",
        *tradeoff_rows(record),
        "",
        f"![in-window cosine against content retrieval]({TRADEOFF_PNG})",
        "",
        "## Recommendation",
        "",
        recommendation_line(record),
        *sweep_lines(record),
        "",
        "![accuracy against length](results.png)",
    ]
    return lines


def change_lines(record: dict[str, Any]) -> list[str]:
    """Where a family has its reference arm and others that change one training setting, how each moved the
    in-window cosine (paired over the passages), and whether any keeps the window."""
    from . import window

    fidelity = record.get("fidelity") or {}
    kept = [name for name, fid in fidelity.items() if fid.get("cosines")]
    compared = {family: names for family, names in window.families(record).items()
                if family in names and len(names) > 1 and set(names) <= set(kept)}  # fmt: skip
    if not compared:
        return []
    lines = ["", "Each family's arms against its reference, the arm named after the encoding (95% intervals, paired "
                 "over the passages):", ""]  # fmt: skip
    return lines + [f"- {family}: {window.verdict(record, family, names)}" for family, names in compared.items()]


def sweep_lines(record: dict[str, Any]) -> list[str]:
    """Where the run sweeps a setting (arms named `<family>_w<value>`), each family's choice by the same rule."""
    choices = rules.sweep_choices(record)
    if not choices:
        return []
    lines = ["", "Each swept family's choice, by the same rule among its own arms (for the default setting's arm):", ""]
    for family, (name, why) in choices.items():
        lines.append(f"- {family}: " + (f"none yet ({why})" if name is None else f"**{name}**: {why}"))
    return lines


def card_section(record: dict[str, Any], label: str) -> str:
    """The model card's retrieval section for the saved arm `label`: its top-1 and nDCG@10 per task and length beside
    the original's baselines measured in the same run, the tasks, and its fidelity inside the window."""
    shown = {name: record["methods"][name] for name in [*_baselines(record), label] if name in record["methods"]}
    lines = [
        "## Retrieval (measured by hf_posenc's `recipes/extend_sentence_encoder.py`)",
        "",
        f"One run on {record['date'][:10]}, on held-out text only; this model is `{label}`, beside the original it was "
        "converted from, measured in the same run.",
        "",
        *task_rows(record),
    ]
    for task in retrieval_tasks(record):
        for metric in ("top-1", "nDCG@10"):
            table = metric_rows({**record, "methods": shown}, task, metric)
            lines += ["", f"**{task}, {metric}**", "", *table]
    fid = record.get("fidelity", {}).get(label)
    if fid:
        lines += ["", f"Inside the original's window, the cosine between this model's and the original's embeddings of "
                      f"{fid['passages']} held-out passages is {fid['mean_cosine']:.4f} on average (lowest "
                      f"{fid['min_cosine']:.4f})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def add_card_section(folder: Path, record: dict[str, Any], label: str) -> None:
    """Append `card_section` to the saved model's README.md (its model card), replacing an earlier one."""
    card = Path(folder) / "README.md"
    text = card.read_text() if card.is_file() else ""
    head = "## Retrieval (measured by hf_posenc"
    if head in text:
        text = text[: text.index(head)].rstrip() + "\n"
    card.write_text(f"{text.rstrip()}\n\n{card_section(record, label)}" if text else card_section(record, label))


def recommendation_line(record: dict[str, Any]) -> str:
    name, why = rules.recommend(record)
    return f"(none yet: {why})" if name is None else f"Deploy **{name}** (`models/{name}`): {why}."


def _held_out() -> tuple[str, ...]:
    from ..data import HELD_OUT

    return HELD_OUT


def _titles(books: list[str]) -> str:
    return and_join(f"*{TITLES.get(b, b)}*" for b in books) if books else "n/a"


# The README's text on a run of the current recipe: markdown with one line per paragraph or list item.


def readme_training(record: dict[str, Any]) -> str:
    """The training: the objective, the contrastive term, and each arm's encoding and overrides."""
    from .distill import DistillConfig

    cfg = DistillConfig(**record["settings"]["train"])
    return "\n".join(
        [
            "**The training.** Each arm is distilled from the original on the training books "
            f"({_titles(record['books']['train'])}). Each optimizer step takes short spans "
            f"({cfg.min_short_tokens}-{cfg.chunk_length - 2} tokens, target: the original's own embedding, which "
            "keeps the window) and long spans (target: the original's chunk-and-mean-pool embedding, learned in one "
            "pass). "
            + (
                "A contrastive arm adds an InfoNCE term: each long span's own sentences, embedded by the original, "
                "must find it among the batch's long spans. "
                if any(t.get("config", {}).get("contrastive_weight") for t in record["training"].values())
                else "No arm has the contrastive term (`contrastive_weight` 0). "
            )
            + "Top-level settings: "
            f"{cfg.steps} steps, {cfg.long_batch} x {cfg.long_length:,}-token long spans, learning rate "
            f"{cfg.learning_rate:g}; each arm's overrides below.",
            "",
            *training_rows(record),
        ]
    )


def readme_results(record: dict[str, Any]) -> str:
    """The tasks and one table of every method at the long lengths: top-1 / nDCG@10, cosine and quote retrieval."""
    tasks = [task for task in ("passkey", "needle", "content") if task in record["tasks"]]
    columns = [(task, n) for task in tasks for n in rules.task_lengths(record, task)[-README_LENGTHS:]]
    lines = [
        f"**The evaluation** reads {_titles(record['books']['eval'])}, never trained on. Every row is measured side "
        "by side in one run ([results/long_embeddings/results.md](results/long_embeddings/results.md), "
        f"{_run_time(record)}, {record['date'][:10]}):",
        "",
        *task_rows(record),
        "",
        "Cells: top-1 % / nDCG@10 (x 100)"
        + (", retrieval embeddings in bf16 autocast." if record.get("precision") == "bf16" else "."),
        "",
        "| | " + " | ".join(f"{task} {n:,}" for task, n in columns) + " | cosine (window) | quote (window) |",
        "| --- " * (len(columns) + 3) + "|",
    ]
    converted = rules.converted(record)
    for label in record["methods"]:
        cells = [_both(record, label, task, n) for task, n in columns]
        cosine = record["fidelity"].get(label, {}).get("mean_cosine") if label in converted else 1.0
        cells += [
            "n/a" if cosine is None else "1" if cosine == 1 else f"{cosine:.3f}",
            _pct(rules.quote(record, label)),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _both(record: dict[str, Any], label: str, task: str, length: int) -> str:
    """'98 / 99.1': top-1 % and nDCG@10 x 100."""
    return f"{_pct(rules.top1(record, label, task, length)).removesuffix('%')} / " + _ndcg_cell(
        rules.ndcg(record, label, task, length)
    )


def readme_verdict(record: dict[str, Any]) -> str:
    """Which arm to deploy (the rule of `targets.recommend`), its targets as yes/no, and the trade-off table."""
    name, why = rules.recommend(record)
    if name is None:
        return f"- No arm to recommend yet: {why}."
    items = [f"Deploy **{name}** (`models/{name}` of the run): {why}."]
    for issue, checks in ((24, rules.issue24_checks(record, name)), (26, rules.issue26_checks(record, name))):
        missed = [check for check in checks if not check.met]
        state = "meets every target" if not missed else f"misses {len(missed)} of {len(checks)} targets"
        items.append(f"Against issue {issue}, {name} {state}: " + "; ".join(c.line() for c in checks) + ".")
    others = [p["name"] for p in rules.tradeoff(record) if p["name"] != name and rules.keeps_window(record, p["name"])]
    if others:
        items.append(f"{and_join(others)} also {'keeps' if len(others) == 1 else 'keep'} the window.")
    lines = [f"- {item}" for item in items]
    return "\n".join([*lines, "", *tradeoff_rows(record)])


def results_run(record: dict[str, Any]) -> str:
    """results/README.md's description of a committed run of the current recipe."""
    truncated, chunked = rules.baselines(record)
    measured = [label.removeprefix("original, ") for label in [*truncated, *([chunked] if chunked else [])]]
    arms = [f"{name} ({_encoding(record, name)})" for name in rules.converted(record)]
    return "\n".join(
        [
            "`results/long_embeddings/` (results.json, results.md, results.png, results_tradeoff.png) is one run of "
            f"the default setting (`recipes/configs/long_embeddings_default.yaml`) on {record['date'][:10]}: "
            f"{_run_time(record)}. It "
            f"measures the original {record['model']} ({and_join(measured)}) side by side with {and_join(arms)}.",
            "",
            f"The tasks read {_titles(record['books']['eval'])}, never trained on: "
            + "; ".join(f"{task}: {ABOUT.get(task, task)}" for task in retrieval_tasks(record))
            + ". Fidelity and quote retrieval are inside the window.",
        ]
    )


def _long_spans(record: dict[str, Any]) -> str:
    """'4 x 1,024 tokens per step (...)' as the record's arms trained (the distinct shapes, joined)."""
    configs = [t["config"] for t in record["training"].values() if "config" in t]
    shapes = {(c["long_batch"], c["long_length"]) for c in configs}
    if not shapes:
        return "as the record does not say (no training configs)"
    contrastive = any(c.get("contrastive_weight", 0) > 0 for c in configs)
    return " and ".join(f"{b} x {n:,} tokens per step" for b, n in sorted(shapes)) + (
        " (the contrastive term's negatives are the batch's other long spans)" if contrastive else ""
    )


def readme_validation(record: dict[str, Any]) -> str:
    """The validation setting's sweep (`--setting validation`): per swept arm, its weight, the window kept, content
    retrieval at the two longest lengths and the difference from chunk-and-mean-pool at the longest (paired, 95%),
    passkey and needle there; then each family's choice by the recommendation rule."""
    lengths = rules.long_lengths(record)
    longest = lengths[-1]
    _, chunked = rules.baselines(record)
    books = _titles(record["books"]["eval"])
    content = record["tasks"]["content"]["lengths"][str(longest)]
    lines = [
        f"The contrastive weight was chosen on a validation split: {books} held out of distillation and evaluated "
        "(the held-out books are not read; `python recipes/extend_sentence_encoder.py --setting validation`, "
        "[`results/long_embeddings_validation/`](results/long_embeddings_validation/results.md), "
        f"{_run_time(record)}). Every arm trains with the default setting's training settings except its long spans: "
        f"{_long_spans(record)}. Content retrieval among {content['candidates']} distinct documents "
        f"({content['queries']} queries per length); passkey and needle with "
        f"{record['tasks']['passkey']['lengths'][str(longest)]['candidates']} candidates:",
        "",
        "| arm | contrastive weight | in-window mean / min cosine | "
        + " | ".join(f"content {n:,}" for n in lengths)
        + f" | vs chunk-and-mean-pool at {longest:,} | passkey / needle {longest:,} |",
        "| --- " * (len(lengths) + 5) + "|",
    ]
    for name in [*rules.converted(record), chunked]:
        if name is None:
            continue
        fid = record["fidelity"].get(name, {})
        cosine = f"{fid['mean_cosine']:.4f} / {fid['min_cosine']:.4f}" if fid else "1 / 1 (the original)"
        weight = f"{rules.swept_value(name):g}" if rules.SWEPT.match(name) else "-"
        cells = [_pct(rules.top1(record, name, rules.CONTENT, n)) for n in lengths]
        versus = rules.versus(record, name, chunked, rules.CONTENT, longest) if name != chunked else "-"
        synthetic = " / ".join(_pct(rules.top1(record, name, task, longest)) for task in rules.SYNTHETIC)
        label = name if name != chunked else name.removeprefix("original, ")
        lines.append(
            f"| {label} | {weight} | {cosine} | " + " | ".join(cells)
            + f" | {versus} | {synthetic} |"
        )  # fmt: skip
    lines.append("")
    for family, (name, why) in rules.sweep_choices(record).items():
        lines.append(f"- {family}: " + (f"none yet ({why})." if name is None else f"**{name}**: {why}."))
    return "\n".join(lines)


def readme_window(record: dict[str, Any]) -> str:
    """The window setting (`--setting window`): per converted arm, what it changes from its family's reference, the
    in-window mean cosine with its interval, the paired difference from the reference, the lowest cosine, quote
    retrieval and content retrieval at the longest length; then one verdict per family."""
    from . import window

    longest = rules.long_lengths(record)[-1]
    truncated, _ = rules.baselines(record)
    passages = next(iter(record["fidelity"].values()))["passages"]
    lines = [
        f"What brings rope's and alibi's in-window embeddings to the original's was measured on the validation split "
        f"({_titles(record['books']['eval'])} held out of distillation and evaluated; "
        "`python recipes/extend_sentence_encoder.py --setting window`, "
        "[`results/long_embeddings_window/`](results/long_embeddings_window/results.md), "
        f"{_run_time(record)}): each family trained as the validation sweep trains it (the default's training with "
        f"long spans of {_long_spans(record)}; the reference, named after its encoding), then one change at a time. "
        f"Cosine to the original over {passages} "
        "in-window passages (95% intervals: bootstrap over the passages; the difference from the reference is paired; "
        "one training run per arm, and each comparison stands on its own, with no correction for several):",
        "",
        "| arm | train overrides | mean cosine | vs the reference | lowest | quote retrieval "
        f"(original {_pct(rules.quote(record, truncated[0] if truncated else None))}) | content {longest:,} | "
        "training (wall min) |",
        "| --- " * 8 + "|",
    ]
    for family, names in window.families(record).items():
        for name in names:
            interval = window.mean_cosine(record, name)
            reference = family if family in names and name != family else None
            gain = window.signed(window.cosine_gain(record, name, reference)) if reference else "-"
            changes = _overrides(record["training"][name]) + (" (the reference)" if name == family else "")
            lines.append(
                f"| {name} | {changes} | "
                f"{interval.mean:.4f} [{interval.low:.4f}, {interval.high:.4f}] | {gain} | "
                f"{min(window.cosines(record, name)):.4f} | {_pct(rules.quote(record, name))} | "
                f"{_pct(rules.top1(record, name, rules.CONTENT, longest))} | "
                f"{record['training'][name]['seconds'] / 60:.1f} |"  # wall minutes
            )
    lines.append("")
    for family, names in window.families(record).items():
        lines.append(f"- {family}: {window.verdict(record, family, names)}")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Top-1 accuracy against length, one panel per retrieval task, chance dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = retrieval_tasks(record) or list(TASKS)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks) + 1, 4), sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        converted = 0
        for label, result in record["methods"].items():
            points = sorted((int(n), 100 * a) for n, a in result["summary"].get(task, {}).items())
            if not points:
                continue
            if label.startswith("original"):
                ax.plot(*zip(*points, strict=True), "--", marker="o", label=label)
                continue
            # converted models often coincide: each a thinner line with its own marker, so all show
            marker, width = "sD^vP*"[converted % 6], max(4.5 - 1.2 * converted, 1.0)
            ax.plot(*zip(*points, strict=True), "-", marker=marker, lw=width, ms=3 + width, label=label, alpha=0.85)
            converted += 1
        candidates = _cells(record["tasks"][task], "candidates") if task in record.get("tasks", {}) else []
        if candidates:
            ax.axhline(100 / max(candidates), color="grey", lw=0.8, ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("document length (tokens)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tradeoff(record: dict[str, Any], path: Path) -> None:
    """One point per converted arm: content top-1 at the two longest lengths (mean) against in-window mean cosine,
    the front joined, the recommended arm starred, the baselines and the targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in rules.tradeoff(record) if p["score"] is not None and p["cosine"] is not None]
    recommended, _ = rules.recommend(record)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for point in points:
        star = point["name"] == recommended
        ax.scatter(100 * point["score"], point["cosine"], s=160 if star else 40, marker="*" if star else "o", zorder=3)
        ax.annotate(point["name"], (100 * point["score"], point["cosine"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    front = sorted((100 * p["score"], p["cosine"]) for p in points if p["pareto"])
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), "-", color="grey", lw=1, label="front")
    truncated, chunked = rules.baselines(record)
    lines = [*((t, ":") for t in truncated), *(((chunked, "--"),) if chunked else ())]
    for (label, style), colour in zip(lines, ("dimgrey", "darkgoldenrod", "black")):
        score = rules.content_score(record, label)
        if score is not None:
            ax.axvline(100 * score, ls=style, lw=1.2, color=colour, alpha=0.8, label=label)
    ax.axhline(rules.MEAN_COSINE, color="tab:red", lw=0.8, label=f"cosine target {rules.MEAN_COSINE}")
    lengths = " and ".join(f"{n:,}" for n in rules.long_lengths(record))
    ax.set_xlabel(f"content top-1 (%), mean at {lengths} tokens")
    ax.set_ylabel("in-window mean cosine to the original")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# The committed run before the current tasks (8 candidates sharing one haystack): its README text, unchanged, until
# a run of the current recipe is committed; a record of the current shape goes to the renderers above.


def _current(record: dict[str, Any]) -> bool:
    return "tasks" in record


def _baselines(record: dict[str, Any]) -> list[str]:
    return [label for label in record["methods"] if label.startswith("original")]


def _converted(record: dict[str, Any]) -> list[str]:
    return [label for label in record["methods"] if not label.startswith("original")]


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


def _run_time(record: dict[str, Any]) -> str:
    """Wall and CPU minutes (summed over the sessions of a resumed run), and whether the run finished."""
    lower = "" if record.get("cpu_complete", True) else "at least "
    cpu = f", {lower}{record['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in record else ""
    sessions = f" over {record['sessions']} sessions" if record.get("sessions", 1) > 1 else ""
    done = "" if record.get("finished") else ", unfinished"
    return f"{record.get('wall_seconds', 0) / 60:.1f} min wall{cpu}{sessions}{done}"


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
    if _current(record):
        return readme_training(record)
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
    if _current(record):
        return readme_results(record)
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
    if _current(record):
        return readme_verdict(record)
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
    if _current(record):
        return results_run(record)
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
