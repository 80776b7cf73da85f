"""The notebooks run top to bottom offline under nbclient, and are committed with their outputs stripped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hf_posenc.evaluation.report import plot_perplexity, write_report

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICK = {"FINETUNE_STEPS": 2, "BATCH_SIZE": 2, "EVAL_TOKENS": 256}


def execute(name: str, workdir: Path, parameters: dict) -> nbformat.NotebookNode:
    """Run a notebook in `workdir` with `parameters` injected after its "parameters" cell (papermill's convention)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items()) or "# defaults"
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, injected)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and mime == "text/plain":
                found.append(output["text"])
            elif mime in output.get("data", {}):
                found.append(output["data"][mime])
    return found


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {"quickstart.ipynb", "long_context.ipynb"}


@pytest.mark.parametrize(
    "parameters", [pytest.param(QUICK, id="quick"), pytest.param({}, id="as-shipped", marks=pytest.mark.slow)]
)
def test_quickstart_runs_offline(tmp_path, parameters):
    notebook = execute("quickstart.ipynb", tmp_path, parameters)
    text = "".join(outputs(notebook, "text/plain"))
    assert "IndexError" in text or "out of range" in text  # the original model stops at its window
    assert "logits for 1024 tokens" in text  # the shipped study base: 256 learned positions
    assert "largest logit difference" in text
    assert len(outputs(notebook, "image/png")) >= 1

    config = json.loads((tmp_path / "quickstart-rope" / "config.json").read_text())
    assert config["position_encoding"] == "rope" and config["trained_context_length"] == 256
    assert "## Evaluation" in (tmp_path / "quickstart-rope" / "README.md").read_text()
    report = json.loads((tmp_path / "quickstart-rope-evaluation" / "results.json").read_text())
    original = report["models"]["original (learned)"]["perplexity"]
    statuses = {r["length"]: r["status"] for r in original}
    assert statuses == {128: "ok", 256: "ok", 512: "unsupported", 1024: "unsupported"}
    assert original[1]["perplexity"] < 200  # a base that has learned language (a unigram model scores ~660)
    assert all(r["status"] == "ok" for r in report["models"]["quickstart-rope"]["perplexity"])


def fake_result(window: int, lengths: list[int], base: float, growth: float | None, mode: str = "chunked") -> dict:
    """One model's evaluation in the documented shape; growth None = the model cannot run past its window."""
    records = []
    for length in lengths:
        if growth is None and length > window:
            records.append({"length": length, "mode": mode, "status": "unsupported"})
            continue
        ppl = base * (growth or 1.0) ** math.log2(max(length / window, 1))
        record = {"length": length, "mode": mode, "status": "ok", "perplexity": ppl, "loss": math.log(ppl)}
        if mode == "chunked":
            record |= {
                "position_bins": [1, length // 2, length],
                "loss_by_position": [5.0, 4.0, 4.0 + growth_of(growth)],
            }
        records.append(record)
    passkey = None
    if mode == "chunked":
        accuracy = [[1.0 if growth and growth < 1.5 else 0.0] * 3 for _ in lengths]
        by_length = [None if growth is None and n > window else row[0] for n, row in zip(lengths, accuracy)]
        passkey = {"lengths": lengths, "depths": [0.0, 0.5, 1.0], "accuracy": accuracy, "accuracy_by_length": by_length}
    model = {"trained_context_length": window, "position_encoding": "fake"}
    return {"model": model, "objective": mode, "lengths": lengths, "perplexity": records, "passkey": passkey}


def growth_of(growth: float | None) -> float:
    return 0.0 if growth is None else growth - 1.0


def swap_study_folder(folder: Path) -> Path:
    """A small results folder in the swap study's shape (see the notebook's first cell)."""
    lengths, window = [64, 128, 256, 512], 64
    gpt2 = {
        "window": window,
        "lengths": lengths,
        "models": {
            "original (no fine-tuning)": fake_result(window, lengths, 40.0, None),
            "rope": fake_result(window, lengths, 41.0, 1.3),
            "alibi": fake_result(window, lengths, 42.0, 1.05),
        },
        "training": {
            "rope": {"in_window_ppl_right_after_swap": 900.0, "eval_loss": 3.7},
            "alibi": {"in_window_ppl_right_after_swap": 300.0, "eval_loss": 3.74},
        },
    }
    record = {"date": "2026-01-01 00:00 UTC", "wall_seconds": 12.0, "gpt2": gpt2}
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(record))
    plot_perplexity(gpt2["models"], lengths, folder / "gpt2_perplexity_vs_length.png")
    return folder


@pytest.mark.parametrize("shape", ["swap_study", "write_report", "masked"])
def test_long_context_notebook_draws_a_results_folder(tmp_path, shape):
    if shape == "swap_study":
        folder = swap_study_folder(tmp_path / "results")
        names, images = ["original (no fine-tuning)", "rope", "alibi"], 2 + 1 + 1 + 1
    elif shape == "masked":  # `hf-posenc eval` of masked-LM encoders: masked-LM perplexity, no passkey
        lengths = [512, 1024]
        models = {
            "original": fake_result(512, lengths, 6.0, None, "masked"),
            "t5_bias": fake_result(512, lengths, 6.5, 1.1, "masked"),
        }
        folder = tmp_path / "results"
        write_report(models, lengths, folder)
        names, images = ["original", "t5_bias"], 3 + len(list(folder.glob("*.png")))
    else:
        lengths = [32, 64, 128]
        models = {"sinusoidal": fake_result(32, lengths, 50.0, 2.0), "nope": fake_result(32, lengths, 55.0, 1.2)}
        folder = tmp_path / "results"
        write_report(models, lengths, folder)
        names, images = ["sinusoidal", "nope"], 4 + len(list(folder.glob("*.png")))
    notebook = execute("long_context.ipynb", tmp_path, {"RESULTS_DIR": str(folder)})
    html = "".join(outputs(notebook, "text/html"))
    for name in names:
        assert name in html
    assert len(outputs(notebook, "image/png")) >= images
    if shape == "swap_study":
        assert "n/a" in html and "900" in html  # the unsupported lengths and the recovery table
    if shape == "masked":
        assert "evaluation: masked perplexity" in "".join(outputs(notebook, "text/markdown")) and "n/a" in html
