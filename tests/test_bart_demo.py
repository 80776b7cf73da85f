"""The BART denoising demo (`recipes/bart_denoising_demo.py`) and its collator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hf_posenc.training import DenoisingCollator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

import bart_denoising_demo  # noqa: E402


def test_denoising_collator_masks_a_fraction_and_keeps_the_original_as_labels():
    rows = [{"input_ids": torch.arange(3, 3 + 500) % 97 + 3, "block": i} for i in range(4)]
    torch.manual_seed(0)
    batch = DenoisingCollator(mask_id=200, decoder_start_token_id=2, probability=0.3)(rows)
    original = torch.stack([row["input_ids"] for row in rows])
    assert torch.equal(batch["labels"], original) and batch["block"].tolist() == [0, 1, 2, 3]
    assert (batch["decoder_input_ids"][:, 0] == 2).all()
    assert torch.equal(batch["decoder_input_ids"][:, 1:], original[:, :-1])  # the clean block, shifted right
    masked = batch["input_ids"] == 200
    assert 0.25 < masked.float().mean() < 0.35
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    with pytest.raises(ValueError, match="masking probability"):
        DenoisingCollator(mask_id=200, decoder_start_token_id=2, probability=0.0)


def test_denoising_evaluation_reads_the_same_decoder_inputs_as_training():
    """`evaluate_loss` holds the labels back: the decoder must still read the clean block, as in training."""
    from transformers import BartConfig, BartForConditionalGeneration

    from hf_posenc.training import TrainConfig
    from hf_posenc.training.loop import evaluate_loss, make_accelerator

    config = BartConfig(
        vocab_size=64,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=16,
        pad_token_id=1,
        decoder_start_token_id=2,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    rows = [{"input_ids": torch.randint(3, 63, (16,))} for _ in range(4)]
    collator, seen = DenoisingCollator(mask_id=63, decoder_start_token_id=2), []

    class Recording:
        causal = collator.causal

        def __call__(self, batch_rows):
            seen.append(collator(batch_rows))
            return dict(seen[-1])

    cfg = TrainConfig(output_dir="unused", block_size=16, batch_size=4, seed=0).check()
    loss = evaluate_loss(model, rows, cfg, Recording(), make_accelerator(cfg))
    (batch,) = seen
    model.eval()  # evaluate_loss hands the model back in training mode
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss  # the model shifts the labels
        noisy = model(input_ids=batch["input_ids"]).logits  # no labels: BART would shift the noised input
    assert abs(loss - float(expected)) < 1e-5
    wrong = torch.nn.functional.cross_entropy(noisy.flatten(0, 1), batch["labels"].flatten())
    assert abs(loss - float(wrong)) > 1e-3  # the check can fail


def test_quick_setting_end_to_end(tmp_path):
    record = bart_denoising_demo.run("quick", tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"] == json.loads(json.dumps(record["results"]))
    assert (tmp_path / "reconstruction.png").stat().st_size > 0 and "| rope |" in (tmp_path / "results.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconstruction.png", "results.json", "results.md"]
    steps = str(bart_denoising_demo.SETTINGS["quick"]["finetune_steps"])
    for name in bart_denoising_demo.ENCODINGS:
        for step in ("0", steps):
            assert sorted(record["results"][name][step]) == ["1", "2", "4"]
    # the copy extension (LED's) leaves the model exactly as it was inside the old window
    assert record["results"]["learned"]["0"]["1"] == record["results"]["original"]["0"]["1"]
    rope, original = record["results"]["rope"]["0"]["1"], record["results"]["original"]["0"]["1"]
    assert rope["loss"] != original["loss"]  # a real swap
    # each swap is also fine-tuned with conversion-aware recovery, from the same conversion and data order
    for name in ("rope", "alibi", "t5_bias"):
        recovered = record["results"][name + bart_denoising_demo.RECOVERED]
        assert recovered["0"] == record["results"][name]["0"] and sorted(recovered[steps]) == ["1", "2", "4"]
        assert recovered[steps]["1"] != record["results"][name][steps]["1"]
    assert "learned" + bart_denoising_demo.RECOVERED not in record["results"]
    findings = bart_denoising_demo.readme_findings(record)
    assert "**Conversion-aware fine-tuning**" in findings and "rope; plain fine-tuning" in findings
