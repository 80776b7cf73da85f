"""What the conformance suite does not see per family: the original's own numbers, every head, GPT-Neo's window."""

from __future__ import annotations

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

import hf_posenc
from tests.cases import CASES, VOCAB, WINDOW

RELATIVE = ["rope", "t5_bias", "alibi", "nope"]


def first_output(model, input_ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, **kwargs)[0]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_learned_conversion_reproduces_the_original_with_padding(case):
    """RoBERTa (rows from padding_idx + 1) and OPT (rows from 2) must land on the same rows after conversion."""
    torch.manual_seed(0)
    original = case.build()
    input_ids = torch.randint(3, VOCAB, (2, WINDOW))
    mask = torch.ones_like(input_ids)
    input_ids[1, -6:], mask[1, -6:] = case.pad_token_id, 0  # right padding keeps every family's positions
    expected = first_output(original, input_ids, attention_mask=mask)
    converted = hf_posenc.convert(original, "learned")
    assert converted.config.trained_context_length == WINDOW
    got = first_output(converted, input_ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


def heads():
    for case in CASES:
        family = hf_posenc.family_of(case.build())
        for original in family.heads:
            yield pytest.param(case, original, id=f"{case.name}-{original.__name__}")


@pytest.mark.parametrize("case,head", list(heads()))
def test_every_head_converts_runs_long_and_reloads(case, head, tmp_path):
    torch.manual_seed(0)
    model = hf_posenc.convert(head(case.build().config).eval(), "alibi")
    assert type(model).__name__ == "PosEnc" + head.__name__
    shape = (1, 2, 4 * WINDOW) if "MultipleChoice" in head.__name__ else (1, 4 * WINDOW)
    input_ids = torch.randint(3, VOCAB, shape)
    out = first_output(model, input_ids)
    assert torch.isfinite(out).all()
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(first_output(reloaded, input_ids), out)


@pytest.mark.parametrize("encoding", [*RELATIVE, "sinusoidal", "learned"])
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_gpt_neo_local_layers_keep_their_window_past_the_trained_length(encoding, backend):
    window = 8
    config = GPTNeoConfig(
        num_layers=1,
        hidden_size=64,
        num_heads=4,
        attention_types=[[["local"], 1]],
        window_size=window,
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = hf_posenc.convert(GPTNeoForCausalLM(config).eval(), encoding)
    model.set_attn_implementation(backend)
    input_ids = torch.randint(3, VOCAB, (1, 4 * WINDOW))
    last = input_ids.shape[1] - 1
    reference = first_output(model, input_ids)[0, last]

    def changed_at(position: int) -> float:
        edited = input_ids.clone()
        edited[0, position] = (edited[0, position] + 1) % VOCAB
        return (first_output(model, edited)[0, last] - reference).abs().max().item()

    assert changed_at(last - window) == 0.0, "a token outside the window reached the last query"
    assert changed_at(last - window + 1) > 0.0, "a token inside the window did not reach the last query"
