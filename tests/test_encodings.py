"""Each encoding against its peer in transformers (or its closed form), on the same tensors."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPTNeoXConfig, LlamaConfig, T5Config
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as neox_apply_rotary
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.t5.modeling_t5 import T5Attention

import hf_posenc
from hf_posenc import PositionEncodingError
from hf_posenc.modeling.posenc_alibi import ALiBi, alibi_slopes
from hf_posenc.modeling.posenc_base import ModelInfo, merge_bias_with_mask
from hf_posenc.modeling.posenc_learned import LearnedEncoding
from hf_posenc.modeling.posenc_rope import RotaryEncoding
from hf_posenc.modeling.posenc_sinusoidal import sinusoidal_table
from hf_posenc.modeling.posenc_t5_bias import T5RelativeBias
from tests.cases import CASES, sharpen, tiny_bert, tiny_gpt2
from tests.cases import WINDOW as MODEL_WINDOW

HEADS, HEAD_DIM, WINDOW = 4, 32, 64
INFO = ModelInfo(
    hidden_size=HEADS * HEAD_DIM, num_heads=HEADS, num_layers=2, causal=True, trained_context_length=WINDOW
)

SCALINGS = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 4.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
    "longrope": {
        "rope_type": "longrope",
        "short_factor": [1.0 + i / 32 for i in range(HEAD_DIM // 2)],
        "long_factor": [2.0 + i / 16 for i in range(HEAD_DIM // 2)],
    },
}


def rope_encoding(scaling, theta=500.0, partial=1.0) -> RotaryEncoding:
    options = RotaryEncoding.validate({"theta": theta, "scaling": scaling, "partial_rotary_factor": partial}, INFO)
    return RotaryEncoding(options, INFO)


def llama_peer(scaling, theta=500.0) -> LlamaRotaryEmbedding:
    params = {"rope_type": "default", **(scaling or {}), "rope_theta": theta}
    max_positions = WINDOW
    if params["rope_type"] in ("yarn", "longrope", "llama3"):
        params["original_max_position_embeddings"] = WINDOW
        if "factor" in params:
            max_positions = int(WINDOW * params["factor"])
    config = LlamaConfig(
        hidden_size=HEADS * HEAD_DIM,
        num_attention_heads=HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=max_positions,
        rope_parameters=params,
    )
    return LlamaRotaryEmbedding(config)


@pytest.mark.parametrize("rope_type", list(SCALINGS))
@pytest.mark.parametrize("length", [48, 300])  # inside and past the trained window
def test_rope_matches_llama_for_every_rope_type(rope_type, length):
    ours, peer = rope_encoding(SCALINGS[rope_type]), llama_peer(SCALINGS[rope_type])
    position_ids = torch.arange(length)[None] + 3
    x = torch.zeros(1, length, HEAD_DIM)
    cos_ref, sin_ref = peer(x, position_ids)
    cos, sin = ours.rotary(position_ids)
    torch.testing.assert_close(cos, cos_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sin, sin_ref, atol=1e-5, rtol=1e-5)

    q, k = torch.randn(2, HEADS, length, HEAD_DIM), torch.randn(2, HEADS, length, HEAD_DIM)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    q_ours, k_ours = ours.rotate(q, k, *ours.rotation_tables(position_ids, torch.float32))
    torch.testing.assert_close(q_ours, q_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_ours, k_ref, atol=1e-5, rtol=1e-5)


def test_partial_rotary_matches_gpt_neox():
    config = GPTNeoXConfig(
        hidden_size=HEADS * HEAD_DIM,
        num_attention_heads=HEADS,
        max_position_embeddings=WINDOW,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25},
    )
    peer, ours = GPTNeoXRotaryEmbedding(config), rope_encoding(None, partial=0.25)
    position_ids = torch.arange(100)[None]
    cos_ref, sin_ref = peer(torch.zeros(1), position_ids)
    cos, sin = ours.rotary(position_ids)
    torch.testing.assert_close(cos, cos_ref)
    q, k = torch.randn(1, HEADS, 100, HEAD_DIM), torch.randn(1, HEADS, 100, HEAD_DIM)
    q_ref, k_ref = neox_apply_rotary(q, k, cos_ref, sin_ref)
    q_ours, k_ours = ours.rotate(q, k, *ours.rotation_tables(position_ids, torch.float32))
    torch.testing.assert_close(q_ours, q_ref)
    torch.testing.assert_close(k_ours, k_ref)
    assert torch.equal(q_ours[..., 8:], q[..., 8:]), "dimensions past the rotary fraction must pass through"


def test_rope_frequencies_stay_float32_under_bf16():
    ours = rope_encoding(None).to(torch.bfloat16)
    assert ours.inv_freq.dtype == torch.float32
    cos, _ = ours.rotary(torch.arange(4000)[None])
    torch.testing.assert_close(cos, rope_encoding(None).rotary(torch.arange(4000)[None])[0])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("past", [0, 7])
def test_t5_bias_matches_t5_attention(causal, past):
    info = ModelInfo(hidden_size=64, num_heads=HEADS, num_layers=2, causal=causal, trained_context_length=WINDOW)
    options = T5RelativeBias.validate({"num_buckets": 16, "max_distance": 40}, info)
    ours = T5RelativeBias(options, info)
    torch.nn.init.normal_(ours.relative_attention_bias.weight)
    config = T5Config(
        d_model=64, num_heads=HEADS, d_kv=16, relative_attention_num_buckets=16, relative_attention_max_distance=40
    )
    config.is_decoder = causal
    peer = T5Attention(config, has_relative_attention_bias=True)
    peer.relative_attention_bias.weight.data.copy_(ours.relative_attention_bias.weight.data)
    query_length, key_length = 20, 20 + past
    expected = peer.compute_bias(query_length, key_length, past_seen_tokens=past)
    position_ids = torch.arange(past, key_length)[None]
    context = ours(position_ids, past, "sdpa", torch.float32, attention_mask=None, key_length=key_length)
    ours_dense = merge_bias_with_mask(
        context.bias_tables[0], None, False, past, query_length, key_length, torch.float32
    )
    torch.testing.assert_close(ours_dense, expected)


@pytest.mark.parametrize("num_heads", [1, 2, 3, 4, 5, 6, 8, 12, 16, 20, 24])
def test_alibi_slopes_match_bloom(num_heads):
    bloom = build_alibi_tensor(torch.ones(1, 2), num_heads, torch.float32).view(num_heads, 2)[:, 1]
    torch.testing.assert_close(alibi_slopes(num_heads), bloom)


def test_causal_alibi_equals_bloom_after_softmax():
    heads, length = 6, 30
    info = ModelInfo(hidden_size=60, num_heads=heads, num_layers=1, causal=True, trained_context_length=WINDOW)
    ours = ALiBi({}, info)
    context = ours(torch.arange(length)[None], 0, "sdpa", torch.float32, attention_mask=None, key_length=length)
    merged = context.attention_mask(None, 0, length)[0]  # [heads, Q, K] with the causal mask folded in
    scores = torch.randn(heads, length, length)
    bloom = build_alibi_tensor(torch.ones(1, length), heads, torch.float32).view(heads, 1, length)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    expected = torch.softmax(torch.where(causal, scores + bloom, -torch.inf), -1)
    torch.testing.assert_close(torch.softmax(scores + merged, -1), expected)


def test_bidirectional_alibi_is_symmetric():
    info = ModelInfo(hidden_size=64, num_heads=HEADS, num_layers=1, causal=False, trained_context_length=WINDOW)
    context = ALiBi({}, info)(torch.arange(10)[None], 0, "sdpa", torch.float32, attention_mask=None, key_length=10)
    bias = context.attention_mask(None, 0, 10)[0]
    torch.testing.assert_close(bias, bias.transpose(-1, -2))
    assert bias[0, 0, 3] == pytest.approx(-3 * alibi_slopes(HEADS)[0].item())


def test_sinusoidal_matches_closed_form():
    dim, base = 16, 10000.0
    table = sinusoidal_table(torch.tensor([0, 1, 5, 1000]), dim, base)
    for row, pos in enumerate([0, 1, 5, 1000]):
        for i in range(dim // 2):
            angle = pos / base ** (2 * i / dim)
            assert table[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-4)
            assert table[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-4)


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_bert], ids=["gpt2", "bert"])
def test_learned_copy_keeps_the_original_inside_the_old_window(build):
    torch.manual_seed(0)
    original = build()
    ids = torch.randint(3, 100, (2, 32))
    expected = original(ids).logits
    converted = hf_posenc.convert(original, "learned", max_positions=100, method="copy")
    torch.testing.assert_close(converted(ids).logits, expected, atol=0, rtol=0)
    table = converted.base_model.position_encoding.weight
    torch.testing.assert_close(table[32:64], table[:32], atol=0, rtol=0)
    assert converted(torch.randint(3, 100, (1, 100))).logits.shape[1] == 100


def test_learned_interpolate_spreads_the_table():
    torch.manual_seed(0)
    model = tiny_gpt2()
    old = model.transformer.wpe.weight.detach().clone()
    hf_posenc.convert(model, "learned", max_positions=63, method="interpolate")
    new = model.transformer.position_encoding.weight
    torch.testing.assert_close(new[0], old[0])
    torch.testing.assert_close(new[-1], old[-1])
    torch.testing.assert_close(new[31], old[15] / 2 + old[16] / 2, atol=1e-6, rtol=1e-5)


def test_learned_keep_stretch_is_long_clip_knowledge_preserved_stretching():
    """Long-CLIP's table: 77 rows, the first 20 kept, the other 57 stretched linearly over rows 20..247."""
    info = ModelInfo(hidden_size=16, num_heads=2, num_layers=1, causal=True, trained_context_length=77)
    options = LearnedEncoding.validate({"max_positions": 248, "method": "keep_stretch"}, info)
    assert options["keep"] == 20 and not LearnedEncoding.keeps_trained_window(options)
    assert "Only the first 20 rows are the pretrained ones" in LearnedEncoding.describe_limits(options, True)
    encoding = LearnedEncoding(options, info)
    old = torch.randn(77, 16, generator=torch.Generator().manual_seed(0))
    encoding.load_absolute_table(old)
    new = encoding.weight.detach()
    assert new.shape == (248, 16)
    assert torch.equal(new[:20], old[:20])  # kept bit for bit
    torch.testing.assert_close(new[20], old[20])  # the stretched part starts at old row 20 ...
    torch.testing.assert_close(new[-1], old[76])  # ... and ends at old row 76
    # row 20 + j sits at old position 20 + j * 56 / 227; j = 100: 20 + 5600 / 227 = 44.669..., between rows 44 and 45
    where = 20 + 100 * 56 / 227
    low, frac = int(where), where - int(where)
    torch.testing.assert_close(new[120], (1 - frac) * old[low] + frac * old[low + 1], atol=1e-6, rtol=1e-5)
    assert (new[120] - old[low]).abs().max() > 0.1  # an interpolated row, not a copied one
    assert not torch.allclose(new[20:77], old[20:77])  # inside the window, rows from `keep` on moved


def test_learned_keep_stretch_keeps_the_first_rows_of_a_converted_model():
    torch.manual_seed(0)
    model = sharpen(tiny_gpt2(), CASES[0])
    old = model.transformer.wpe.weight.detach().clone()
    ids = torch.randint(3, 100, (1, 32))
    with torch.no_grad():
        expected = model(ids).logits
    hf_posenc.convert(model, "learned", max_positions=100, method="keep_stretch", keep=8)
    assert model.config.position_encoding_options == {"max_positions": 100, "method": "keep_stretch", "keep": 8}
    table = model.transformer.position_encoding.weight
    assert torch.equal(table[:8], old[:8]) and torch.equal(table[-1], old[-1])
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got[:, :8], expected[:, :8], atol=0, rtol=0)  # causal: the first 8 tokens see kept rows
    assert (got[:, 8:] - expected[:, 8:]).abs().max() > 1e-3  # later ones see stretched rows


def test_learned_anchor_keeps_in_window_inputs_exact_and_reads_every_row_past_it(tmp_path):
    """E5-Base-4k's anchors: old row i at row 4i, rows between interpolated; an input inside the old window computes
    exactly what the original did (also after a save and a load with remote code), a longer one reads every row."""
    from transformers import AutoModelForMaskedLM

    bert_case = next(case for case in CASES if case.name == "bert")
    torch.manual_seed(0)
    model = sharpen(tiny_bert(), bert_case)
    old = model.bert.embeddings.position_embeddings.weight.detach().clone()
    ids = torch.randint(3, 100, (2, MODEL_WINDOW))
    with torch.no_grad():
        expected, expected_short = model(ids).logits, model(ids[:, :10]).logits
    hf_posenc.convert(model, "learned", max_positions=4 * MODEL_WINDOW, method="anchor")
    table = model.bert.position_encoding.weight.detach()
    assert torch.equal(table[::4], old) and torch.equal(table[-1], old[-1])
    torch.testing.assert_close(table[1], old[0] + (old[1] - old[0]) / 4, atol=1e-6, rtol=0)  # interpolated between
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, atol=0, rtol=0)
        torch.testing.assert_close(model(ids[:, :10]).logits, expected_short, atol=0, rtol=0)
        long_ids = torch.randint(3, 100, (1, 3 * MODEL_WINDOW))
        longer = model(long_ids).logits
        # a padded batch: the short row (its mask counts its real tokens) keeps the original's rule, the long one not
        batch = torch.zeros(2, 3 * MODEL_WINDOW, dtype=torch.long)
        batch[0, :10], batch[1] = ids[0, :10], long_ids[0]
        mask = (torch.arange(3 * MODEL_WINDOW) < torch.tensor([[10], [3 * MODEL_WINDOW]])).long()
        mixed = model(batch, attention_mask=mask).logits
    assert longer.shape[1] == 3 * MODEL_WINDOW and torch.isfinite(longer).all()
    torch.testing.assert_close(mixed[0, :10], expected_short[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], longer[0], atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "anchor")
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "anchor", trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (tiny_bert, {"max_positions": 3 * MODEL_WINDOW + 1}, "must be a multiple of the trained window"),
        (tiny_gpt2, {}, "'anchor' is for bidirectional encoders, and this model has a causal stack"),
    ],
)
def test_learned_anchor_refuses_what_it_cannot_keep_exact(model, options, message):
    with pytest.raises(PositionEncodingError, match=message):
        hf_posenc.convert(model(), "learned", method="anchor", **options)


@pytest.mark.parametrize("keep", [-1, 32, 40, 2.5, True, "20"])
def test_learned_keep_must_lie_inside_the_old_table(keep):
    model = tiny_gpt2()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PositionEncodingError, match="'keep' must be an integer >= 0 and < the old table's 32 rows"):
        hf_posenc.convert(model, "learned", method="keep_stretch", keep=keep)
    assert type(model).__name__ == "GPT2LMHeadModel" and hasattr(model.transformer, "wpe")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    hf_posenc.convert(tiny_gpt2(), "learned", method="copy", keep=40)  # `keep` is read by keep_stretch only


def test_available_encodings_lists_every_option_with_its_default():
    listed = hf_posenc.available_encodings()
    assert set(listed) == {"rope", "t5_bias", "alibi", "sinusoidal", "learned", "nope"}
    assert listed["rope"]["options"]["theta"]["default"] == 10000.0
    assert listed["t5_bias"]["options"]["num_buckets"]["default"] == 32
    assert listed["t5_bias"]["backends"] == ["eager", "sdpa", "flex_attention"]
    table = hf_posenc.encodings_table()
    for name in listed:
        assert f"`{name}`" in table


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (16, 40), (4, 9)])
def test_t5_bucket_lookup_equals_t5_for_every_distance(causal, num_buckets, max_distance):
    info = ModelInfo(hidden_size=64, num_heads=HEADS, num_layers=2, causal=causal, trained_context_length=WINDOW)
    options = T5RelativeBias.validate({"num_buckets": num_buckets, "max_distance": max_distance}, info)
    distances = torch.arange(-5000, 5001)
    expected = T5Attention._relative_position_bucket(
        distances, bidirectional=not causal, num_buckets=num_buckets, max_distance=max_distance
    )
    assert torch.equal(T5RelativeBias(options, info).buckets(distances), expected)
    pairs = distances[1:].view(2, 5000)
    assert torch.equal(T5RelativeBias(options, info).buckets(pairs), expected[1:].view(2, 5000))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("per_layer", [False, True])
def test_t5_bias_alibi_init_is_alibi_bucketed(causal, per_layer):
    """init="alibi": distances with a bucket of their own get ALiBi's bias exactly (BLOOM's slopes); a shared
    bucket gets the mean ALiBi bias of its distances; every layer's table starts the same."""
    info = ModelInfo(hidden_size=64, num_heads=HEADS, num_layers=2, causal=causal, trained_context_length=WINDOW)
    options = T5RelativeBias.validate(
        {"num_buckets": 16, "max_distance": 40, "init": "alibi", "per_layer": per_layer}, info
    )
    ours = T5RelativeBias(options, info)
    alibi = ALiBi(ALiBi.validate({}, info), info)
    exact = (16 if causal else 8) // 2
    distances = torch.arange(-(exact - 1), exact)
    expected = alibi.distance_bias(distances)[0]
    for table in ours.distance_bias(distances):
        torch.testing.assert_close(table, expected)
    far = torch.arange(-40, 41)
    buckets = ours.buckets(far)
    members = far[buckets == buckets[0]]  # the keys farthest behind share one bucket
    assert len(members) > 1
    shared = ours.distance_bias(far[:1]).detach()[0, :, 0]
    torch.testing.assert_close(shared, alibi.distance_bias(members)[0].mean(-1))
    assert float(shared.abs().min()) > 0
    zeros = T5RelativeBias(T5RelativeBias.validate({}, info), info)
    assert not zeros.relative_attention_bias.weight.any()
    with pytest.raises(hf_posenc.PositionEncodingError, match="'init'"):
        T5RelativeBias.validate({"init": "random"}, info)


def test_t5_bias_alibi_init_survives_save_and_reload(tmp_path):
    from transformers import AutoModelForCausalLM

    model = hf_posenc.convert(tiny_gpt2(), "t5_bias", init="alibi")
    table = model.transformer.position_encoding.relative_attention_bias.weight.detach().clone()
    assert table.abs().sum() > 0
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.transformer.position_encoding.relative_attention_bias.weight, table)
    ids = torch.arange(20)[None]
    torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
