"""What the conformance suite does not see per family: the original's own numbers, every head, GPT-Neo's window."""

from __future__ import annotations

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

import hf_posenc
from tests.cases import CASES, VOCAB, WINDOW, tiny_clip_text_config

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
    with torch.no_grad():
        expected = case.outputs(original, input_ids, attention_mask=mask)
        converted = hf_posenc.convert(original, "learned")
        assert converted.config.trained_context_length == WINDOW
        got = case.outputs(converted, input_ids, attention_mask=mask)
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
    if case.seq2seq and "SequenceClassification" in head.__name__:
        input_ids[..., -1] = model.config.eos_token_id  # (m)BART classifies at the last end-of-sequence token
    out = first_output(case.text_part(model), input_ids)
    assert torch.isfinite(out).all()
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(first_output(case.text_part(reloaded), input_ids), out)


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


CLIP_WINDOW = 77  # CLIP's text window


def tiny_clip(head, eos_token_id: int = VOCAB - 1):
    config = tiny_clip_text_config(CLIP_WINDOW, eos_token_id)
    torch.manual_seed(0)
    model = head(config).eval()
    with torch.no_grad():  # sharpened, so that a wrong position row shows
        for name, param in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(16.0)
    return model


def clip_prompts(length: int, eos_at: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Start token, text, one end-of-text token at each row's `eos_at`, then padding (and the padding mask)."""
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, VOCAB - 1, (len(eos_at), length), generator=generator)
    mask = torch.ones_like(input_ids)
    input_ids[:, 0] = 1
    for row, eos in enumerate(eos_at):
        input_ids[row, eos], input_ids[row, eos + 1 :], mask[row, eos + 1 :] = VOCAB - 1, 0, 0
    return input_ids, mask


CLIP_HEADS = ["CLIPTextModel", "CLIPTextModelWithProjection"]


@pytest.mark.parametrize("head", CLIP_HEADS)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_clip_learned_copy_equals_the_original_bit_for_bit_inside_77_tokens(head, backend):
    import transformers

    original = tiny_clip(getattr(transformers, head))
    original.set_attn_implementation(backend)
    input_ids, mask = clip_prompts(CLIP_WINDOW, [76, 40])
    real = mask.bool()
    with torch.no_grad():
        expected = [original(input_ids), original(input_ids, attention_mask=mask)]
        model = hf_posenc.convert(original, "learned", method="copy")
        got = [model(input_ids), model(input_ids, attention_mask=mask)]
    assert model.config.trained_context_length == CLIP_WINDOW
    for before, after in zip(expected, got):
        assert torch.equal(after.last_hidden_state[real], before.last_hidden_state[real])
        pooled = "text_embeds" if head.endswith("Projection") else "pooler_output"
        assert torch.equal(after[pooled], before[pooled])
    # without a mask every row is exact (padding included): positions are 0..76 as in CLIP
    assert torch.equal(got[0].last_hidden_state, expected[0].last_hidden_state)


@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "alibi", "sinusoidal", "learned", "nope"])
@pytest.mark.parametrize("head", CLIP_HEADS)
@pytest.mark.parametrize("eos_token_id", [VOCAB - 1, 2], ids=["first-eos", "legacy-argmax"])
def test_clip_pools_at_the_end_of_text_token_past_77_tokens(encoding, head, eos_token_id):
    """A 120-token prompt whose end-of-text token is at 110 pools the hidden state at 110 (both of CLIP's pooling rules:
    the first `eos_token_id`, and for configs with eos_token_id=2 the largest id, which CLIP's end-of-text is)."""
    import transformers

    model = hf_posenc.convert(tiny_clip(getattr(transformers, head), eos_token_id), encoding)
    input_ids, mask = clip_prompts(120, [110, 90])
    with torch.no_grad():
        out = model(input_ids, attention_mask=mask)
        unmasked = model(input_ids)  # CLIP is causal: padding after the end-of-text token cannot reach it
        base = model.base_model(input_ids, attention_mask=mask)
    hidden = base.last_hidden_state
    for row, eos in enumerate([110, 90]):
        assert torch.equal(base.pooler_output[row], hidden[row, eos])
        assert (hidden[row, eos] - hidden[row, -1]).abs().max() > 1e-3  # the test can tell the rows apart
        assert (hidden[row, eos] - hidden[row, CLIP_WINDOW - 1]).abs().max() > 1e-3
    if head.endswith("Projection"):
        torch.testing.assert_close(out.text_embeds, model.text_projection(hidden[[0, 1], [110, 90]]))
        torch.testing.assert_close(unmasked.text_embeds, out.text_embeds, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(unmasked.pooler_output, out.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "learned"])
def test_clip_with_both_towers_converts_the_text_tower_and_leaves_the_vision_tower_bit_for_bit(encoding, tmp_path):
    from transformers import AutoModel, CLIPModel

    from tests.cases import tiny_clip as tiny_two_towers

    torch.manual_seed(0)
    model = tiny_two_towers()
    untouched = ("vision_model.", "visual_projection.", "text_projection.", "logit_scale")
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(untouched)}
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
    hf_posenc.convert(model, encoding)
    assert type(model).__name__ == "PosEncCLIPModel" and type(model.vision_model).__name__ == "CLIPVisionModel"
    assert sorted(hf_posenc.position_encodings(model)) == ["text_model.position_encoding"]
    assert model.config.text_config.position_encoding == encoding == model.config.position_encoding
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items())
    input_ids, mask = clip_prompts(4 * WINDOW, [4 * WINDOW - 5, 50])  # past the text tower's old window
    with torch.no_grad():
        assert torch.equal(model.get_image_features(pixel_values=pixels).pooler_output, image)
        out = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels)
        text = model.get_text_features(input_ids=input_ids, attention_mask=mask).pooler_output
    assert out.logits_per_text.shape == (2, 2) and torch.isfinite(out.logits_per_text).all()
    torch.testing.assert_close(out.text_embeds, torch.nn.functional.normalize(text, dim=-1))
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model) and isinstance(reloaded, CLIPModel)
    with torch.no_grad():
        again = reloaded(input_ids=input_ids, attention_mask=mask, pixel_values=pixels)
    assert torch.equal(again.logits_per_text, out.logits_per_text)


def test_clip_base_model_loads_a_projection_checkpoint(tmp_path):
    """As transformers does for CLIPTextModel, AutoModel reads a CLIPTextModelWithProjection checkpoint's text tower."""
    from transformers import AutoModel, CLIPTextModelWithProjection

    model = hf_posenc.convert(tiny_clip(CLIPTextModelWithProjection), "t5_bias")
    with torch.no_grad():
        model.text_model.position_encoding.relative_attention_bias.weight.normal_()
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base).__name__ == "PosEncCLIPTextModel"
    input_ids, _ = clip_prompts(100, [90])
    with torch.no_grad():
        assert torch.equal(base(input_ids).pooler_output, model.text_model(input_ids).pooler_output)


def test_clip_text_config_follows_the_top_level_encoding_and_the_tower_loads_alone(tmp_path):
    """What conversion resolves (sinusoidal's scale) and what is declared later reach `text_config`, which a text
    tower saved or loaded on its own reads."""
    from tests.cases import tiny_clip as tiny_two_towers

    torch.manual_seed(0)
    model = hf_posenc.convert(tiny_two_towers(), "sinusoidal")
    text_config = model.config.text_config
    assert text_config.position_encoding_options == model.config.position_encoding_options
    assert text_config.position_encoding_options["scale"] != "auto"
    hf_posenc.declare_max_length(model, 100)
    assert text_config.max_position_embeddings == 100
    model.save_pretrained(tmp_path)
    tower = type(model.text_model).from_pretrained(tmp_path).eval()
    input_ids, mask = clip_prompts(3 * WINDOW, [3 * WINDOW - 4, 40])
    with torch.no_grad():
        expected = model.text_model(input_ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(tower(input_ids, attention_mask=mask).last_hidden_state, expected)
