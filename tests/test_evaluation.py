"""hf_posenc.evaluation: perplexity (chunked, sliding), masked-LM loss, passkey scoring, limits, and the report."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

import hf_posenc
from hf_posenc import data
from hf_posenc.evaluation import (
    build_prompt,
    chunked_perplexity,
    evaluate_long_context,
    masked_lm_loss,
    max_context,
    passkey_retrieval,
    sliding_window_perplexity,
    write_report,
)


@pytest.fixture(scope="module")
def tokenizer():
    return data.gpt2_tokenizer()


def tiny_gpt2(positions: int = 32, vocab: int = 50257) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=positions, vocab_size=vocab)
    return GPT2LMHeadModel(config).eval()


def reference_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """Per-token next-token NLL straight from transformers' own loss, for one sequence."""
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none")


def test_chunked_perplexity_matches_the_model_loss():
    model = tiny_gpt2(vocab=100)
    docs = [torch.randint(0, 100, (70,)), torch.randint(0, 100, (40,))]
    record = chunked_perplexity(model, docs, 16, max_tokens=10_000)
    chunks = [docs[0][i : i + 16] for i in range(0, 64, 16)] + [docs[1][i : i + 16] for i in range(0, 32, 16)]
    expected = torch.cat([reference_nll(model, c) for c in chunks]).mean()
    assert record["status"] == "ok" and record["chunks"] == 6 and record["tokens"] == 6 * 15
    assert record["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert record["perplexity"] == pytest.approx(math.exp(float(expected)), rel=1e-5)
    assert len(record["loss_by_position"]) == len(record["position_bins"]) == 15


def test_sliding_window_scores_every_token_once_with_context():
    model = tiny_gpt2(vocab=100)
    doc = torch.randint(0, 100, (50,))
    record = sliding_window_perplexity(model, [doc], 16, stride=8, max_tokens=10_000)
    # window [0,16) scores tokens 1..15; then windows ending at 24, 32, 40, 48, 50 score their new tokens
    losses = list(reference_nll(model, doc[0:16]))
    for begin, end, new in ((8, 24, 8), (16, 32, 8), (24, 40, 8), (32, 48, 8), (40, 50, 2)):
        losses += list(reference_nll(model, doc[begin:end])[-new:])
    assert record["tokens"] == 49 == len(losses)
    assert record["loss"] == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)


def test_max_tokens_is_a_cap_on_the_tokens_scored():
    model = tiny_gpt2(vocab=100)
    docs = [torch.randint(0, 100, (n,)) for n in (70, 12, 300, 40)]  # the 12-token one is too short for a window
    for max_tokens in (1, 7, 50, 64, 100):
        sliding = sliding_window_perplexity(model, docs, 16, stride=8, max_tokens=max_tokens)
        chunked = chunked_perplexity(model, docs, 16, max_tokens=max_tokens)
        assert 0 < sliding["tokens"] <= max_tokens and chunked["tokens"] <= max(max_tokens, 15), max_tokens
    assert sliding_window_perplexity(model, docs, 16, stride=8, max_tokens=100)["tokens"] == 100  # the budget is used
    everything = sliding_window_perplexity(model, docs, 16, stride=8, max_tokens=10_000)["tokens"]
    assert everything == (70 - 1) + (300 - 1) + (40 - 1)  # an ample budget scores every token once


def test_lengths_past_the_learned_table_are_reported_not_crashed():
    model = tiny_gpt2(positions=32, vocab=100)
    docs = [torch.randint(0, 100, (200,))]
    assert max_context(model) == 32
    assert chunked_perplexity(model, docs, 64)["status"] == "unsupported"
    assert sliding_window_perplexity(model, docs, 64)["status"] == "unsupported"
    hf_posenc.convert(model, "alibi")
    assert max_context(model) is None
    assert chunked_perplexity(model, docs, 64)["status"] == "ok"
    assert chunked_perplexity(model, docs, 256)["status"] == "too_short"


def test_passkey_prompt_has_exact_length_and_key_at_depth(tokenizer):
    for depth in (0.0, 0.5, 1.0):
        prompt, answer = build_prompt(tokenizer, 200, depth, 12345)
        assert len(prompt) + len(answer) <= 200
        assert len(prompt) + len(answer) > 200 - 30  # filled up to a filler sentence
        text = tokenizer.decode(prompt)
        assert text.count("The pass key is 12345.") == 1 and text.endswith("The pass key is")
        assert tokenizer.decode(answer).strip() == "12345"
    early = tokenizer.decode(build_prompt(tokenizer, 200, 0.0, 1)[0]).index("pass key is 1.")
    late = tokenizer.decode(build_prompt(tokenizer, 200, 1.0, 1)[0]).index("pass key is 1.")
    assert early < late
    assert build_prompt(tokenizer, 20, 0.5, 12345) is None


class CopyOracle(torch.nn.Module):
    """Predicts each next token perfectly (a model that always retrieves); wrong when `broken`."""

    def __init__(self, positions: int, broken: bool = False):
        super().__init__()
        self.config = GPT2Config(n_positions=positions)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.broken = broken

    def can_generate(self) -> bool:
        return True

    def forward(self, input_ids, use_cache=False, logits_to_keep=0):
        target = torch.roll(input_ids, -1, 1) + (1 if self.broken else 0)
        target = target[:, -logits_to_keep:] if logits_to_keep else target
        return type("Output", (), {"logits": torch.nn.functional.one_hot(target % 50257, 50257).float()})()


def test_passkey_scoring_counts_exact_greedy_retrieval(tokenizer):
    perfect = passkey_retrieval(CopyOracle(1024), tokenizer, [128, 256], trials=2)
    assert perfect["accuracy"] == [[1.0] * 5, [1.0] * 5]
    wrong = passkey_retrieval(CopyOracle(1024, broken=True), tokenizer, [128], trials=2)
    assert wrong["accuracy"] == [[0.0] * 5] and wrong["token_accuracy"] == [[0.0] * 5]
    limited = passkey_retrieval(CopyOracle(128), tokenizer, [128, 256], trials=1)
    assert limited["accuracy"][1] == [None] * 5 and limited["accuracy_by_length"] == [1.0, None]


def test_masked_lm_loss_and_limits():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertForMaskedLM(config).eval()
    docs = [torch.randint(5, 120, (300,))]
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].clone()), with_kwargs=True)
    ok = masked_lm_loss(model, docs, 64, mask_token_id=4, special_ids=(1, 2))
    hook.remove()
    # Independently: each chunk is [CLS] + the next 62 document tokens + [SEP]; the masked tokens are those the
    # model saw as [MASK] (4 never occurs in docs); the loss is transformers' own masked-LM loss against the
    # original tokens there.
    inputs = torch.cat(seen)
    rows = inputs.shape[0]
    body = docs[0][: rows * 62].view(rows, 62)
    chunks = torch.cat([torch.full((rows, 1), 1), body, torch.full((rows, 1), 2)], dim=1)
    masked = inputs == 4
    assert rows == 300 // 62 and torch.equal(inputs[~masked], chunks[~masked])
    assert not masked[:, [0, -1]].any() and 0.05 < masked.float().mean() < 0.3
    with torch.no_grad():
        expected = model(input_ids=inputs, labels=chunks.masked_fill(~masked, -100)).loss.item()
    assert ok["status"] == "ok" and ok["tokens"] == int(masked.sum())
    assert ok["loss"] == pytest.approx(expected, rel=1e-5) and ok["perplexity"] == pytest.approx(math.exp(expected))
    again = masked_lm_loss(model, docs, 64, mask_token_id=4, special_ids=(1, 2))
    assert again["loss"] == ok["loss"]  # the masking is seeded
    assert masked_lm_loss(model, docs, 128, mask_token_id=4)["status"] == "unsupported"
    hf_posenc.convert(model, "rope")
    assert masked_lm_loss(model, docs, 128, mask_token_id=4)["status"] == "ok"


def test_evaluate_long_context_writes_report(tmp_path, tokenizer):
    model = tiny_gpt2(positions=32)
    texts = [data.text("austen_persuasion")[:6000]]
    result = evaluate_long_context(
        model, tokenizer, texts, [32, 64], out_dir=tmp_path, max_tokens=256, passkey_trials=1, name="tiny"
    )
    statuses = {(r["length"], r["mode"]): r["status"] for r in result["perplexity"]}
    assert statuses == {
        (32, "chunked"): "ok",
        (32, "sliding"): "ok",
        (64, "chunked"): "unsupported",
        (64, "sliding"): "unsupported",
    }
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["models"]["tiny"]["perplexity"] == result["perplexity"]
    assert "| `tiny` |" in (tmp_path / "results.md").read_text()
    for png in ("perplexity_vs_length.png", "loss_by_position.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="No evaluation text"):
        evaluate_long_context(model, tokenizer, [" "], [32])


def test_passkey_runs_only_at_the_lengths_asked_for(tokenizer):
    """`passkey_lengths` picks the lengths passkey runs at (perplexity still at every length); none among them: no
    passkey at all."""
    model = hf_posenc.convert(tiny_gpt2(positions=64), "rope")
    texts = [data.text("austen_persuasion")[:6000]]
    kwargs = {"max_tokens": 128, "passkey_trials": 1, "passkey_depths": (0.5,), "sliding": False, "progress": False}
    found = evaluate_long_context(model, tokenizer, texts, [64, 128], passkey_lengths=[64], **kwargs)
    assert found["passkey"]["lengths"] == [64] and len(found["passkey"]["hits"]) == 1
    assert [r["length"] for r in found["perplexity"]] == [64, 128]
    assert evaluate_long_context(model, tokenizer, texts, [64, 128], **kwargs)["passkey"]["lengths"] == [64, 128]
    assert evaluate_long_context(model, tokenizer, texts, [128], passkey_lengths=[64], **kwargs)["passkey"] is None


def test_write_report_compares_models(tmp_path):
    def fake(ppl_by_length):
        records = [
            {
                "length": n,
                "mode": "chunked",
                "status": "ok" if p else "unsupported",
                "perplexity": p,
                "loss": 1.0,
                "position_bins": [1, 2],
                "loss_by_position": [1.0, 2.0],
            }
            for n, p in ppl_by_length.items()
        ]
        return {"model": {"trained_context_length": 8}, "perplexity": records, "passkey": None}

    results = {"a": fake({8: 10.0, 16: None}), "b": fake({8: 12.5, 16: 13.0})}
    write_report(results, [8, 16], tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "| `a` | 10.00 | n/a (positions) |" in table and "| `b` | 12.50 | 13.00 |" in table


def dropout_models() -> dict[str, torch.nn.Module]:
    """A tiny GPT-2 (with GPT-2's vocabulary, for prompts and texts) and a tiny BERT, each with heavy dropout."""
    torch.manual_seed(0)
    drop = {"resid_pdrop": 0.5, "embd_pdrop": 0.5, "attn_pdrop": 0.5}
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128, **drop))
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)  # fmt: skip
    return {"gpt2": gpt2, "bert": BertForMaskedLM(config)}


def test_evaluation_scores_in_eval_mode_and_gives_the_mode_back(tokenizer):
    """A model fresh from training (dropout on, one block frozen in eval mode) scores as in eval mode, is in eval mode
    at every forward, and comes back with every submodule in the mode it had."""
    from hf_posenc.evaluation import heldout_bpc
    from hf_posenc.evaluation.perplexity import token_losses

    models = dropout_models()
    book = data.text("austen_emma")[:6000]
    docs = [torch.randint(0, 100, (70,)), torch.randint(0, 100, (40,))]
    calls = {
        "chunked_perplexity": ("gpt2", lambda m: chunked_perplexity(m, docs, 16)),
        "sliding_window_perplexity": ("gpt2", lambda m: sliding_window_perplexity(m, docs, 16, stride=8)),
        "token_losses": ("gpt2", lambda m: token_losses(m, docs[0][:64].view(4, 16)).tolist()),
        "masked_lm_loss": ("bert", lambda m: masked_lm_loss(m, docs, 16, mask_token_id=3, special_ids=(1, 2))),
        "passkey_retrieval": ("gpt2", lambda m: passkey_retrieval(m, tokenizer, [96], depths=(0.5,), trials=2)),
        "heldout_bpc": ("gpt2", lambda m: heldout_bpc(m, tokenizer, [book], window=32, max_windows_per_text=4)),
        "evaluate_long_context": (
            "gpt2",
            lambda m: evaluate_long_context(
                m, tokenizer, [book], [32, 96], max_tokens=192, passkey_trials=1, passkey_depths=(0.5,), progress=False
            ),
        ),
    }
    for name, (family, score) in calls.items():
        model = models[family].eval()
        expected = score(model)
        model.train()
        (model.bert.encoder.layer[0] if family == "bert" else model.transformer.h[0]).eval()  # frozen in eval mode
        modes = [module.training for module in model.modules()]
        seen: list[bool] = []

        def record_mode(module, args, seen=seen):
            seen.append(any(m.training for m in module.modules()))

        hook = model.register_forward_pre_hook(record_mode)
        try:
            assert score(model) == expected, name
        finally:
            hook.remove()
        assert seen and not any(seen), name  # every forward ran with dropout off
        assert [module.training for module in model.modules()] == modes, name

    from hf_posenc.evaluation import eval_mode

    model = models["gpt2"].train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training
        raise RuntimeError("a failed measurement")
    assert all(module.training for module in model.modules())  # given back on an error too
