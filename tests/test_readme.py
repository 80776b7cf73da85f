"""The README's tables are generated from the registries and must not drift from them; its snippets run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import hf_posenc

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_encodings_table_matches_the_registry():
    assert hf_posenc.encodings_table() in README


def test_families_table_matches_the_registry():
    assert hf_posenc.families_table() in README


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
    folder (from_pretrained reads a folder of that name before asking the Hub), and HF_HUB_OFFLINE forbids the Hub."""
    blocks = python_blocks()
    assert [code.splitlines()[0] for code, marked in blocks if marked] == NEEDS_THE_HUB
    runnable = [(number, code) for number, (code, marked) in enumerate(blocks, 1) if not marked]
    assert len(runnable) >= 3
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=1000)).save_pretrained(
        tmp_path / "gpt2"
    )
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
