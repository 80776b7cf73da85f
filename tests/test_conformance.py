"""The guarantees every (family x encoding) pair must give, in the spirit of transformers' common model tests."""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from transformers import DynamicCache, StaticCache

import hf_posenc
from hf_posenc import PositionEncodingError
from tests.cases import CASES, ENCODINGS, VOCAB, WINDOW, FamilyCase, position_parameters, sharpen, swap_encodings

RELATIVE = {"rope", "t5_bias", "alibi", "nope"}
BACKENDS = ["eager", "sdpa"]


def converted(case: FamilyCase, encoding: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    model = hf_posenc.convert(case.build(), encoding, **options)
    return sharpen(model, case).eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(case: FamilyCase, model, input_ids, **kwargs) -> torch.Tensor:
    """The head's main output (`case.output`: the logits, or a text encoder's hidden states), without gradients."""
    with torch.no_grad():
        return case.outputs(model, input_ids, **kwargs)


pairs = pytest.mark.parametrize("encoding", ENCODINGS)
families = pytest.mark.parametrize("case", CASES, ids=str)
decoders = pytest.mark.parametrize("case", [c for c in CASES if c.causal and not c.seq2seq], ids=str)
# KV cache and generate: a causal model without them is listed with its reason, as a skip
cached = pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.skip(reason=c.no_cache)) if c.no_cache else c
        for c in CASES
        if c.causal and not c.seq2seq  # encoder-decoders: tests/test_seq2seq.py
    ],
    ids=str,
)
encoders = pytest.mark.parametrize("case", [c for c in CASES if not c.causal and not c.seq2seq], ids=str)


@families
@pairs
def test_other_weights_keep_names_and_bits(case, encoding):
    torch.manual_seed(0)
    model = case.build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hf_posenc.convert(model, encoding)
    after = model.state_dict()
    tables = (case.table_key, *case.more_table_keys)
    assert all(key in before and key not in after for key in tables)
    for key, value in before.items():
        if key not in tables:
            assert torch.equal(after[key], value), key
    new_keys = {k for k in after if k not in before}
    assert all(".position_encoding." in k for k in new_keys), new_keys


@families
@pairs
@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_4x_past_the_window_and_positions_matter(case, encoding, backend):
    model = converted(case, encoding)
    model.set_attn_implementation(backend)
    long = ids(2, 4 * WINDOW)
    out = logits(case, model, long)
    assert out.shape[:2] == (2, 4 * WINDOW) and torch.isfinite(out).all()
    if encoding == "nope":
        return
    baseline = swap_encodings(copy.deepcopy(model), hf_posenc.convert(case.build(), "nope"))
    change = (out - logits(case, baseline, long)).abs().max()
    assert change > 1e-3 * out.abs().max(), f"the encoding must change the output (changed by {change:.2e})"


@families
@pairs
def test_eager_equals_sdpa_with_padding(case, encoding):
    model = converted(case, encoding)
    input_ids, mask = ids(2, 3 * WINDOW), torch.ones(2, 3 * WINDOW, dtype=torch.long)
    mask[1, :10] = 0 if case.causal else 1
    mask[1, -10:] = 1 if case.causal else 0
    results = {}
    for backend in BACKENDS:
        model.set_attn_implementation(backend)
        results[backend] = logits(case, model, input_ids, attention_mask=mask)
        assert model.config.position_encoding == encoding
    real = mask.bool()
    assert (results["eager"] - results["sdpa"])[real].abs().max() < 1e-4


@families
@pairs
def test_shifting_all_positions(case, encoding):
    model = converted(case, encoding)
    input_ids = ids(1, 40)
    positions = torch.arange(40)[None]
    default = logits(case, model, input_ids)
    assert (logits(case, model, input_ids, position_ids=positions) - default).abs().max() < 1e-5  # explicit = default
    shifted = logits(case, model, input_ids, position_ids=positions + 17)
    diff = logits(case, model, input_ids, position_ids=positions) - shifted
    if encoding in RELATIVE:
        assert diff.abs().max() < 1e-4, "a relative encoding must ignore a constant shift of all positions"
    else:
        assert diff.abs().max() > 1e-3 * default.abs().max(), "an absolute encoding must see a shift"
    # positions that restart halfway (two packed documents) change the distances, so every encoding that reads
    # positions must change the output: explicit position_ids are honoured, not replaced by token indices
    restart = torch.cat((torch.arange(20), torch.arange(20)))[None]
    change = (logits(case, model, input_ids, position_ids=restart) - default)[:, 20:].abs().max()
    if encoding == "nope":
        assert change < 1e-5
    else:
        assert change > 1e-3 * default.abs().max(), f"explicit positions must be honoured (changed by {change:.2e})"


@encoders
@pytest.mark.parametrize("encoding", sorted(RELATIVE - {"nope"}))
def test_encoders_follow_explicit_positions_exactly(case, encoding):
    """Permuting the tokens together with their positions permutes the output: attention sees positions, not
    indices (exact for relative encodings in a bidirectional model)."""
    model = converted(case, encoding)
    input_ids = ids(2, 30)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(5))
    positions = torch.arange(30)[None].expand(2, -1)
    for backend in BACKENDS:
        model.set_attn_implementation(backend)
        expected = logits(case, model, input_ids)[:, order]
        permuted = logits(case, model, input_ids[:, order], position_ids=positions[:, order])
        torch.testing.assert_close(permuted, expected, atol=1e-4, rtol=1e-4)
        unpositioned = logits(case, model, input_ids[:, order])
        assert (unpositioned - expected).abs().max() > 1e-3 * expected.abs().max()  # can fail


@cached
@pairs
def test_cached_decoding_with_explicit_positions_equals_full_forward(case, encoding):
    """Cached keys keep the positions they were given: prefill and decode with gapped positions equal one forward."""
    model = converted(case, encoding)
    model.set_attn_implementation("sdpa")
    input_ids = ids(2, WINDOW + 6)
    positions = torch.cat((torch.arange(12), torch.arange(20, 20 + WINDOW - 6)))[None].expand(2, -1)
    positions = positions.clone()
    positions[1] += 3
    if encoding == "learned":
        positions = positions.clamp(max=4 * WINDOW - 1)
    full = logits(case, model, input_ids, position_ids=positions)
    for cache in (DynamicCache(config=model.config), StaticCache(config=model.config, max_cache_len=WINDOW + 8)):
        with torch.no_grad():
            steps = [model(input_ids[:, :16], position_ids=positions[:, :16], cache=cache, use_cache=True).logits]
            for i in range(16, input_ids.shape[1]):
                step = model(input_ids[:, i : i + 1], position_ids=positions[:, i : i + 1], cache=cache, use_cache=True)
                steps.append(step.logits)
        assert (torch.cat(steps, 1) - full).abs().max() < 1e-4, type(cache).__name__
    if encoding != "nope":
        assert (full - logits(case, model, input_ids)).abs().max() > 1e-3 * full.abs().max()  # the gap changes it


@decoders
@pairs
@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_forward_with_left_padding_equals_each_row_alone(case, encoding, backend):
    """No position_ids: positions are counted over the attention mask, as generate would count them."""
    model = converted(case, encoding)
    model.set_attn_implementation(backend)
    rows = [ids(1, 2 * WINDOW, seed=7)[0], ids(1, 2 * WINDOW - 11, seed=8)[0]]
    batch = torch.full((2, 2 * WINDOW), case.pad_token_id)
    mask = torch.zeros(2, 2 * WINDOW, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, 2 * WINDOW - len(row) :], mask[i, 2 * WINDOW - len(row) :] = row, 1
    together = logits(case, model, batch, attention_mask=mask)
    for i, row in enumerate(rows):
        alone = logits(case, model, row[None])[0]
        assert (together[i, 2 * WINDOW - len(row) :] - alone).abs().max() < 1e-4, f"row {i}"


@cached
@pairs
@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_decoding_equals_full_forward(case, encoding, backend):
    model = converted(case, encoding)
    model.set_attn_implementation(backend)
    input_ids = ids(2, 2 * WINDOW + 6)
    full = logits(case, model, input_ids)
    for cache in (DynamicCache(config=model.config), StaticCache(config=model.config, max_cache_len=2 * WINDOW + 8)):
        with torch.no_grad():
            prefix = 2 * WINDOW - 4
            steps = [model(input_ids[:, :prefix], cache=cache, use_cache=True).logits]
            for i in range(prefix, input_ids.shape[1]):
                steps.append(model(input_ids[:, i : i + 1], cache=cache, use_cache=True).logits)
        assert (torch.cat(steps, 1) - full).abs().max() < 1e-4, type(cache).__name__


@cached
@pairs
def test_generate_with_and_without_cache_and_left_padding(case, encoding):
    model = converted(case, encoding)
    prompts = [ids(1, 12, seed=3)[0], ids(1, 7, seed=4)[0]]
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": case.pad_token_id}
    alone = []
    for prompt in prompts:
        with_cache = model.generate(prompt[None], use_cache=True, **kwargs)
        without = model.generate(prompt[None], use_cache=False, **kwargs)
        assert torch.equal(with_cache, without)
        alone.append(with_cache[0, len(prompt) :])
    batch = torch.full((2, 12), case.pad_token_id)
    mask = torch.zeros(2, 12, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        batch[row, 12 - len(prompt) :], mask[row, 12 - len(prompt) :] = prompt, 1
    together = model.generate(batch, attention_mask=mask, **kwargs)[:, 12:]
    for row in range(2):
        assert torch.equal(together[row], alone[row]), f"row {row} changed under left padding"


@encoders
@pairs
def test_left_and_right_padding_agree(case, encoding):
    model = converted(case, encoding)
    tokens = ids(1, 20)[0]
    right, left = torch.zeros(1, 26, dtype=torch.long), torch.zeros(1, 26, dtype=torch.long)
    right[0, :20], left[0, 6:] = tokens, tokens
    right_mask, left_mask = (right != 0).long(), (left != 0).long()
    out_right = logits(case, model, right, attention_mask=right_mask)[0, :20]
    out_left = logits(case, model, left, attention_mask=left_mask)[0, 6:]
    assert (out_right - out_left).abs().max() < 1e-4


@families
@pairs
def test_save_and_reload_bit_identical(case, encoding, tmp_path):
    model = converted(case, encoding)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["position_encoding"] == encoding and config["trained_context_length"] == WINDOW
    assert config["auto_map"][case.auto_class].startswith("modeling_posenc_")
    reloaded = getattr(transformers, case.auto_class).from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert sorted(loaded) == sorted(saved)  # by key: no tensor missing, none extra, whatever the order
    for name, tensor in saved.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    long = ids(1, 2 * WINDOW)
    assert torch.equal(logits(case, model, long), logits(case, reloaded, long))


REMOTE_CHECK = """
import sys
sys.modules["hf_posenc"] = None  # not importable: only torch and transformers
import json, torch, transformers
for folder, auto_class, output, tower in json.loads(sys.argv[1]):
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    ids = torch.load(folder + "/ids.pt")
    with torch.no_grad():
        diff = ((getattr(model, tower) if tower else model)(ids)[output] - torch.load(folder + "/logits.pt"))
        diff = diff.abs().max().item()
    print(folder, diff)
    assert diff == 0.0, (folder, diff)
"""


@families
def test_loads_with_trust_remote_code_without_hf_posenc(case, tmp_path):
    jobs = []
    for encoding in ENCODINGS:
        folder = tmp_path / encoding
        model = converted(case, encoding)
        model.save_pretrained(folder)
        input_ids = ids(1, 2 * WINDOW)
        torch.save(input_ids, folder / "ids.pt")
        torch.save(logits(case, model, input_ids), folder / "logits.pt")
        jobs.append((str(folder), case.auto_class, case.output, case.tower))
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # no sharing with parallel runs
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REMOTE_CHECK), json.dumps(jobs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" 0.0") == len(ENCODINGS)


@families
@pairs
def test_peft_lora_trains_saves_reloads_and_merges(case, encoding, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = converted(case, encoding)
    has_position_params = bool(position_parameters(model))
    lora = LoraConfig(
        r=4,
        target_modules=list(case.lora_targets),
        fan_in_fan_out=case.lora_fan_in_fan_out,
        modules_to_save=["position_encoding"] if has_position_params else None,
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    input_ids = ids(2, WINDOW + 8)
    loss = case.loss(peft_model, input_ids)
    loss.backward()
    if has_position_params:
        grads = [p.grad for n, p in peft_model.named_parameters() if "position_encoding" in n and p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    optimizer.step()
    peft_model.eval()
    trained = logits(case, peft_model, input_ids)
    peft_model.save_pretrained(tmp_path / "adapter")

    base = converted(case, encoding)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(logits(case, reloaded, input_ids), trained, atol=1e-5, rtol=1e-5)
    merged = reloaded.merge_and_unload()
    # merging rounds W + BA anew in float32, which the sharpened attention amplifies: up to 1.3e-4 of the output's
    # scale for CLIP's layer-normed hidden states (in float64 merged and unmerged agree to 1e-13)
    tolerance = max(1e-4, 2e-4 * trained.abs().max().item())
    torch.testing.assert_close(logits(case, merged, input_ids), trained, atol=tolerance, rtol=1e-4)


@families
def test_learned_without_extension_refuses_past_its_table(case):
    model = converted(case, "learned", max_positions=WINDOW)
    with pytest.raises(PositionEncodingError, match="past the learned table"):
        logits(case, model, ids(1, 4 * WINDOW))


BAD_OPTIONS = [
    ("bogus", {}, "Unknown position encoding 'bogus'"),
    ("rope", {"theta": 0}, "'theta' must be a positive number"),
    ("rope", {"theta": -5.0}, "'theta' must be a positive number"),
    ("rope", {"partial_rotary_factor": 0.03}, "rotary dimension"),
    ("rope", {"partial_rotary_factor": 1.5}, "rotary dimension"),
    ("rope", {"scaling": {"rope_type": "linear"}}, "Invalid RoPE scaling"),
    ("rope", {"scaling": {"rope_type": "magic", "factor": 2.0}}, "'rope_type' in"),
    ("rope", {"base": 3}, "Unknown option"),
    ("t5_bias", {"num_buckets": 1}, "'num_buckets' must be an integer"),
    ("t5_bias", {"max_distance": 2}, "'max_distance' must be an integer larger"),
    ("learned", {"max_positions": 8}, "'max_positions' must be an integer"),
    ("learned", {"method": "nearest"}, "'method' must be one of"),
    ("sinusoidal", {"scale": -1.0}, "'scale' must be a positive number"),
]


def fingerprint(model):
    return type(model), model.config.to_json_string(), {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    cls, config, state = before
    assert type(model) is cls and model.config.to_json_string() == config
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)


@families
@pytest.mark.parametrize("encoding,options,message", BAD_OPTIONS, ids=[f"{e}-{m[:20]}" for e, _, m in BAD_OPTIONS])
def test_bad_options_raise_before_touching_the_model(case, encoding, options, message):
    model = case.build()
    before = fingerprint(model)
    with pytest.raises(PositionEncodingError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        hf_posenc.convert(model, encoding, **options)
    assert "\n" not in str(err.value)
    assert_unchanged(model, before)


@families
def test_converting_twice_or_a_peft_model_is_refused(case):
    from peft import LoraConfig, get_peft_model

    model = hf_posenc.convert(case.build(), "rope")
    before = fingerprint(model)
    with pytest.raises(PositionEncodingError, match="already converted"):
        hf_posenc.convert(model, "alibi")
    assert_unchanged(model, before)
    wrapped = get_peft_model(case.build(), LoraConfig(target_modules=list(case.lora_targets), r=2))
    before = fingerprint(wrapped)
    with pytest.raises(PositionEncodingError, match="wrapped by PEFT"):
        hf_posenc.convert(wrapped, "rope")
    assert_unchanged(wrapped, before)


STRICT = "sdpa_strict"  # a name under "sdpa", so that the bias encodings accept it as a backend that adds scores


def documented_attention_keywords() -> frozenset[str]:
    """What transformers documents an attention function may receive besides (module, query, key, value, mask): the
    keywords a layer passes on (`TransformersKwargs`) and the named parameters of transformers' own functions."""
    from transformers.utils.generic import TransformersKwargs

    named = set()
    for function in transformers.AttentionInterface._global_mapping.values():
        parameters = list(inspect.signature(function).parameters.values())[5:]
        named |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return frozenset(TransformersKwargs.__required_keys__ | TransformersKwargs.__optional_keys__ | named)


@pytest.fixture(scope="module")
def strict_attention():
    """Registers STRICT: sdpa that raises on any keyword outside the documented set. Yields the modules it ran for."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    allowed = documented_attention_keywords()
    seen: list[torch.nn.Module] = []

    def strict(module, query, key, value, attention_mask, **kwargs):
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(f"{type(module).__name__} passed undocumented attention keywords {unknown}")
        seen.append(module)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    transformers.AttentionInterface.register(STRICT, strict)
    AttentionMaskInterface.register(STRICT, sdpa_mask)
    yield seen
    transformers.AttentionInterface._global_mapping.pop(STRICT)
    AttentionMaskInterface._global_mapping.pop(STRICT)


@families
@pairs
def test_attention_functions_get_only_documented_keywords(case, encoding, strict_attention):
    """Self- and cross-attention, a padded forward and (where the family generates) cached generation, through an
    attention function that refuses undocumented keywords; the outputs are sdpa's."""
    model = converted(case, encoding)
    batch = ids(2, WINDOW + 8)
    mask = torch.ones_like(batch)
    mask[1, : WINDOW // 2] = 0  # left padding in the second row
    model.set_attn_implementation("sdpa")
    expected = logits(case, model, batch, attention_mask=mask)
    model.set_attn_implementation(STRICT)
    strict_attention.clear()
    torch.testing.assert_close(logits(case, model, batch, attention_mask=mask), expected, rtol=0, atol=0)
    ran = {id(module) for module in strict_attention}
    if case.seq2seq:  # every decoder layer's cross-attention went through it too
        layers = model.get_decoder().layers
        assert layers and all(id(layer.encoder_attn) in ran for layer in layers)
    assert ran
    if case.causal and not case.no_cache:
        model.generate(batch, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=case.pad_token_id)
