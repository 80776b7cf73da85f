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
