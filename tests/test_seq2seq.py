"""Encoder-decoders (BART, mBART): two stacks with an encoding each, cross-attention untouched, cached generation.

The conformance suite runs them too (their `FamilyCase` lines); these are the checks that need two stacks.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertLMHeadModel, DynamicCache, EncoderDecoderCache, StaticCache

import hf_posenc
from hf_posenc import PositionEncodingError
from tests.cases import CASES, ENCODINGS, VOCAB, WINDOW, sharpen

SEQ2SEQ = [c for c in CASES if c.seq2seq]
seq2seq = pytest.mark.parametrize("case", SEQ2SEQ, ids=str)
encodings = pytest.mark.parametrize("encoding", ENCODINGS)
RELATIVE = {"rope", "t5_bias", "alibi", "nope"}


def converted(case, encoding: str, **options):
    torch.manual_seed(0)
    return sharpen(hf_posenc.convert(case.build(), encoding, **options), case).eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@seq2seq
def test_both_tables_go_and_each_stack_gets_its_own_encoding(case):
    torch.manual_seed(0)
    model = case.build()
    tables = {name: model.model.get_submodule(name).embed_positions.weight.detach().clone() for name in STACKS}
    hf_posenc.convert(model, "learned")
    state = model.state_dict()
    assert not any("embed_positions" in key for key in state)
    found = hf_posenc.position_encodings(model)
    assert sorted(found) == ["model.decoder.position_encoding", "model.encoder.position_encoding"]
    encoder, decoder = found["model.encoder.position_encoding"], found["model.decoder.position_encoding"]
    assert (encoder.info.causal, encoder.info.num_heads, encoder.info.num_layers) == (False, 4, 2)
    assert (decoder.info.causal, decoder.info.num_heads, decoder.info.num_layers) == (True, 8, 2)
    for name, encoding in (("encoder", encoder), ("decoder", decoder)):  # BART's offset: position 0 was row 2
        torch.testing.assert_close(encoding.weight[:WINDOW], tables[name][2:], rtol=0, atol=0)
    assert not torch.equal(encoder.weight, decoder.weight)


STACKS = ("encoder", "decoder")


@seq2seq
@encodings
def test_cross_attention_is_untouched(case, encoding):
    """Cross-attention runs its original code (its class's own forward, reached with no position context), and it has
    no positions: permuting the encoder's states (with their mask) leaves the decoder's output unchanged, whatever
    encoding the stacks use."""
    model = converted(case, encoding)
    original_class = type(case.build().model.decoder.layers[0].encoder_attn)
    assert all(isinstance(layer.encoder_attn, original_class) for layer in model.model.decoder.layers)
    source, target = ids(2, 3 * WINDOW), ids(2, 2 * WINDOW, seed=2)
    mask = torch.ones_like(source)
    mask[1, -9:] = 0
    order = torch.randperm(source.shape[1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        states = model.get_encoder()(source, attention_mask=mask).last_hidden_state
        plain = model(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=target).logits
        permuted = model(encoder_outputs=(states[:, order],), attention_mask=mask[:, order], decoder_input_ids=target)
    torch.testing.assert_close(permuted.logits, plain, atol=1e-4, rtol=1e-4)


@seq2seq
@encodings
def test_encoder_is_bidirectional_and_decoder_causal(case, encoding):
    model = converted(case, encoding)
    source, target = ids(1, 2 * WINDOW), ids(1, 2 * WINDOW, seed=2)
    changed_source, changed_target = source.clone(), target.clone()
    changed_source[0, -1] = (source[0, -1] + 1) % VOCAB
    changed_target[0, -1] = (target[0, -1] + 1) % VOCAB
    with torch.no_grad():
        states = model.get_encoder()(source).last_hidden_state
        assert (model.get_encoder()(changed_source).last_hidden_state - states)[0, 0].abs().max() > 1e-4
        logits = model(source, decoder_input_ids=target).logits
        later = model(source, decoder_input_ids=changed_target).logits
    torch.testing.assert_close(later[:, :-1], logits[:, :-1], atol=1e-5, rtol=1e-5)


def caches(model, source_length: int, target_length: int) -> list:
    config = model.config
    return [
        EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config)),
        EncoderDecoderCache(
            StaticCache(config=config, max_cache_len=target_length),
            StaticCache(config=config, max_cache_len=source_length),
        ),
    ]


@seq2seq
@encodings
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cached_decoding_with_an_encoder_decoder_cache_equals_the_full_forward(case, encoding, backend):
    """Past the old window on both sides: a prefix, then one token at a time, reusing the encoder's states and the
    cross-attention keys from the cache."""
    model = converted(case, encoding)
    model.set_attn_implementation(backend)
    source, target = ids(2, 3 * WINDOW), ids(2, 2 * WINDOW + 6, seed=2)
    mask = torch.ones_like(source)
    mask[1, :7] = 0  # left padding on the encoder side
    with torch.no_grad():
        full = model(source, attention_mask=mask, decoder_input_ids=target).logits
        states = model.get_encoder()(source, attention_mask=mask)
        for cache in caches(model, source.shape[1], target.shape[1]):
            prefix = 2 * WINDOW - 4
            kwargs = {"encoder_outputs": states, "attention_mask": mask, "cache": cache, "use_cache": True}
            steps = [model(decoder_input_ids=target[:, :prefix], **kwargs).logits]
            for i in range(prefix, target.shape[1]):
                steps.append(model(decoder_input_ids=target[:, i : i + 1], **kwargs).logits)
            assert (torch.cat(steps, 1) - full).abs().max() < 1e-4, type(cache.self_attention_cache).__name__


@seq2seq
@encodings
def test_generate_with_and_without_cache_and_encoder_left_padding(case, encoding):
    model = converted(case, encoding)
    sources = [ids(1, 2 * WINDOW, seed=3)[0], ids(1, 2 * WINDOW - 13, seed=4)[0]]
    kwargs = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}
    alone = []
    for source in sources:
        with_cache = model.generate(source[None], use_cache=True, **kwargs)
        without = model.generate(source[None], use_cache=False, **kwargs)
        assert torch.equal(with_cache, without)
        alone.append(with_cache[0])
    width = 2 * WINDOW
    batch = torch.full((2, width), case.pad_token_id)
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, source in enumerate(sources):
        batch[row, width - len(source) :], mask[row, width - len(source) :] = source, 1
    together = model.generate(batch, attention_mask=mask, **kwargs)
    for row in range(2):
        assert torch.equal(together[row], alone[row]), f"row {row} changed under left padding"


@seq2seq
@encodings
def test_encoder_left_and_right_padding_agree(case, encoding):
    model = converted(case, encoding)
    tokens = ids(1, 40)[0]
    right, left = torch.full((1, 46), case.pad_token_id), torch.full((1, 46), case.pad_token_id)
    right[0, :40], left[0, 6:] = tokens, tokens
    right_mask, left_mask = (right != case.pad_token_id).long(), (left != case.pad_token_id).long()
    with torch.no_grad():
        out_right = model.get_encoder()(right, attention_mask=right_mask).last_hidden_state[0, :40]
        out_left = model.get_encoder()(left, attention_mask=left_mask).last_hidden_state[0, 6:]
    assert (out_right - out_left).abs().max() < 1e-4


@seq2seq
@encodings
def test_encoder_and_decoder_positions_are_given_separately(case, encoding):
    """`position_ids` move the encoder's positions, `decoder_position_ids` the decoder's: a constant shift of
    either changes nothing for a relative encoding and changes the output for an absolute one."""
    model = converted(case, encoding)
    source, target = ids(2, 40), ids(2, 30, seed=2)
    with torch.no_grad():
        default = model(source, decoder_input_ids=target).logits
        for key, length in (("position_ids", 40), ("decoder_position_ids", 30)):
            positions = torch.arange(length)[None].expand(2, -1)
            explicit = model(source, decoder_input_ids=target, **{key: positions}).logits
            assert (explicit - default).abs().max() < 1e-5, key  # explicit default positions = default
            shifted = model(source, decoder_input_ids=target, **{key: positions + 11}).logits
            change = (shifted - default).abs().max()
            if encoding in RELATIVE:
                assert change < 1e-4, key
            else:  # the encoder's positions reach the logits through cross-attention only: a smaller change
                assert change > 1e-4 * default.abs().max(), key


@seq2seq
@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "learned"])
def test_the_decoder_only_head_caches_and_generates(case, encoding):
    """`...ForCausalLM` (the decoder alone, no cross-attention inputs) converts its one table and caches."""
    head = {"bart": "BartForCausalLM", "mbart": "MBartForCausalLM"}[case.name]
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, head)(case.build().config).eval()
    model = sharpen(hf_posenc.convert(model, encoding), case)
    assert sorted(hf_posenc.position_encodings(model)) == ["model.decoder.position_encoding"]
    input_ids = ids(2, 2 * WINDOW + 4)
    with torch.no_grad():
        full = model(input_ids).logits
        cache = DynamicCache(config=model.config)
        steps = [model(input_ids[:, :WINDOW], cache=cache, use_cache=True).logits]
        for i in range(WINDOW, input_ids.shape[1]):
            steps.append(model(input_ids[:, i : i + 1], cache=cache, use_cache=True).logits)
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-4
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": case.pad_token_id}
    prompt = input_ids[:1, :20]
    assert torch.equal(
        model.generate(prompt, use_cache=True, **kwargs), model.generate(prompt, use_cache=False, **kwargs)
    )


def test_bert_as_a_decoder_with_cross_attention_is_still_refused_untouched():
    config = BertConfig(
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        is_decoder=True,
        add_cross_attention=True,
    )
    model = BertLMHeadModel(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PositionEncodingError, match="cross-attention"):
        hf_posenc.convert(model, "rope")
    assert type(model) is BertLMHeadModel and all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@seq2seq
def test_set_rope_scaling_rescales_every_stack(case):
    """`set_rope_scaling` on an encoder-decoder equals converting with that scaling, in both stacks."""
    scaling = {"rope_type": "linear", "factor": 4.0}
    model, reference = converted(case, "rope"), converted(case, "rope", scaling=scaling)
    hf_posenc.set_rope_scaling(model, scaling)
    assert model.config.position_encoding_options == reference.config.position_encoding_options
    for name, encoding in hf_posenc.position_encodings(model).items():
        assert encoding.config_options["scaling"]["rope_type"] == "linear", name
    source, target = ids(2, 3 * WINDOW), ids(2, 2 * WINDOW, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(
            model(source, decoder_input_ids=target).logits, reference(source, decoder_input_ids=target).logits
        )
