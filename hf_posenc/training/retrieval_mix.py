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
from collections.abc import Sequence
from typing import Any

from ..evaluation.passkey import build_prompt

DEFAULT_SEED = 1234  # the evaluation draws its keys from random.Random(0)


def retrieval_count(num_text_blocks: int, fraction: float) -> int:
    """How many retrieval blocks make `fraction` of all blocks (text + retrieval), rounded to the nearest block."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"The retrieval fraction must be in [0, 1), got {fraction}.")
    return int(round(num_text_blocks * fraction / (1.0 - fraction)))


def shortest_prompt(tokenizer: Any, max_length: int) -> int:
    """The shortest length that holds a passkey prompt and its answer (no filler)."""
    for length in range(1, max_length + 1):
        if build_prompt(tokenizer, length, 0.0, 99999) is not None:
            return length
    raise ValueError(f"A passkey prompt does not fit in {max_length} tokens with this tokenizer.")


def retrieval_blocks(
    tokenizer: Any,
    block_size: int,
    num_text_blocks: int,
    fraction: float = 0.1,
    seed: int = DEFAULT_SEED,
    filler: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """`retrieval_count(num_text_blocks, fraction)` passkey blocks of exactly `block_size` tokens.

    Each is {"input_ids", "key", "length" (prompt + answer tokens), "depth", "answer" (the answer's token ids)};
    the answer ends at index `length - 1`. Deterministic for a seed (and filler).
    """
    rng = random.Random(seed)
    eos = tokenizer.eos_token_id
    low = max(block_size // 4, shortest_prompt(tokenizer, block_size))
    blocks = []
    for _ in range(retrieval_count(num_text_blocks, fraction)):
        length, depth, key = rng.randint(low, block_size), rng.random(), rng.randint(10000, 99999)
        built = build_prompt(tokenizer, length, depth, key)
        assert built is not None  # length >= the shortest prompt
        prompt, answer = built
        ids = prompt + answer
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
            {"input_ids": ids, "key": key, "length": len(prompt) + len(answer), "depth": depth, "answer": answer}
        )
    return blocks


def mix_retrieval(
    train_set: Any, tokenizer: Any, block_size: int, fraction: float = 0.1, seed: int = DEFAULT_SEED
) -> tuple[Any, dict[str, Any]]:
    """`train_set` (a datasets.Dataset of text blocks, "input_ids" and "block") plus its retrieval blocks, filled
    with text from `train_set` itself. The training loop shuffles blocks, so retrieval blocks spread evenly.

    Returns the mixed dataset (torch format) and a summary for the run's config.
    """
    import datasets

    text = train_set.with_format(None)
    stream = [token for row in text["input_ids"] for token in row]
    blocks = retrieval_blocks(tokenizer, block_size, len(text), fraction, seed, filler=stream)
    extra = datasets.Dataset.from_dict(
        {"input_ids": [b["input_ids"] for b in blocks], "block": list(range(len(text), len(text) + len(blocks)))},
        features=text.features,
    )
    mixed = datasets.concatenate_datasets([text, extra]).with_format("torch")
    summary = {
        "retrieval_fraction": fraction,
        "retrieval_seed": seed,
        "text_blocks": len(text),
        "retrieval_blocks": len(blocks),
        "actual_fraction": len(blocks) / max(1, len(mixed)),
        "format": "one passkey prompt + answer per block (evaluation format), then EOS and training text",
    }
    return mixed, summary
