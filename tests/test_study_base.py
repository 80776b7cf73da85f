"""The study base's pieces: bits per character, the unigram baseline, the BPE tokenizer and the retrieval mixture."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from hf_posenc.data import text
from hf_posenc.data.bpe import train_bpe_tokenizer
from hf_posenc.evaluation import bits_per_character, heldout_bpc, unigram_bpc
from hf_posenc.training.retrieval_mix import mix_retrieval, retrieval_blocks, retrieval_count

TOY = [text("austen_emma")[:12000], text("tinyshakespeare")[:8000]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(vocab_size=400, texts=TOY)


def test_bits_per_character_by_hand():
    assert bits_per_character(100 * math.log(2), 50) == pytest.approx(2.0)
    assert bits_per_character(3.0, 4) == pytest.approx(3.0 / (4 * 0.6931471805599453))
    with pytest.raises(ValueError):
        bits_per_character(1.0, 0)


def test_tokenizer_is_deterministic_and_round_trips(tokenizer):
    again = train_bpe_tokenizer(vocab_size=400, texts=TOY)
    assert tokenizer.get_vocab() == again.get_vocab()
    assert len(tokenizer) == 400 and tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    sample = "Mr. Knightley — café, 12345!\n  The pass key is 98765."
    assert tokenizer.decode(tokenizer(sample)["input_ids"]) == sample


def test_tokenizer_refuses_held_out_books():
    with pytest.raises(ValueError, match="Held-out"):
        train_bpe_tokenizer(books=("austen_emma", "austen_persuasion"))


def test_unigram_bpc_matches_a_direct_computation(tokenizer):
    train_texts, eval_texts = ["the cat sat on the mat. " * 20], ["the mat sat on the cat.", "a dog!"]
    counts = Counter(t for s in train_texts for t in tokenizer(s)["input_ids"])
    denominator = sum(counts.values()) + len(tokenizer)
    ids = [t for s in eval_texts for t in tokenizer(s)["input_ids"]]
    nll = -sum(math.log((counts[t] + 1) / denominator) for t in ids)
    expected = nll / (sum(len(s) for s in eval_texts) * math.log(2))
    result = unigram_bpc(tokenizer, train_texts, eval_texts)
    assert result["bpc"] == pytest.approx(expected)
    assert result["perplexity"] == pytest.approx(math.exp(nll / len(ids)))


def test_heldout_bpc_counts_the_scored_characters(tokenizer):
    """Against a window-by-window computation: each window's first token is context only, token t + 1 is scored with
    the logits at position t, and the characters counted are those of the scored tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)  # random weights, learned positions: the logits depend on the token and on its position
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_layer=1, n_embd=32, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    sample = TOY[0][:1200]
    assert sample.isascii()  # one character per byte: each token's own text has its characters
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    windows = [ids[start : start + 32] for start in range(0, len(ids) - 31, 32)]
    nll, chars = 0.0, 0
    for window in windows:
        with torch.no_grad():
            log_probs = torch.log_softmax(model(torch.tensor([window])).logits[0].double(), dim=-1)
        nll -= sum(float(log_probs[t, window[t + 1]]) for t in range(31))
        chars += sum(len(tokenizer.decode([token])) for token in window[1:])
    result = heldout_bpc(model, tokenizer, [sample], window=32, max_windows_per_text=None, batch_size=3)
    assert result["windows"] == len(windows) >= 5 and result["tokens"] == 31 * len(windows)
    assert result["chars"] == chars
    assert result["loss"] == pytest.approx(nll / result["tokens"], rel=1e-5)
    assert result["bpc"] == pytest.approx(nll / (chars * math.log(2)), rel=1e-5)


def test_retrieval_blocks_are_exact_passkey_prompts(tokenizer):
    filler = list(range(1, 300)) * 10
    blocks = retrieval_blocks(tokenizer, 192, num_text_blocks=90, fraction=0.1, seed=7, filler=filler)
    assert len(blocks) == retrieval_count(90, 0.1) == 10
    for block in blocks:
        ids, key, length, answer = block["input_ids"], block["key"], block["length"], block["answer"]
        assert len(ids) == 192 and 10000 <= key <= 99999 and 192 // 4 <= length <= 192
        assert ids[length - len(answer) : length] == answer == tokenizer(f" {key}")["input_ids"]
        assert tokenizer.decode(ids[: length - len(answer)]).count(str(key)) == 2
    same = retrieval_blocks(tokenizer, 192, num_text_blocks=90, fraction=0.1, seed=7, filler=filler)
    other = retrieval_blocks(tokenizer, 192, num_text_blocks=90, fraction=0.1, seed=8, filler=filler)
    assert [b["input_ids"] for b in same] == [b["input_ids"] for b in blocks]
    assert [b["key"] for b in other] != [b["key"] for b in blocks]


def test_every_key_fits_at_the_shortest_block_size():
    """GPT-2 splits many keys into more tokens than 99999: the shortest prompt holds the longest of them, so blocks
    of that size (and one more) are exact passkey prompts whatever the seed draws."""
    from hf_posenc.data import gpt2_tokenizer
    from hf_posenc.training.retrieval_mix import shortest_prompt

    tokenizer = gpt2_tokenizer()
    shortest = shortest_prompt(tokenizer, 1024)
    for block_size in (shortest, shortest + 1):
        for seed in range(200):
            for packed in (False, True):
                (block,) = retrieval_blocks(tokenizer, block_size, 9, fraction=0.1, seed=seed, packed=packed)
                ids, length, answer = block["input_ids"], block["length"], block["answer"]
                assert len(ids) == block_size and length >= shortest
                assert ids[length - len(answer) : length] == answer == tokenizer(f" {block['key']}")["input_ids"]
    with pytest.raises(ValueError, match=f"needs {shortest} tokens"):
        shortest_prompt(tokenizer, shortest - 1)


def test_mixture_fraction_is_exact(tokenizer):
    import datasets

    text_blocks = datasets.Dataset.from_dict({"input_ids": [[5] * 192] * 90, "block": list(range(90))})
    mixed, summary = mix_retrieval(text_blocks, tokenizer, 192, fraction=0.1, seed=3)
    assert len(mixed) == 100 and summary["retrieval_blocks"] == 10 and summary["actual_fraction"] == 0.1
    assert sorted(int(b) for b in mixed["block"]) == list(range(100))
    assert all(len(row) == 192 for row in mixed["input_ids"])


def test_packed_blocks_hold_several_whole_prompts(tokenizer):
    blocks = retrieval_blocks(tokenizer, 1024, num_text_blocks=90, fraction=0.1, seed=7, packed=True)
    assert any(len(b["keys"]) > 1 for b in blocks)
    for block in blocks:
        text = tokenizer.decode(block["input_ids"])
        assert len(block["input_ids"]) == 1024
        for key in block["keys"]:  # twice in the key sentence, once as the answer
            assert text.count(str(key)) == 3


def test_mixture_with_copy_blocks_keeps_both_fractions(tokenizer):
    import datasets

    from hf_posenc.training.retrieval_mix import copy_blocks

    text_blocks = datasets.Dataset.from_dict({"input_ids": [[5] * 192] * 80, "block": list(range(80))})
    mixed, summary = mix_retrieval(text_blocks, tokenizer, 192, fraction=0.1, seed=3, copy_fraction=0.1)
    assert len(mixed) == 100 and summary["retrieval_blocks"] == 10 and summary["copy_blocks"] == 10
    for block in copy_blocks(tokenizer, 192, 5, seed=3):
        span = next(n for n in range(8, 65) if block[n:] == block[:-n])  # the block repeats its first n tokens
        assert len(block) == 192 and len(set(block[:span])) > 1
        assert not set(block) & set(tokenizer.all_special_ids)


def test_the_shipped_base_loads_and_reads_its_positions():
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_posenc.data import study_base_dir, texts

    folder = study_base_dir()
    assert (folder / "model.safetensors").stat().st_size < 25_000_000
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_positions == 256 and len(tokenizer) == 4096
    report = json.loads((folder / "base_report.json").read_text())
    scored = heldout_bpc(model, tokenizer, texts("eval"), window=256, max_windows_per_text=4)
    assert scored["bpc"] < 0.8 * report["unigram_bpc"]  # it has learned language, far below a unigram model
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
    zeroed = heldout_bpc(model, tokenizer, texts("eval"), window=256, max_windows_per_text=4)
    assert zeroed["perplexity"] > 1.3 * scored["perplexity"]  # and it relies on its learned position table


def test_the_shipped_base_retrieves_passkeys_inside_its_window():
    """The report's passkey measurement (the evaluation's keys, 5 depths x 8) recomputed: at least 90%, and the
    report's number up to two prompts (another CPU may flip a close argmax)."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_posenc.data import study_base_dir
    from hf_posenc.evaluation import passkey_retrieval

    folder = study_base_dir()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    report = json.loads((folder / "base_report.json").read_text())["passkey"]
    found = passkey_retrieval(model, tokenizer, [256], tuple(report["depths"]), trials=report["trials"])
    assert found["accuracy_by_length"][0] >= 0.9
    assert found["accuracy_by_length"][0] == pytest.approx(report["accuracy_by_length"][0], abs=0.05)  # 2 prompts
