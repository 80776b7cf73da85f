"""The README's tables are generated from the registries and must not drift from them."""

from __future__ import annotations

from pathlib import Path

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
