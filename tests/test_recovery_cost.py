"""benchmarks/recovery_cost.py: the quick run's record, ratios against plain fine-tuning of the same repeat, and the
README's sentence from the record."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from benchmarks import recovery_cost


def test_quick_run_times_every_method_against_plain(tmp_path):
    out = tmp_path / "cost.json"
    threads = torch.get_num_threads()
    recovery_cost.main(["--quick", "--out", str(out)])
    assert torch.get_num_threads() == threads  # one thread while measuring, then as it was
    record = json.loads(out.read_text())
    assert record["machine"]["torch"] == torch.__version__
    assert record["machine"]["command"] == f"python -m benchmarks.recovery_cost --quick --out {out}"
    assert record["settings"] == {"steps": 3, "batch_size": 2, "repeats": 1, "window": 256, "threads": 1,
                                  "clock": "cpu", "encoding": "rope"}  # fmt: skip
    (repeat,) = record["repeats"]
    assert list(repeat["seconds"]) == list(recovery_cost.METHODS)
    for name, seconds in repeat["seconds"].items():
        assert len(seconds) == 3 and all(value > 0 for value in seconds)
        median = repeat["methods"][name]["median_s"]
        assert median == statistics.median(seconds[1:])
        assert repeat["methods"][name]["ratio"] == pytest.approx(
            median / statistics.median(repeat["seconds"]["plain"][1:])
        )
    assert (tmp_path / "cost.md").read_text() == recovery_cost.render_markdown(record)


def synthetic(ratios: list[dict[str, float]]) -> dict:
    repeats = [{"methods": {name: {"median_s": 0.5 * r, "ratio": r} for name, r in {"plain": 1.0, **one}.items()}}
               for one in ratios]  # fmt: skip
    return {"settings": {"steps": 12, "batch_size": 4, "window": 256, "threads": 1, "repeats": len(ratios)},
            "repeats": repeats}  # fmt: skip


def test_the_readme_sentence_states_mean_ratios_and_how_far_the_repeats_were_apart():
    first = {"distillation": 1.40, "attention transfer": 1.30, "distillation + attention transfer": 1.44,
             "gradual swap": 1.00}  # fmt: skip
    second = {**first, "distillation": 1.44, "gradual swap": 1.02}
    text = recovery_cost.readme_block(synthetic([first, second]))
    assert text.startswith("The CPU time of a training step on the study base (batch 4 x 256 tokens, 1 thread,")
    assert text.endswith(
        "against plain fine-tuning: distillation x1.42, attention transfer x1.30, both x1.44, the gradual swap x1.01 "
        "(2 repeats agreed within 0.04)."
    )
    assert "agreed" not in recovery_cost.readme_block(synthetic([first]))
