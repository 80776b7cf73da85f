"""The README's tables and results text are generated (from the registries and the committed results.json files) and
must not drift from them; its snippets run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import hf_posenc
from hf_posenc import data

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "tools"))

import update_readme  # noqa: E402


def test_encodings_table_matches_the_registry():
    assert hf_posenc.encodings_table() in README


def test_families_table_matches_the_registry():
    assert hf_posenc.families_table() in README


def marked_blocks(root: Path = ROOT) -> dict[str, str]:
    return {
        name: body
        for file in update_readme.FILES
        for name, body in update_readme.written((root / file).read_text()).items()
    }


@pytest.mark.parametrize("name", sorted(update_readme.RESULTS))
def test_results_block_is_what_its_results_say(name):
    """README.md's and results/README.md's text on each committed run is its renderer's, from that run's results.json
    (`python tools/update_readme.py` rewrites it)."""
    blocks = marked_blocks()
    assert name in blocks, f"no file marks results block {name}"
    assert blocks[name] == update_readme.rendered(name), f"{name} is stale: run python tools/update_readme.py"


def test_every_results_block_has_a_renderer_and_the_check_passes():
    assert set(marked_blocks()) == set(update_readme.RESULTS)
    assert update_readme.stale() == []


# For each results block: (results folder, keys to a number the block states, another value for it).
CHANGES = {
    "long-embeddings-objective": ("long_embeddings", ("training", "rope", "tokens"), 300_000),
    "long-embeddings-evaluation": ("long_embeddings", ("methods", "rope", "summary", "passkey", "2048"), 0.875),
    "long-embeddings-findings": ("long_embeddings", ("fidelity", "alibi", "mean_cosine"), 0.91),
    "long-embeddings-run": ("long_embeddings", ("wall_seconds",), 900.0),
    "long-embeddings-cost": ("embedding_cost", ("rows", 6, "peak_bytes"), 2**30),
    "recovery-cost": ("recovery_cost", ("repeats", 0, "methods", "distillation", "ratio"), 2.0),
    "long-embeddings-validation": ("long_embeddings_validation", ("wall_seconds",), 600.0),
    "long-embeddings-window": ("long_embeddings_window", ("fidelity", "rope_steps", "cosines", 0), 0.5),
    "bart-denoising-setup": ("bart_denoising", ("seconds",), 600.0),
    "bart-denoising-table": ("bart_denoising", ("results", "alibi", "200", "4", "kept_accuracy"), 0.5),
    "bart-denoising-findings": ("bart_denoising", ("results", "rope", "200", "1", "kept_accuracy"), 0.31),
    "bart-denoising-run": ("bart_denoising", ("pretrain_tokens",), 4_096_000),
    **{
        f"swap-{setting}-{part}": (folder, keys, value)
        for setting, folder, steps in (("default", "swap_study", 150), ("long", "swap_study_long", 1000))
        for part, keys, value in (
            ("run", ("cpu_seconds",), 4000.0),
            ("setup", ("steps",), steps),
            ("in-window", ("base_result", "perplexity"), 70.0),
            ("retrieval", ("gpt2", "curves", "rope", "points", -1, "passkey", "mean"), 0.5),
            ("extrapolation", ("gpt2", "extrapolation", "rope", "2048", "mean"), 0.5),
            ("findings", ("gpt2", "curves", "rope", "points", -1, "vs_base", "mean"), 0.5),
        )
    },
    "recovery-validation": ("recovery_validation", ("gpt2", "curves", "rope", "points", -1, "vs_base", "mean"), 0.5),
    "swap-recovery-run": ("swap_study_recovery", ("cpu_seconds",), 4000.0),
    "swap-recovery-methods": ("swap_study_recovery", ("gpt2", "methods", 0, "cost"), 9.0),
    "swap-recovery-targets": ("swap_study_recovery", ("gpt2", "targets", "best", "rope", "vs_base", "mean"), 0.5),
    "swap-recovery-shortfall": ("swap_study_recovery", ("gpt2", "methods", 0, "points", -1, "vs_plain", "mean"), 0.5),
    "swap-default-changes": ("swap_study", ("gpt2", "curves", "rope", "points", -1, "vs_base", "mean"), 0.5),
    "swap-long-rerun": ("swap_study_long", ("gpt2", "curves", "rope", "points", -1, "passkey", "mean"), 0.5),
    "swap-study-run": ("swap_study", ("cpu_seconds",), 4000.0),
    "swap-study-long-run": ("swap_study_long", ("wall_seconds",), 12_000.0),
}


def copy_of_the_repository_text(tmp_path: Path) -> Path:
    """The files the tool reads and writes, under tmp_path: the READMEs and every results.json."""
    for path in [*update_readme.FILES, *(str(p.relative_to(ROOT)) for p in ROOT.glob("results/*/results.json"))]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    return tmp_path


def test_every_results_block_has_a_change_to_detect():
    assert set(CHANGES) == set(update_readme.RESULTS)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_changed_result_makes_its_block_stale(name, tmp_path):
    """Another number in results.json changes the block's text: --check fails naming it, and a rewrite fixes it."""
    root = copy_of_the_repository_text(tmp_path)
    folder, keys, value = CHANGES[name]
    path = root / "results" / folder / "results.json"
    record = json.loads(path.read_text())
    parent = record
    for key in keys[:-1]:
        parent = parent[key]
    assert parent[keys[-1]] != value
    parent[keys[-1]] = value
    path.write_text(json.dumps(record))
    assert update_readme.main(["--check"], root=root) == 1
    assert any(problem.endswith(f": {name}") for problem in update_readme.stale(root))
    assert update_readme.main([], root=root) == 0
    assert update_readme.stale(root) == [] and marked_blocks(root)[name] != marked_blocks()[name]


def test_swap_study_lines_leave_out_what_the_record_lacks(tmp_path):
    root = copy_of_the_repository_text(tmp_path)
    path = root / "results" / "swap_study" / "results.json"
    record = json.loads(path.read_text())
    del record["cpu_seconds"], record["settings"]
    path.write_text(json.dumps(record))
    text = update_readme.swap_study_run(root)
    assert "min CPU" not in text and "seeds" not in text and "fine-tuning runs" not in text
    assert f"learned table of {record['window']} positions" in text
    machine = f"{record['machine']['cpus']}-core {record['machine']['processor']} machine"
    assert f"on {record['date'][:10]} on the {machine}: **{record['wall_seconds'] / 60:.1f} min wall**." in text


def test_wrapping_keeps_code_spans_and_starts_no_list_item():
    assert update_readme.wrap("aaaa bbbb - cc", 10) == "aaaa\nbbbb -\ncc"
    assert update_readme.wrap("- see `a b c` here", 9) == "- see\n  `a b c`\n  here"
    assert update_readme.wrap("| a | b |\n\nx y", 1) == "| a | b |\n\nx\ny"


def test_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0" in README and "python -m pip install -q torch==2.13.0" in ci
    assert "python -m pytest -q" in README and "python -m pytest -q" in ci


# A ```python block of the README that needs the Hub (an upload) follows this marker line and is listed below by its
# first line, so that no block is skipped silently: every other block runs as written.
NEEDS_THE_HUB_MARKER = "<!-- not run by tests/test_readme.py: needs the Hub -->"
NEEDS_THE_HUB: list[str] = []


def python_blocks() -> list[tuple[str, bool]]:
    """Each ```python block of the README, in order, and whether the line before it is NEEDS_THE_HUB_MARKER."""
    lines, blocks = README.splitlines(), []
    for index, line in enumerate(lines):
        if line.strip() == "```python":
            end = lines.index("```", index + 1)
            marked = index > 0 and lines[index - 1].strip() == NEEDS_THE_HUB_MARKER
            blocks.append(("\n".join(lines[index + 1 : end]) + "\n", marked))
    return blocks


RUN_SNIPPETS = """if True:
    import json
    import sys

    import hf_posenc

    for dotted in json.load(open("names.json")):  # what the prose calls after a plain `import hf_posenc`
        value = hf_posenc
        for attribute in dotted.split(".")[1:]:
            value = getattr(value, attribute)
        assert callable(value), dotted
    namespace = {"__name__": "__main__"}
    for number, code in json.load(open("blocks.json")):
        exec(compile(code, f"README.md, python block {number}", "exec"), namespace)
    print("ran", len(json.load(open("blocks.json"))), "blocks")
"""


def test_python_snippets_run_as_written(tmp_path):
    """The README's Python blocks run in order, in one namespace, offline: "gpt2" is a tiny local GPT-2 in the working
    folder with GPT-2's tokenizer (from_pretrained reads a folder of that name before asking the Hub), "my_corpus.txt" a
    shipped book's opening, and HF_HUB_OFFLINE forbids the Hub."""
    blocks = python_blocks()
    assert [code.splitlines()[0] for code, marked in blocks if marked] == NEEDS_THE_HUB
    runnable = [(number, code) for number, (code, marked) in enumerate(blocks, 1) if not marked]
    assert len(runnable) >= 3
    torch.manual_seed(0)
    tokenizer = data.gpt2_tokenizer()  # GPT-2's own, shipped with hf_posenc
    GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=len(tokenizer))
    ).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    (tmp_path / "my_corpus.txt").write_text(data.text("austen_persuasion")[:4000])
    names = sorted(set(re.findall(r"`(hf_posenc(?:\.\w+)+)\(", README)))
    assert "hf_posenc.hub.push_to_hub" in names
    (tmp_path / "names.json").write_text(json.dumps(names))
    (tmp_path / "blocks.json").write_text(json.dumps(runnable))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    run = subprocess.run(
        [sys.executable, "-c", RUN_SNIPPETS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"ran {len(runnable)} blocks" in run.stdout
