"""Retrieval blocks for pretraining: passkey prompts in the evaluation's exact format, mixed into the text blocks.

A fixed fraction of the training blocks are retrieval blocks. Each holds ONE passkey prompt followed by its answer
(`build_prompt(tokenizer, length, depth, key)`: prompt + answer, so it starts at position 0 like the evaluation's
prompts), with the length drawn uniformly in [max(block_size // 4, shortest prompt), block_size] and the depth
uniformly in [0, 1]. The block is then filled to exactly `block_size` tokens with EOS and a slice of ordinary
training text (a random offset into `filler`; EOS only when no filler is given). Keys are 5-digit numbers
(10000..99999) from `random.Random(seed)`, a generator separate from the evaluation's (seed 0), so training keys are
independent draws. The whole block is trained on (filler included), as for text blocks.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Sequence
from typing import Any

from ..evaluation.passkey import INTRO, KEY_SENTENCE, QUESTION, build_prompt, encode

DEFAULT_SEED = 1234  # the evaluation draws its keys from random.Random(0)
KEYS = range(10000, 100000)  # the passkeys: every 5-digit number


def retrieval_count(num_text_blocks: int, fraction: float, other: float = 0.0) -> int:
    """How many blocks make `fraction` of all blocks (text + these + `other`'s share), rounded to the nearest block."""
    if not 0.0 <= fraction < 1.0 or not 0.0 <= other < 1.0 - fraction:
        raise ValueError(f"The mixture fractions must be >= 0 and sum to less than 1, got {fraction} and {other}.")
    return int(round(num_text_blocks * fraction / (1.0 - fraction - other)))


def copy_blocks(tokenizer: Any, block_size: int, count: int, seed: int = DEFAULT_SEED) -> list[list[int]]:
    """`count` blocks that each repeat one random token sequence (8-64 ordinary tokens, uniform over the vocabulary)
    until the block is full: everything after the first copy is predictable only by looking back and copying, the
    in-context lookup that passkey retrieval needs (the "repeated random tokens" task that forms induction heads)."""
    rng = random.Random(seed + 1)  # independent of the passkeys' draws
    special = set(tokenizer.all_special_ids)
    ordinary = [i for i in range(len(tokenizer)) if i not in special]
    blocks = []
    for _ in range(count):
        span = [rng.choice(ordinary) for _ in range(rng.randint(8, 64))]
        blocks.append((span * (block_size // len(span) + 1))[:block_size])
    return blocks


def shortest_prompt(tokenizer: Any, max_length: int) -> int:
    """The shortest length that holds a passkey prompt and its answer (no filler) for every key: the intro and the
    question, plus the most tokens any key's sentence and answer take (`longest_key_tokens`)."""
    intro, question = encode(tokenizer, INTRO), encode(tokenizer, QUESTION)
    length = len(intro) + len(question) + longest_key_tokens(tokenizer)
    if length > max_length:
        raise ValueError(f"A passkey prompt needs {length} tokens with this tokenizer, more than {max_length}.")
    return length


_KEY_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # longest_key_tokens by tokenizer


def longest_key_tokens(tokenizer: Any) -> int:
    """The most tokens that a key's sentence and answer take together in a passkey prompt, over every key in `KEYS`
    (a key's digits can tokenise into more pieces than 99999's). Two batch tokenizer calls, once per tokenizer (and
    again when tokens are added to it)."""
    cached = _KEY_TOKENS.get(tokenizer)
    if cached is not None and cached[0] == len(tokenizer):
        return cached[1]
    counts = []
    for template in (KEY_SENTENCE, " {key}"):
        texts = [template.format(key=key) for key in KEYS]
        encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        counts.append([len(ids) for ids in encoded])
    longest = max(sentence + answer for sentence, answer in zip(*counts))
    _KEY_TOKENS[tokenizer] = (len(tokenizer), longest)
    return longest


def retrieval_blocks(
    tokenizer: Any,
    block_size: int,
    num_text_blocks: int,
    fraction: float = 0.1,
    seed: int = DEFAULT_SEED,
    filler: Sequence[int] | None = None,
    packed: bool = False,
    other: float = 0.0,
) -> list[dict[str, Any]]:
    """`retrieval_count(num_text_blocks, fraction)` passkey blocks of exactly `block_size` tokens.

    Each is {"input_ids", "key", "length" (prompt + answer tokens), "depth", "answer" (the answer's token ids)};
    the answer ends at index `length - 1`. Deterministic for a seed (and filler).
    """
    rng = random.Random(seed)
    eos = tokenizer.eos_token_id
    low = max(block_size // 4, shortest_prompt(tokenizer, block_size))
    blocks = []
    for _ in range(retrieval_count(num_text_blocks, fraction, other)):
        length, depth, key = rng.randint(low, block_size), rng.random(), rng.randint(KEYS.start, KEYS.stop - 1)
        built = build_prompt(tokenizer, length, depth, key)
        assert built is not None  # length >= the shortest prompt
        prompt, answer = built
        ids = prompt + answer
        keys = [key]
        while packed and block_size - len(ids) - 1 >= low:  # more prompts after an EOS while one still fits
            more_length, more_key = rng.randint(low, block_size - len(ids) - 1), rng.randint(KEYS.start, KEYS.stop - 1)
            more_prompt, more_answer = build_prompt(tokenizer, more_length, rng.random(), more_key)
            ids += [eos, *more_prompt, *more_answer]
            keys.append(more_key)
        room = block_size - len(ids)
        if room > 0:
            ids.append(eos)
            room -= 1
            if filler is not None and len(filler) > room:
                start = rng.randrange(len(filler) - room)
                ids.extend(filler[start : start + room])
            else:
                ids.extend([eos] * room)
        blocks.append(
            {
                "input_ids": ids,
                "key": key,
                "length": len(prompt) + len(answer),
                "depth": depth,
                "answer": answer,
                "keys": keys,
            }
        )
    return blocks


def mix_retrieval(
    train_set: Any,
    tokenizer: Any,
    block_size: int,
    fraction: float = 0.1,
    seed: int = DEFAULT_SEED,
    packed: bool = False,
    copy_fraction: float = 0.0,
) -> tuple[Any, dict[str, Any]]:
    """`train_set` (a datasets.Dataset of text blocks, "input_ids" and "block") plus its retrieval blocks, filled
    with text from `train_set` itself, and `copy_fraction` of repeated-random-sequence blocks (`copy_blocks`).
    The training loop shuffles blocks, so both kinds spread evenly.

    Returns the mixed dataset (torch format) and a summary for the run's config.
    """
    import datasets

    text = train_set.with_format(None)
    stream = [token for row in text["input_ids"] for token in row]
    blocks = retrieval_blocks(
        tokenizer, block_size, len(text), fraction, seed, filler=stream, packed=packed, other=copy_fraction
    )
    copies = copy_blocks(tokenizer, block_size, retrieval_count(len(text), copy_fraction, fraction), seed)
    rows = [b["input_ids"] for b in blocks] + copies
    extra = datasets.Dataset.from_dict(
        {"input_ids": rows, "block": list(range(len(text), len(text) + len(rows)))}, features=text.features
    )
    mixed = datasets.concatenate_datasets([text, extra]).with_format("torch")
    summary = {
        "retrieval_fraction": fraction,
        "retrieval_seed": seed,
        "text_blocks": len(text),
        "retrieval_blocks": len(blocks),
        "actual_fraction": len(blocks) / max(1, len(mixed)),
        "copy_fraction": copy_fraction,
        "copy_blocks": len(copies),
        "actual_copy_fraction": len(copies) / max(1, len(mixed)),
        "format": (
            "passkey prompts + answers (evaluation format) separated by EOS while one fits, then EOS and training text"
            if packed
            else "one passkey prompt + answer per block (evaluation format), then EOS and training text"
        ),
        "prompts": sum(len(b["keys"]) for b in blocks),
    }
    return mixed, summary
