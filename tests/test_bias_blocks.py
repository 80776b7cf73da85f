"""Bias encodings on sdpa with long inputs: each layer folds the bias in block of queries by block, and where the
padding only hides keys, no mask handed to sdpa has a batch dimension. Outputs equal those of one merged mask."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

import hf_posenc
from benchmarks.timing import peak_memory
from hf_posenc.modeling import posenc_base

LENGTH = 48
ENCODINGS = ("rope", "alibi", "t5_bias")


def tiny_bert(encoding: str, is_decoder: bool = False, **shape: int) -> BertModel:
    """A random BERT on sdpa converted to `encoding`, q/k scaled up so that the bias matters."""
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, **shape}
    config = BertConfig(vocab_size=128, max_position_embeddings=64, is_decoder=is_decoder, **sizes)
    config._attn_implementation = "sdpa"
    model = BertModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("query.weight", "key.weight")):
                parameter.mul_(8.0)
    options = {"init": "alibi"} if encoding == "t5_bias" else {}
    return hf_posenc.convert(model, encoding, max_length=4096, **options)


def padding(batch: int, length: int, gap: bool = False) -> torch.Tensor:
    """Full rows, right- and left-padded rows (and, with `gap`, a row whose real tokens are not contiguous)."""
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, length // 2 :] = 0
    mask[2, : length // 3] = 0
    mask[3, length // 4 :] = 0
    if gap:
        mask[0, 5:9] = 0
    return mask


def run(model: BertModel, mask: torch.Tensor | None, budget: int, monkeypatch) -> tuple[torch.Tensor, list]:
    """Last hidden states with `MASK_BLOCK_BYTES = budget`, and the shape of every mask sdpa received."""
    shapes = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        shapes.append(None if attn_mask is None else tuple(attn_mask.shape))
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(posenc_base, "MASK_BLOCK_BYTES", budget)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    ids = torch.randint(5, 128, (4, LENGTH), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    monkeypatch.undo()
    return hidden, shapes


@pytest.mark.parametrize("encoding", ["alibi", "t5_bias"])
@pytest.mark.parametrize(
    ("is_decoder", "gap", "padded"),
    [(False, False, True), (False, True, True), (False, False, False), (True, False, True), (True, False, False)],
)
def test_blocked_bias_matches_one_merged_mask(encoding, is_decoder, gap, padded, monkeypatch):
    model = tiny_bert(encoding, is_decoder)
    mask = padding(4, LENGTH, gap) if padded else None
    whole, whole_shapes = run(model, mask, 2**40, monkeypatch)
    blocked, blocked_shapes = run(model, mask, 3000, monkeypatch)  # a few queries per block, the last one shorter
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-5)
    assert len(blocked_shapes) > len(whole_shapes) == 2  # blocks, against one call per layer
    assert max(shape[-2] for shape in blocked_shapes) < LENGTH
    rows = 4 if padded and (is_decoder or gap) else 1  # no padding, or padding that only hides keys: bias alone
    assert {shape[0] for shape in blocked_shapes} == {rows}
    assert {shape[0] for shape in whole_shapes} == {4 if padded else 1}  # the merged mask: [B or 1, heads, T, T]


def test_minilm_shaped_alibi_peak_memory_within_1_2x_of_rope(monkeypatch):
    """T = 1,024, batch 8 with 4 rows padded to half length, MiniLM's widths (two layers): one no-grad forward. With
    one merged mask ([B, heads, T, T], as before) ALiBi took 3.7x rope's peak at this shape."""
    shape = {"hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536, "num_hidden_layers": 2}
    ids = torch.randint(5, 128, (8, 1024), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[4:, 512:] = 0
    peaks, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, encoding, budget in [*((e, e, None) for e in ENCODINGS), ("merged", "alibi", 2**40)]:
            if budget:
                monkeypatch.setattr(posenc_base, "MASK_BLOCK_BYTES", budget)
            model = tiny_bert(encoding, **shape)
            with torch.no_grad():
                peaks[name] = peak_memory(lambda model=model: model(input_ids=ids, attention_mask=mask))
    finally:
        torch.set_num_threads(threads)
    assert peaks["alibi"] <= 1.2 * peaks["rope"], peaks
    assert peaks["t5_bias"] <= 1.2 * peaks["rope"], peaks
    assert peaks["merged"] > 2 * peaks["rope"], peaks  # the shape tells the two apart


def test_with_gradients_the_layers_share_one_merged_mask(monkeypatch):
    """Under autograd the bias is not built in blocks (each layer would keep its own blocks for the backward pass):
    sdpa gets one call per layer, with the whole merged mask, however small the block budget."""
    model = tiny_bert("alibi")
    monkeypatch.setattr(posenc_base, "MASK_BLOCK_BYTES", 3000)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    ids = torch.randint(5, 128, (4, LENGTH), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, attention_mask=padding(4, LENGTH)).last_hidden_state.sum().backward()
    assert len(calls) == 2 and all(mask.shape[-2] == LENGTH for mask in calls)
