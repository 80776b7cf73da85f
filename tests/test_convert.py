"""convert(): registration, config, backends, training paths, and the models it refuses."""

from __future__ import annotations

import copy
import json
import logging
import warnings

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

import hf_posenc
from hf_posenc import PositionEncodingError
from hf_posenc.evaluation import max_context
from tests.cases import (
    CASES,
    VOCAB,
    WINDOW,
    position_parameters,
    sharpen,
    tiny_bert,
    tiny_gpt2,
    transformers_warnings,
)

GPT2, BERT = CASES[0], CASES[1]


def test_convert_returns_the_same_object_and_records_the_encoding():
    model = tiny_gpt2()
    assert hf_posenc.convert(model, "t5_bias", num_buckets=16, max_distance=64) is model
    config = model.config
    assert config.model_type == "posenc_gpt2"
    assert config.position_encoding == "t5_bias"
    assert config.position_encoding_options == {
        "num_buckets": 16,
        "max_distance": 64,
        "per_layer": False,
        "init": "zeros",
    }
    assert config.trained_context_length == WINDOW
    assert config.architectures == ["PosEncGPT2LMHeadModel"]
    assert all(module.config is config for module in model.modules() if hasattr(module, "config"))


def test_config_round_trips_through_json_and_auto_config(tmp_path):
    model = hf_posenc.convert(tiny_bert(), "rope", theta=500.0, partial_rotary_factor=0.5)
    model.config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "posenc_bert"
    assert raw["position_encoding_options"] == {"theta": 500.0, "partial_rotary_factor": 0.5, "scaling": None}
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "PosEncBertConfig" and loaded.position_encoding == "rope"
    assert AutoConfig.for_model("posenc_gpt2").model_type == "posenc_gpt2"


def test_convert_declares_a_maximum_length_that_generate_sees():
    assert all("max_length" not in spec["options"] for spec in hf_posenc.available_encodings().values())
    gpt2 = hf_posenc.convert(tiny_gpt2(), "rope")
    assert gpt2.config.n_positions == gpt2.config.max_position_embeddings == 4 * WINDOW  # the default
    assert gpt2.config.trained_context_length == WINDOW and max_context(gpt2) is None
    prompt = torch.randint(3, VOCAB, (1, 2 * WINDOW))
    with pytest.warns(UserWarning, match=r"default `max_length` \(=84\)"):  # 64 + 20, capped at the declared 128
        generated = gpt2.generate(prompt, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == 2 * WINDOW + 20

    bert = hf_posenc.convert(tiny_bert(), "alibi", max_length=1000)
    assert bert.config.max_position_embeddings == 1000 and bert.config.trained_context_length == WINDOW
    assert hf_posenc.declare_max_length(bert, 2048) == 2048 and bert.config.max_position_embeddings == 2048
    learned = hf_posenc.convert(tiny_bert(), "learned", max_positions=3 * WINDOW)
    assert learned.config.max_position_embeddings == 3 * WINDOW == max_context(learned)  # default: the table
    hf_posenc.declare_max_length(learned, 2 * WINDOW)
    assert learned.config.max_position_embeddings == 2 * WINDOW and max_context(learned) == 3 * WINDOW
    with pytest.raises(PositionEncodingError, match="past the 96 rows of the learned position table"):
        hf_posenc.declare_max_length(learned, 3 * WINDOW + 1)
    with pytest.raises(PositionEncodingError, match="Only a converted model"):
        hf_posenc.declare_max_length(tiny_bert(), 64)


@pytest.mark.parametrize(
    "max_length,message",
    [(4 * WINDOW + 1, "past the 128 rows of the learned position table"), (0, "positive"), (True, "positive")],
)
def test_a_max_length_past_the_learned_table_is_refused_untouched(max_length, message):
    model = tiny_gpt2()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PositionEncodingError, match=message):
        hf_posenc.convert(model, "learned", max_length=max_length)  # the table defaults to 4x the window
    assert type(model) is GPT2LMHeadModel and model.config.model_type == "gpt2" and model.config.n_positions == WINDOW
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    "cls,config",
    [
        (GPT2Model, GPT2Config),
        (GPT2ForSequenceClassification, GPT2Config),
        (GPT2ForTokenClassification, GPT2Config),
        (BertModel, BertConfig),
        (BertForSequenceClassification, BertConfig),
        (BertForTokenClassification, BertConfig),
        (BertForQuestionAnswering, BertConfig),
    ],
)
def test_every_head_converts_runs_long_and_reloads(cls, config, tmp_path):
    small = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "vocab_size": VOCAB}
    if config is GPT2Config:
        cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=WINDOW, vocab_size=VOCAB, pad_token_id=0)
    else:
        cfg = BertConfig(**small, intermediate_size=64, max_position_embeddings=WINDOW)
    torch.manual_seed(0)
    model = hf_posenc.convert(cls(cfg).eval(), "alibi")
    assert type(model).__name__ == "PosEnc" + cls.__name__
    ids = torch.randint(3, VOCAB, (2, 4 * WINDOW))
    out = model(ids)
    first = out[0]
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(ids)[0], first)


def test_auto_classes_load_other_heads_of_a_saved_checkpoint(tmp_path):
    hf_posenc.convert(tiny_gpt2(), "rope").save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "PosEncGPT2Model"
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)).__name__ == "PosEncGPT2LMHeadModel"
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert type(classifier).__name__ == "PosEncGPT2ForSequenceClassification"


def test_from_pretrained_attn_implementation_keeps_the_encoding(tmp_path):
    model = sharpen(hf_posenc.convert(tiny_gpt2(), "rope"), GPT2)
    model.save_pretrained(tmp_path)
    ids = torch.randint(3, VOCAB, (1, 2 * WINDOW))
    outs = {}
    for backend in ("eager", "sdpa"):
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=backend).eval()
        assert loaded.config._attn_implementation == backend
        with torch.no_grad():
            outs[backend] = loaded(ids).logits
            shifted = loaded(ids, position_ids=torch.arange(2 * WINDOW)[None].flip(-1)).logits
        assert (outs[backend] - shifted).abs().max() > 1e-3, "positions must still matter"
    assert (outs["eager"] - outs["sdpa"]).abs().max() < 1e-4


@pytest.mark.parametrize("encoding", ["t5_bias", "alibi"])
def test_flash_attention_with_a_bias_is_refused_clearly(encoding):
    model = hf_posenc.convert(tiny_gpt2(), encoding)
    model.config._attn_implementation_internal = "flash_attention_2"
    expected = "cannot run on the 'flash_attention_2'.*eager, sdpa, flex_attention"
    with pytest.raises(PositionEncodingError, match=expected):
        model(torch.randint(3, VOCAB, (1, 8)))
    fresh = tiny_gpt2()
    fresh.config._attn_implementation_internal = "flash_attention_2"
    with pytest.raises(PositionEncodingError, match="flash_attention_2"):
        hf_posenc.convert(fresh, encoding)
    assert type(fresh).__name__ == "GPT2LMHeadModel" and hasattr(fresh.transformer, "wpe")


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "alibi"])
def test_flex_attention_matches_sdpa(case, encoding):
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = sharpen(hf_posenc.convert(case.build(), encoding), case).eval()
    ids = torch.randint(3, VOCAB, (2, 64))
    restart = torch.cat((torch.arange(32), torch.arange(32)))[None].expand(2, -1)  # explicit positions, per pair
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        reference, reference_restart = case.outputs(model, ids), case.outputs(model, ids, position_ids=restart)
        model.set_attn_implementation("flex_attention")
        flex, flex_restart = case.outputs(model, ids), case.outputs(model, ids, position_ids=restart)
    assert (flex - reference).abs().max() < 1e-4
    assert (flex_restart - reference_restart).abs().max() < 1e-4


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("encoding", ["t5_bias", "learned"])
def test_loss_reaches_the_new_position_parameters(case, encoding):
    model = hf_posenc.convert(case.build(), encoding).train()
    ids = torch.randint(3, VOCAB, (2, 2 * WINDOW))
    case.loss(model, ids).backward()
    grads = [p.grad for p in position_parameters(model)]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(case):
    torch.manual_seed(0)
    model = sharpen(hf_posenc.convert(case.build(), "t5_bias"), case)
    model.config.attn_pdrop = model.config.resid_pdrop = model.config.embd_pdrop = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ids = torch.randint(3, VOCAB, (2, 40))
    results = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        loss = case.loss(model, ids)
        loss.backward()
        tables = position_parameters(model)  # relative_attention_bias of every stack
        results.append((loss.detach(), torch.cat([table.grad.flatten() for table in tables])))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("encoding", ["rope", "t5_bias"])
def test_torch_compile_gives_the_same_logits(encoding):
    model = sharpen(hf_posenc.convert(tiny_gpt2(), encoding), GPT2).eval()
    ids = torch.randint(3, VOCAB, (1, 48))
    with torch.no_grad():
        eager = model(ids).logits
        compiled = torch.compile(model, fullgraph=True)(ids).logits
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


# FamilyCase.bf16_tolerance: 0.03 of the largest |fp32 logit| for the LM-style heads, where the worst case measured
# over CASES x encodings is 0.013; CLIP's text tower returns layer-normed hidden states, which bf16 moves more


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("encoding", ["rope", "t5_bias", "alibi", "sinusoidal"])
def test_bf16_logits_match_fp32_and_backward_is_finite(case, encoding):
    """bf16 outputs stay within `case.bf16_tolerance` x the largest |fp32 output| of the fp32 ones at 10x the window.

    bf16 keeps 8 significant bits (0.4%), and the error adds up over the layers. Positions run past 256, where
    bf16 can no longer hold every integer, so positions or angles computed in bf16 show. q/k are sharpened 4x
    rather than the suite's 16x: that peaked, bf16 rounding alone moves even an unconverted GPT-2's logits by 5%.
    """
    torch.manual_seed(0)
    model = sharpen(hf_posenc.convert(case.build(), encoding), case, factor=4.0).eval()
    ids = torch.randint(3, VOCAB, (2, 10 * WINDOW), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = case.outputs(model, ids)
        half = case.outputs(model.to(torch.bfloat16), ids)
    assert half.dtype == torch.bfloat16
    error, scale = (half.float() - reference).abs().max().item(), reference.abs().max().item()
    assert error <= case.bf16_tolerance * scale, f"bf16 differs from fp32 by {error:.4g}, logits' scale {scale:.4g}"
    model.train()
    loss = case.loss(model, ids)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: T5ForConditionalGeneration(T5Config(num_layers=1, d_model=32, d_ff=64, num_heads=2)), "'t5'"),
        (
            lambda: LlamaForCausalLM(
                LlamaConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2)
            ),
            "'llama'",
        ),
        (lambda: torch.nn.Linear(2, 2), "None"),
    ],
    ids=["t5", "llama", "not-a-transformer"],
)
def test_unsupported_models_are_refused_untouched(build, message):
    model = build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PositionEncodingError, match=f"Unsupported model type {message}.*Supported: gpt2, bert"):
        hf_posenc.convert(model, "rope")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_cross_attention_models_are_refused():
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=WINDOW, add_cross_attention=True)
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(config)
    with pytest.raises(PositionEncodingError, match="cross-attention"):
        hf_posenc.convert(model, "rope")
    assert hasattr(model.transformer, "wpe")


def test_nope_on_an_encoder_warns_once_in_one_plain_line(caplog):
    with warnings.catch_warnings(record=True) as python_warnings:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING):
            hf_posenc.convert(tiny_bert(), "nope")
            hf_posenc.convert(tiny_gpt2(), "nope")  # a decoder keeps order through its causal mask: no warning
    assert [w for w in python_warnings if "order" in str(w.message)] == []  # not a UserWarning with a file path
    (record,) = [r for r in caplog.records if "nope" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name.endswith("posenc_nope")
    assert record.getMessage().startswith("'nope' on a bidirectional encoder removes all order information")


def test_causal_lm_heads_declare_their_loss(tmp_path):
    """transformers picks the loss from the class name and finds none in `GPT2LMHeadModel` or `BertLMHeadModel`:
    converted (live or reloaded), they declare the causal-LM loss they compute instead of warning at their first
    loss; other heads keep the loss transformers found for them."""
    config = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=WINDOW, vocab_size=VOCAB, is_decoder=True)  # fmt: skip
    causal = [hf_posenc.convert(tiny_gpt2(), "rope"), hf_posenc.convert(BertLMHeadModel(config).eval(), "alibi")]
    causal[0].save_pretrained(tmp_path)
    causal.append(AutoModelForCausalLM.from_pretrained(tmp_path).eval())
    ids = torch.randint(3, VOCAB, (2, 8))
    with transformers_warnings() as seen:
        for model in causal:
            out = model(input_ids=ids, labels=ids)
            expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
            assert model.loss_type == "ForCausalLM" and torch.allclose(out.loss, expected)
    assert seen == []
    classifier = hf_posenc.convert(GPT2ForSequenceClassification(tiny_gpt2().config), "rope")
    assert classifier.loss_type == "ForSequenceClassification"
    assert hf_posenc.convert(GPT2Model(tiny_gpt2().config), "rope").loss_type is None


def test_generate_past_the_old_window_is_quiet_until_the_declared_length():
    """transformers' "exceeded the model's predefined maximum length" reminder reads max_position_embeddings, which
    holds the declared length (4x the window by default), not the old window."""
    from transformers.generation import stopping_criteria
    from transformers.utils import logging as transformers_logging

    def reminders(model, new_tokens: int) -> list[str]:
        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: seen.append(record.getMessage())
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_warning()  # whatever an earlier test set
        stopping_criteria.logger.addHandler(handler)
        try:
            prompt = torch.randint(3, VOCAB, (1, 4))
            model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        finally:
            stopping_criteria.logger.removeHandler(handler)
            transformers_logging.set_verbosity(verbosity)
        return [message for message in seen if "predefined maximum length" in message]

    model = hf_posenc.convert(tiny_gpt2(), "rope").eval()
    assert reminders(model, 4 * WINDOW - 4) == []  # to 4x the old window
    hf_posenc.declare_max_length(model, 3 * WINDOW + 1)  # a length no other test declares (the reminder warns once)
    assert len(reminders(model, 3 * WINDOW + 4)) == 1  # past the declared length it says so


def test_a_new_encoding_is_one_registered_class():
    from hf_posenc.modeling.posenc_base import _REGISTRY, Option, PositionEncoding, register_encoding

    @register_encoding
    class WindowBias(PositionEncoding):
        """Hard local window: keys further back than `window` are strongly penalised."""

        name = "test_window"
        kind = "bias"
        relative = True
        description = "test-only window bias"
        options = {"window": Option(4, "how far back a query looks")}

        def distance_bias(self, distances):
            far = (-distances) > self.config_options["window"]
            return torch.where(far, -1e4, 0.0).expand(1, self.info.num_heads, *distances.shape)

    try:
        assert "test_window" in hf_posenc.available_encodings()
        model = sharpen(hf_posenc.convert(tiny_gpt2(), "test_window", window=2), GPT2)
        ids = torch.randint(3, VOCAB, (1, 20))
        changed = ids.clone()
        changed[0, 0] = (ids[0, 0] + 1) % VOCAB
        with torch.no_grad():
            # the last position sees only 3 tokens back in every layer, so token 0 cannot reach it
            torch.testing.assert_close(model(ids).logits[0, -1], model(changed).logits[0, -1])
            assert (model(ids).logits[0, 1] - model(changed).logits[0, 1]).abs().max() > 1e-4
    finally:
        _REGISTRY.pop("test_window")


def test_an_odd_rotary_dimension_is_refused():
    model = tiny_gpt2()  # heads of 16 dims: 0.3125 * 16 = 5 rotary dims
    with pytest.raises(PositionEncodingError, match="rotary dimension of 5"):
        hf_posenc.convert(model, "rope", partial_rotary_factor=0.3125)
    assert hasattr(model.transformer, "wpe")


@pytest.mark.parametrize("encoding", ["t5_bias", "alibi"])
def test_generate_keeps_the_shared_distance_table_for_bias_encodings(encoding):
    """generate's positions are the model's own: the bias stays one [heads, distances] table, not one per row and
    (query, key) pair, and a left-padded row still generates what it generates alone."""
    model = sharpen(hf_posenc.convert(tiny_gpt2(), encoding, per_layer=True) if encoding == "t5_bias" else
                    hf_posenc.convert(tiny_gpt2(), encoding), GPT2).eval()  # fmt: skip
    shapes = []
    original = type(model.transformer.position_encoding).distance_bias

    def recording(self, distances):
        shapes.append(tuple(distances.shape))
        return original(self, distances)

    prompts = [torch.randint(3, VOCAB, (12,)), torch.randint(3, VOCAB, (7,))]
    batch, mask = torch.zeros(2, 12, dtype=torch.long), torch.zeros(2, 12, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        batch[row, 12 - len(prompt) :], mask[row, 12 - len(prompt) :] = prompt, 1
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(model.transformer.position_encoding), "distance_bias", recording)
        together = model.generate(batch, attention_mask=mask, **kwargs)
    assert shapes and all(len(shape) == 1 for shape in shapes), shapes
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], **kwargs)
        assert torch.equal(together[row, 12:], alone[0, len(prompt) :])


@pytest.mark.parametrize("rope_type", ["linear", "yarn"])
def test_set_rope_scaling_equals_converting_with_that_scaling(rope_type, tmp_path):
    """Scaling a rope model at inference gives the logits of a model converted with that scaling from the start, is
    saved with the model, and None returns to plain rope."""
    scaling = {"rope_type": rope_type, "factor": 4.0}
    torch.manual_seed(0)
    original = tiny_gpt2()
    plain = sharpen(hf_posenc.convert(copy.deepcopy(original), "rope"), GPT2).eval()
    direct = hf_posenc.convert(copy.deepcopy(original), "rope", scaling=scaling)
    direct.load_state_dict(plain.state_dict())
    ids = torch.randint(0, VOCAB, (1, 4 * WINDOW))
    with torch.no_grad():
        before = plain(ids).logits
        hf_posenc.set_rope_scaling(plain, scaling, max_length=4 * WINDOW)
        scaled = plain(ids).logits
        torch.testing.assert_close(scaled, direct.eval()(ids).logits)
    assert (scaled - before).abs().max() > 1e-3  # the scaling changes what the model computes
    assert plain.config.position_encoding_options["scaling"]["rope_type"] == scaling["rope_type"]
    assert plain.config.max_position_embeddings == 4 * WINDOW
    plain.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, scaled)
        hf_posenc.set_rope_scaling(plain, None)
        torch.testing.assert_close(plain(ids).logits, before)


def test_set_rope_scaling_refuses_before_changing_anything():
    alibi = hf_posenc.convert(tiny_gpt2(), "alibi")
    with pytest.raises(PositionEncodingError, match="converted to rope"):
        hf_posenc.set_rope_scaling(alibi, {"rope_type": "linear", "factor": 2.0})
    rope = hf_posenc.convert(tiny_gpt2(), "rope")
    encoding, options = rope.transformer.position_encoding, dict(rope.config.position_encoding_options)
    with pytest.raises(PositionEncodingError, match="scaling"):
        hf_posenc.set_rope_scaling(rope, {"rope_type": "no-such-type"})
    with pytest.raises(PositionEncodingError, match="max_length"):
        hf_posenc.set_rope_scaling(rope, {"rope_type": "linear", "factor": 2.0}, max_length=0)
    assert rope.transformer.position_encoding is encoding and rope.config.position_encoding_options == options


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_model_converted_in_place_returns_attentions_and_hidden_states(case):
    """transformers captures attentions and hidden states by the model's class, registered when a model is built;
    a model converted in place returns the same ones as one built as converted."""
    torch.manual_seed(0)
    model = case.build()
    model.set_attn_implementation("eager")
    hf_posenc.convert(model, "alibi")
    built = type(model)(copy.deepcopy(model.config)).eval()
    built.load_state_dict(model.state_dict())
    ids = torch.randint(3, VOCAB, (1, 8))

    def captured(m):
        out = case.text_part(m)(ids, output_attentions=True, output_hidden_states=True)
        return {key: [t.shape for t in value] for key, value in out.items() if "attentions" in key or "hidden" in key}

    expected = captured(built)
    assert any("attentions" in key and value for key, value in expected.items())
    assert captured(model) == expected
