"""Regenerate the generated parts of README.md and results/README.md: `python tools/update_readme.py`
(`--check`: write nothing, and fail naming each stale part).

Two kinds of marked blocks; the text between a block's two marker lines is rewritten, the text around it is not:
- `<!-- NAME -->` ... `<!-- /NAME -->`: a table from the registries, made by `SECTIONS[NAME]()`;
- `<!-- results: NAME -->` ... `<!-- /results: NAME -->`: text about committed results, made by
  `RESULTS[NAME](repo_root) -> str`. A renderer reads the results.json files it needs under repo_root and returns
  markdown with one line per paragraph or list item; this tool wraps those lines to WIDTH characters. Every number
  the text states about the results is one the renderer writes.

To add a results block: write its renderer next to the code that writes those results' markdown (a recipe is
imported with `recipe(name)`), register it in RESULTS, put the two marker lines where the text goes in one of FILES,
and give tests/test_readme.py's CHANGES a number of its results.json that the text states. Each registered name
marks exactly one block, and every results marker names a registered renderer.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hf_posenc
from hf_posenc.evaluation.wording import and_join

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_START = re.compile(r"([-+*>#|]|\d+[.)])(\s|$)")
FILES = ("README.md", "results/README.md")
WIDTH = 116
SECTIONS = {"encodings-table": hf_posenc.encodings_table, "families-table": hf_posenc.families_table}
BLOCK = re.compile(
    r"(?P<open><!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /results: (?P=name) -->)", re.S
)


def results(root: Path, folder: str) -> dict[str, Any]:
    """The record in results/<folder>/results.json under `root`."""
    return json.loads((root / "results" / folder / "results.json").read_text())


def recipe(name: str) -> Any:
    """The module recipes/<name>.py (recipes/ is not a package)."""
    folder = str(ROOT / "recipes")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def _benchmark(name: str) -> Any:
    """benchmarks/<name>.py (benchmarks/ is a package at the repository's root)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


def _embeddings() -> Any:
    return importlib.import_module("hf_posenc.embeddings.report")


# The swap study's lines in results/README.md, from the record's own fields (settings, times, sizes): a sentence or
# clause is left out when the record lacks a field it states.


def _optional(part: Callable[[], str]) -> str:
    try:
        return part()
    except (KeyError, TypeError, ZeroDivisionError):
        return ""


def _sentences(*sentences: Callable[[], str]) -> str:
    return " ".join(text for text in map(_optional, sentences) if text)


def _tokens(record: dict[str, Any]) -> int:
    return record["steps"] * record["tokens_per_step"]


def _share(record: dict[str, Any]) -> str:
    return f"{100 * _tokens(record) / record['base_pretraining_tokens']:.3g}%"


def _cpu_complete(record: dict[str, Any]) -> bool:
    """False when a session's fine-tuning workers were not counted (a record from several sessions without
    `cpu_complete` predates counting them)."""
    return record.get("cpu_complete", (record.get("sessions") or 1) == 1)


def _times(record: dict[str, Any]) -> str:
    sessions = record.get("sessions") or 1
    over = f" summed over its {sessions} sessions" if sessions > 1 else ""
    cpu = _optional(lambda: f", {'' if _cpu_complete(record) else 'at least '}{record['cpu_seconds'] / 60:.1f} min CPU")
    return f"{record['wall_seconds'] / 60:.1f} min wall{over}{cpu}"


def swap_study_run(root: Path) -> str:
    record = results(root, "swap_study")
    settings = record.get("settings", {})
    scaling = {"linear": "linear (PI)"}
    transfer = {
        name: weight
        for name, spec in settings.get("encodings", {}).items()
        if (weight := ((spec or {}).get("finetune") or {}).get("attention_transfer_weight"))
    }
    study = _sentences(
        lambda: (
            "`recipes/swap_study.py` takes the shipped study base (`hf_posenc/data/study_base/`: a GPT-2 with a "
            f"learned table of {record['window']} positions, pretrained here on "
            f"{record['base_pretraining_tokens'] / 1e6:.1f}M tokens of the training books with passkey and copying "
            "blocks; its README has the command, log and measurements that made it)."
        ),
        lambda: (
            f"It converts the base to {and_join(e for e in settings['encodings'] if e != 'learned')}, and keeps "
            "the learned table as the no-swap control."
        ),
        lambda: (
            "Each swap is fine-tuned as the recipes fine-tune after a swap: with attention transfer from the "
            "unconverted original (weight "
            + and_join(sorted({f"{w:g}" for w in transfer.values()}))
            + "); the control plainly."
            if transfer and set(transfer) == set(settings["encodings"]) - {"learned"}
            else ""
        ),
        lambda: (
            f"Each model is fine-tuned with seeds {and_join(str(s) for s in settings['seeds'])} for "
            f"{_tokens(record):,} tokens ({_share(record)} of the pretraining tokens) on the base's pretraining "
            "mixture."
        ),
        lambda: (
            "In-window perplexity and passkey accuracy on the held-out books are probed at 0 and "
            f"{len(record['probe_steps']) - 1} budgets along each run."
        ),
        lambda: (
            "After the full budget, every model is evaluated at "
            f"{and_join(str(n // record['window']) + 'x' for n in record['lengths'])} the window "
            f"(chunked{' and sliding' if settings['eval']['sliding'] else ''}), with passkey retrieval by length and "
            "depth."
        ),
        lambda: (
            "The fine-tuned rope models are also run with "
            f"{and_join(scaling.get(kind, kind) for kind in settings['scaling'])} scaling at inference."
        ),
    )
    setting = _sentences(
        lambda: (
            "Every setting is in `recipes/configs/swap_study_default.yaml`; `--setting quick` is the CI-sized "
            "version, `--setting long` fine-tunes for "
            f"{_share(results(root, 'swap_study_long'))} of the pretraining tokens (resumable with `--resume`), and "
            "`--setting full` the GPU-scale run (`gpt2` from the Hub, wikitext-103)."
        ),
    )
    run = _sentences(
        lambda: (
            "Committed run: `results/swap_study/` (results.json, results.md, recovery.png, extrapolation.png, "
            f"passkey.png, position_table.png) is one run of the command above on {record['date'][:10]} on the "
            f"{record['machine']['cpus']}-core {record['machine']['processor']} machine: **{_times(record)}**"
            + _optional(
                lambda: (
                    f" ({len(settings['encodings']) * len(settings['seeds'])} fine-tuning runs, "
                    f"{settings['workers']} at a time)"
                )
            )
            + "."
        ),
    )
    return "\n".join([f"{study} {setting}".strip(), "", run])


def swap_study_long_run(root: Path) -> str:
    record = results(root, "swap_study_long")
    return _sentences(
        lambda: (
            "`results/swap_study_long/` (same files and layout as above) is one run of that command "
            f"(`recipes/configs/swap_study_long.yaml`): the default study fine-tuned for {_tokens(record):,} tokens "
            f"per run, probed at 0 and {len(record['probe_steps']) - 1} budgets."
        ),
        lambda: (
            f"It ran on the {record['machine']['cpus']}-core machine: {_times(record)}"
            + (
                "."
                if _cpu_complete(record) or "cpu_seconds" not in record
                else "; the CPU time is a lower bound, since a session's fine-tuning workers ended before they were "
                "counted (`results.md` says so)."
            )
        ),
    )


RESULTS: dict[str, Callable[[Path], str]] = {
    # README.md
    "long-embeddings-objective": lambda root: _embeddings().readme_objective(results(root, "long_embeddings")),
    "long-embeddings-evaluation": lambda root: _embeddings().readme_evaluation(results(root, "long_embeddings")),
    "long-embeddings-findings": lambda root: _embeddings().readme_findings(results(root, "long_embeddings")),
    "long-embeddings-cost": lambda root: _benchmark("embed_cost").readme_block(results(root, "embedding_cost")),
    "recovery-cost": lambda root: _benchmark("recovery_cost").readme_block(results(root, "recovery_cost")),
    "long-embeddings-validation": lambda root: _embeddings().readme_validation(
        results(root, "long_embeddings_validation")
    ),
    "long-embeddings-window": lambda root: _embeddings().readme_window(results(root, "long_embeddings_window")),
    "bart-denoising-setup": lambda root: recipe("bart_denoising_demo").readme_setup(results(root, "bart_denoising")),
    "bart-denoising-table": lambda root: recipe("bart_denoising_demo").readme_table(results(root, "bart_denoising")),
    "bart-denoising-findings": lambda root: recipe("bart_denoising_demo").readme_findings(
        results(root, "bart_denoising")
    ),
    **{
        f"swap-{setting}-{part}": (
            lambda root, folder=folder, part=part: getattr(
                recipe("report_swap_study"), "readme_" + part.replace("-", "_")
            )(results(root, folder))
        )
        for setting, folder in (("default", "swap_study"), ("long", "swap_study_long"))
        for part in ("run", "setup", "in-window", "retrieval", "extrapolation", "findings")
    },  # fmt: skip
    "recovery-validation": lambda root: recipe("report_swap_study").readme_validation(
        results(root, "recovery_validation")
    ),
    **{
        f"swap-recovery-{part}": (
            lambda root, part=part: getattr(recipe("report_swap_study"), "readme_" + part)(
                results(root, "swap_study_recovery")
            )
        )
        for part in ("run", "methods", "targets")
    },  # fmt: skip
    "swap-default-changes": lambda root: recipe("report_swap_study").readme_changes(
        results(root, "swap_study"), results(root, "swap_study_recovery")
    ),
    "swap-recovery-shortfall": lambda root: recipe("report_swap_study").readme_shortfall(
        results(root, "swap_study_recovery"), results(root, "swap_study_long")
    ),
    "swap-long-rerun": lambda root: recipe("report_swap_study").readme_rerun(
        results(root, "swap_study_long"), results(root, "swap_study_long_earlier")
    ),
    # results/README.md
    "swap-study-run": swap_study_run,
    "swap-study-long-run": swap_study_long_run,
    "long-embeddings-run": lambda root: _embeddings().results_readme(results(root, "long_embeddings")),
    "bart-denoising-run": lambda root: recipe("bart_denoising_demo").results_readme(results(root, "bart_denoising")),
}


def wrap(markdown: str, width: int = WIDTH) -> str:
    """Fill each paragraph line and list item to `width` (a list item's next lines indented by two spaces); tables,
    headings, images, HTML and code blocks are kept as they are."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or line.startswith("```") or not line.strip() or line.lstrip()[0] in "|#!<":
            lines.append(line)
            continue
        lines.append(_fill(line, width, "  " if line.startswith("- ") else ""))
    return "\n".join(lines)


def _fill(line: str, width: int, indent: str) -> str:
    """`line` filled to at most `width` without breaking a code span, narrower if a wrapped line would begin like a
    list item or heading."""
    line = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), line)
    for narrower in range(width, width // 2, -1):
        text = textwrap.fill(line, narrower, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
        if not any(MARKDOWN_START.match(next_line.strip()) for next_line in text.splitlines()[1:]):
            return text.replace("\0", " ")
    raise ValueError(f"no wrapping of this line keeps its next lines plain text: {line[:80]}")


def rendered(name: str, root: Path = ROOT) -> str:
    """The text of results block `name`, as it should stand between its marker lines (a blank line after a table, so
    that the closing marker does not read as a row)."""
    text = wrap(RESULTS[name](root)).rstrip("\n") + "\n"
    return text + "\n" if text.splitlines()[-1].startswith("|") else text


def written(text: str) -> dict[str, str]:
    """The results blocks of a file's text, by name (a name marking two blocks is an error)."""
    blocks: dict[str, str] = {}
    for match in BLOCK.finditer(text):
        if match["name"] in blocks:
            raise ValueError(f"results block {match['name']!r} is marked twice")
        blocks[match["name"]] = match["body"]
    return blocks


def _tables(text: str) -> str:
    for marker, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def render(text: str, root: Path = ROOT) -> str:
    """`text` with its registry tables and results blocks regenerated."""
    unknown = sorted(set(written(text)) - set(RESULTS))
    if unknown:
        raise ValueError(f"results blocks without a renderer in tools/update_readme.py: {', '.join(unknown)}")
    return BLOCK.sub(lambda m: m["open"] + rendered(m["name"], root) + m["close"], _tables(text))


def stale(root: Path = ROOT) -> list[str]:
    """What is out of date, as 'FILE: BLOCK' (or 'FILE: tables'), and any registered block that no file marks."""
    problems, marked = [], set()
    for file in FILES:
        text = (root / file).read_text()
        blocks = written(text)
        marked |= set(blocks)
        unknown = sorted(set(blocks) - set(RESULTS))
        problems += [f"{file}: {name} has no renderer in tools/update_readme.py" for name in unknown]
        problems += [
            f"{file}: {name}" for name, body in blocks.items() if name in RESULTS and body != rendered(name, root)
        ]
        problems += [f"{file}: tables"] if _tables(text) != text else []
    return problems + [f"no file marks results block {name}" for name in sorted(set(RESULTS) - marked)]


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    """Rewrite FILES, or with --check report what is stale; 1 when something is stale or unmarked."""
    if "--check" in (sys.argv[1:] if argv is None else argv):
        problems = stale(root)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        if problems:
            print("run: python tools/update_readme.py", file=sys.stderr)
        return 1 if problems else 0
    for file in FILES:
        current = (root / file).read_text()
        if (updated := render(current, root)) != current:
            (root / file).write_text(updated)
    missing = [problem for problem in stale(root) if problem.startswith("no file marks")]
    for problem in missing:
        print(problem, file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
