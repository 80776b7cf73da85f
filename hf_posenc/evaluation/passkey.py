"""Passkey retrieval (Mohtashami & Jaggi, 2023): a key hidden in filler text, asked for at the end.

Prompts are built to an exact token length with the key at a chosen depth. Scoring is greedy and exact:
the prompt followed by the key's tokens is run once, and a trial counts as retrieved when the model's
argmax at every key position is the key's next token (the same answer greedy decoding would produce).

Besides the exact key, the first key token (the first answer token that differs between keys: the answer's leading
space is fixed by the template) is scored on its own: it cannot be copied from the answer's earlier tokens, so only
retrieval gets it right beyond chance. Chance levels are reported with the results.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import torch
from torch import nn

from .limits import max_context
from .modes import evaluates

INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_SENTENCE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"
KEYS = (10000, 99999)  # five-digit keys, drawn uniformly


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_prompt(tokenizer: Any, length: int, depth: float, key: int) -> tuple[list[int], list[int]] | None:
    """(prompt ids, answer ids) with len(prompt) + len(answer) <= length and the key sentence at `depth` of the filler.

    Returns None when `length` is too short to hold the intro, the key sentence and the question.
    """
    intro, question = encode(tokenizer, INTRO), encode(tokenizer, QUESTION)
    key_ids, answer = encode(tokenizer, KEY_SENTENCE.format(key=key)), encode(tokenizer, f" {key}")
    filler_budget = length - len(intro) - len(key_ids) - len(question) - len(answer)
    if filler_budget < 0:
        return None
    unit = encode(tokenizer, FILLER)
    filler = (unit * (filler_budget // len(unit) + 1))[:filler_budget]
    split = min(len(filler), int(round(depth * (len(filler) // len(unit)))) * len(unit))  # between filler sentences
    return intro + filler[:split] + key_ids + filler[split:] + question, answer


@torch.inference_mode()
@evaluates
def passkey_retrieval(
    model: nn.Module,
    tokenizer: Any,
    lengths: list[int],
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
    trials: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy by context length and key depth over `trials` keys per cell, drawn with `seed` (another seed draws
    other keys). Cells a model cannot run are None (with the reason).

    Returns {"lengths", "depths", "trials", "seed", "accuracy" [length][depth], "hits" [length][depth][trial] (1 or 0:
    the exact key), "first_key_token" (the same for the first key token), "token_accuracy" (answer tokens right,
    teacher-forced, the template's fixed leading tokens included), "accuracy_by_length", "accuracy_by_depth",
    "chance" ({"key", "first_key_token"}), "notes"}."""
    rng = random.Random(seed)
    device = next(model.parameters()).device
    limit = max_context(model)
    accuracy: list[list[float | None]] = []
    hits: list[list[list[int] | None]] = []
    first_hits: list[list[list[int] | None]] = []
    token_accuracy: list[list[float | None]] = []
    notes: dict[str, str] = {}
    for length in lengths:
        row, hit_row, first_row, token_row = [], [], [], []
        for depth in depths:
            keys = [rng.randint(*KEYS) for _ in range(trials)]
            prompts = [build_prompt(tokenizer, length, depth, key) for key in keys]
            if limit is not None and length > limit:
                notes[str(length)] = f"unsupported: positions stop at {limit}"
            elif any(p is None for p in prompts):
                notes[str(length)] = "too short for the passkey prompt"
            if str(length) in notes:
                for cells in (row, hit_row, first_row, token_row):
                    cells.append(None)
                continue
            cell, first, token_hits, token_total = _score(model, device, prompts)
            row.append(sum(cell) / trials)
            hit_row.append(cell)
            first_row.append(first)
            token_row.append(token_hits / token_total)
        accuracy.append(row)
        hits.append(hit_row)
        first_hits.append(first_row)
        token_accuracy.append(token_row)
    return {
        "lengths": list(lengths),
        "depths": list(depths),
        "trials": trials,
        "seed": seed,
        "accuracy": accuracy,
        "hits": hits,
        "first_key_token": first_hits,
        "token_accuracy": token_accuracy,
        "accuracy_by_length": [_mean(row) for row in accuracy],
        "accuracy_by_depth": [_mean([row[j] for row in accuracy]) for j in range(len(depths))],
        "chance": chance(tokenizer),
        "notes": notes,
    }


def _score(
    model: nn.Module, device: torch.device, prompts: list[tuple[list[int], list[int]]]
) -> tuple[list[int], list[int], int, int]:
    """One batch of prompts: (exact-key hit per prompt, first-key-token hit per prompt, answer tokens right, answer
    tokens). The first key token is the first answer position where the answers differ (all of them when they all
    differ from the first token on)."""
    sequences = [prompt + answer for prompt, answer in prompts]
    width = max(len(s) for s in sequences)
    batch = torch.zeros(len(sequences), width, dtype=torch.long)
    for i, seq in enumerate(sequences):  # right padding never reaches earlier positions of a causal LM
        batch[i, : len(seq)] = torch.tensor(seq)
    keep = width - min(len(prompt) for prompt, _ in prompts) + 1  # only the answer positions need logits
    logits = model(input_ids=batch.to(device), use_cache=False, logits_to_keep=keep).logits
    predictions = logits.argmax(-1).cpu()
    fixed = fixed_prefix([answer for _, answer in prompts])
    exact, first, token_hits, token_total = [], [], 0, 0
    for i, (prompt, answer) in enumerate(prompts):
        start = len(prompt) - 1 - (width - keep)
        correct = [p == a for p, a in zip(predictions[i, start : start + len(answer)].tolist(), answer)]
        exact.append(int(all(correct)))
        first.append(int(correct[min(fixed, len(answer) - 1)]))
        token_hits += sum(correct)
        token_total += len(answer)
    return exact, first, token_hits, token_total


def fixed_prefix(answers: list[list[int]]) -> int:
    """How many leading answer tokens every answer shares (the template's, e.g. the space before the key)."""
    shortest = min(len(a) for a in answers)
    return next((i for i in range(shortest) if len({a[i] for a in answers}) > 1), shortest)


@functools.lru_cache(maxsize=8)
def chance(tokenizer: Any) -> dict[str, float]:
    """What guessing scores: the exact key (one of 90,000) and its first key token (one of the tokens that start a
    key after the template's fixed prefix: 9 digits with a digit-level tokenizer)."""
    low, high = KEYS
    answers = tokenizer([f" {key}" for key in range(low, high + 1)], add_special_tokens=False)["input_ids"]
    fixed = fixed_prefix(answers)
    first = {a[fixed] for a in answers if len(a) > fixed}
    return {"key": 1 / (high - low + 1), "first_key_token": 1 / max(1, len(first))}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
