"""Recovery-curve bookkeeping: where a run is probed, what a probe records, and the mean +- std over seeds."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from hf_posenc.evaluation.recovery import curve_summary, log_spaced_steps, mean_std, tokens_to_recover
from hf_posenc.training import CausalCollator, TrainConfig, train


@pytest.mark.parametrize(
    "max_steps, points, expected",
    [
        (147, 6, [0, 5, 9, 18, 37, 74, 147]),
        (8, 4, [0, 1, 2, 4, 8]),
        (3, 3, [0, 1, 2, 3]),
        (10, 1, [0, 10]),
        (5, 5, [0, 1, 2, 3, 4, 5]),  # crowded near 1: taken steps move to free ones, below or above
        (8, 6, [0, 1, 2, 3, 4, 5, 8]),
        (1000, 5, [0, 62, 125, 250, 500, 1000]),  # the ratio is capped at 2
    ],
)
def test_probe_steps_double_back_from_the_full_budget(max_steps, points, expected):
    steps = log_spaced_steps(max_steps, points)
    assert steps == expected
    assert steps[-1] == max_steps and len(set(steps)) == points + 1


def test_probe_steps_refuse_what_cannot_fit():
    with pytest.raises(ValueError, match="do not fit"):
        log_spaced_steps(3, 4)
    with pytest.raises(ValueError, match=">= 1"):
        log_spaced_steps(0, 2)


def test_mean_and_sample_std_skip_missing_values():
    assert mean_std([1.0, 2.0, None, 3.0]) == (2.0, statistics.stdev([1.0, 2.0, 3.0]))
    assert mean_std([5.0]) == (5.0, 0.0) and mean_std([None, float("nan")]) == (None, None)


def runs(*curves: list[float]) -> list[list[dict]]:
    return [[{"step": s, "tokens": 100 * s, "perplexity": p} for s, p in zip((0, 1, 2, 4), curve)] for curve in curves]


def test_curve_summary_and_tokens_to_recover():
    summary = curve_summary(runs([30.0, 22.0, 20.6, 20.1], [34.0, 24.0, 20.4, 19.9]))
    assert [p["tokens"] for p in summary] == [0, 100, 200, 400]
    assert summary[0]["mean"] == 32.0 and math.isclose(summary[0]["std"], statistics.stdev([30.0, 34.0]))
    assert summary[2]["values"] == [20.6, 20.4]
    assert tokens_to_recover(summary, 20.0) == 400  # 20.5 at 200 tokens is 2.5% above 20.0
    assert tokens_to_recover(summary, 20.0, tolerance=0.03) == 200
    assert tokens_to_recover(summary, 15.0) is None  # not within the budget


def test_runs_probed_at_different_steps_are_refused():
    mismatched = runs([1.0, 1.0, 1.0, 1.0]) + [[{"step": 0, "tokens": 0, "perplexity": 1.0}]]
    with pytest.raises(ValueError, match="different steps"):
        curve_summary(mismatched)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_training_probes_the_model_at_the_listed_steps(tmp_path, precision):
    """Probes run before the first step (step 0) and after the listed optimizer steps, on the model as trained so
    far and in full precision even when training autocasts; the last one sees the weights that are saved."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    import datasets

    blocks = datasets.Dataset.from_dict({"input_ids": torch.randint(0, 64, (48, 16)).tolist()}).with_format("torch")
    probe_input = torch.randint(0, 64, (2, 16))
    seen_modes = []

    def probe(m):
        seen_modes.append((m.training, torch.is_grad_enabled()))
        return {"loss": float(m(input_ids=probe_input, labels=probe_input).loss)}

    initial = float(model.eval()(input_ids=probe_input, labels=probe_input).loss)
    model.train()
    cfg = TrainConfig(output_dir=str(tmp_path), block_size=16, batch_size=4, learning_rate=1e-2, max_steps=6,
                      log_every=100, progress=False, mixed_precision=precision).check()  # fmt: skip
    result = train(model, blocks, None, cfg, CausalCollator(), probe=probe, probe_steps=[0, 2, 6])
    probes = result["probes"]
    assert [(p["step"], p["tokens"]) for p in probes] == [(0, 0), (2, 2 * 64), (6, 6 * 64)]
    assert probes[0]["loss"] == pytest.approx(initial, abs=1e-6)
    final = result["model"].eval()
    assert probes[-1]["loss"] == pytest.approx(float(final(input_ids=probe_input, labels=probe_input).loss), abs=1e-5)
    assert len({p["loss"] for p in probes}) == 3  # each probe saw other weights
    assert seen_modes == [(False, False)] * 3  # eval mode, no gradients
    logged = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"probe"' in line]
    assert len(logged) == 3
    # the returned model is a plain transformers model again: its own forward, decorators included
    assert "forward" not in final.__dict__ and "_original_forward" not in final.__dict__
    as_tuple = final(input_ids=probe_input, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], final(input_ids=probe_input).logits)


def test_cpu_time_per_token_leaves_the_probes_out(tmp_path):
    import time

    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    blocks = datasets.Dataset.from_dict({"input_ids": torch.randint(0, 64, (16, 16)).tolist()}).with_format("torch")

    def probe(m):  # two CPU seconds per probe, far more than the tiny run's training
        began = time.process_time()
        while time.process_time() - began < 2.0:
            pass
        return {}

    cfg = TrainConfig(output_dir=str(tmp_path), block_size=16, batch_size=4, max_steps=2, log_every=100,
                      progress=False).check()  # fmt: skip
    began = time.process_time()
    result = train(model, blocks, None, cfg, CausalCollator(), probe=probe, probe_steps=[0, 1, 2])
    total = time.process_time() - began
    assert total > 6.0
    assert 0 < result["cpu_seconds"] < total - 5.9
    assert result["cpu_seconds_per_token"] == pytest.approx(result["cpu_seconds"] / (2 * 64))
