"""The patched attention traces into one graph: torch._dynamo.explain finds no graph break."""

from __future__ import annotations

import pytest
import torch

import hf_posenc
from tests.cases import VOCAB, tiny_bert, tiny_gpt2

BUILDERS = {"gpt2": tiny_gpt2, "bert": tiny_bert}


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "alibi"])
def test_converted_forward_has_no_graph_breaks_on_sdpa(family, encoding):
    model = hf_posenc.convert(BUILDERS[family](), encoding)
    model.set_attn_implementation("sdpa")
    input_ids = torch.randint(3, VOCAB, (2, 16))
    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(input_ids, use_cache=False)
        eager = model(input_ids, use_cache=False).logits
    reasons = [str(reason.reason)[:200] for reason in explanation.break_reasons]
    assert explanation.graph_count >= 1, "dynamo traced nothing"
    assert explanation.graph_break_count == 0, reasons
    assert torch.isfinite(eager).all()
