"""Checks that need a CUDA GPU (run with `python -m pytest -m gpu`); skipped elsewhere."""

from __future__ import annotations

import pytest
import torch

import hf_posenc
from tests.cases import CASES, VOCAB, sharpen

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rope_on_flash_attention_2_matches_sdpa_in_bf16(case):
    pytest.importorskip("flash_attn")
    model = sharpen(hf_posenc.convert(case.build(), "rope"), case).to("cuda", torch.bfloat16).eval()
    ids = torch.randint(3, VOCAB, (2, 256), device="cuda")
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        reference = case.outputs(model, ids).float()
        model.set_attn_implementation("flash_attention_2")
        flash = case.outputs(model, ids).float()
    assert (flash - reference).abs().max() < 5e-2 * reference.abs().max()


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "alibi"])
def test_bf16_cuda_forward_is_finite_and_close_to_fp32(case, encoding):
    model = sharpen(hf_posenc.convert(case.build(), encoding), case).to("cuda").eval()
    ids = torch.randint(3, VOCAB, (2, 512), device="cuda")
    with torch.no_grad():
        reference = case.outputs(model, ids)
        half = case.outputs(model.to(torch.bfloat16), ids).float()
    assert torch.isfinite(half).all()
    assert (half - reference).abs().max() < 5e-2 * reference.abs().max()


def test_conversion_aware_training_in_bf16_on_cuda(tmp_path):
    """Distillation, attention transfer and a gradual swap under Accelerate's bf16 on the GPU: the teacher and the
    old table follow the model there, and the saved model is a plain conversion."""
    from safetensors.torch import load_file

    from hf_posenc.training import CausalCollator, TrainConfig, train
    from tests.test_conversion_training import blocks, plain_keys, tiny_gpt2

    methods = {"distill_weight": 1.0, "attention_transfer_weight": 1.0, "gradual_swap_steps": 1}
    cfg = TrainConfig(output_dir=str(tmp_path), block_size=32, batch_size=2, max_steps=2, mixed_precision="bf16",
                      progress=False, **methods)  # fmt: skip
    result = train(hf_posenc.convert(tiny_gpt2(), "rope"), blocks(), None, cfg, CausalCollator())
    assert result["finished"] and next(result["model"].parameters()).device.type == "cuda"
    assert set(load_file(tmp_path / "model.safetensors")) == plain_keys("rope")
