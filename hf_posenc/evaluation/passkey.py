"""Passkey retrieval (Mohtashami & Jaggi, 2023): a key hidden in filler text, asked for at the end.

Prompts are built to an exact token length with the key at a chosen depth. Scoring is greedy and exact:
the prompt followed by the key's tokens is run once, and a trial counts as retrieved when the model's
argmax at every key position is the key's next token (the same answer greedy decoding would produce).
"""

from __future__ import annotations

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
    """Accuracy by context length and key depth. Cells a model cannot run are None (with the reason)."""
    rng = random.Random(seed)
    device = next(model.parameters()).device
    limit = max_context(model)
    accuracy: list[list[float | None]] = []
    token_accuracy: list[list[float | None]] = []
    notes: dict[str, str] = {}
    for length in lengths:
        row, token_row = [], []
        for depth in depths:
            keys = [rng.randint(10000, 99999) for _ in range(trials)]
            if limit is not None and length > limit:
                notes[str(length)] = f"unsupported: positions stop at {limit}"
                row.append(None)
                token_row.append(None)
                continue
            prompts = [build_prompt(tokenizer, length, depth, key) for key in keys]
            if any(p is None for p in prompts):
                notes[str(length)] = "too short for the passkey prompt"
                row.append(None)
                token_row.append(None)
                continue
            hits, token_hits, token_total = 0, 0, 0
            sequences = [prompt + answer for prompt, answer in prompts]
            width = max(len(s) for s in sequences)
            batch = torch.zeros(len(sequences), width, dtype=torch.long)
            for i, seq in enumerate(sequences):  # right padding never reaches earlier positions of a causal LM
                batch[i, : len(seq)] = torch.tensor(seq)
            keep = width - min(len(prompt) for prompt, _ in prompts) + 1  # only the answer positions need logits
            logits = model(input_ids=batch.to(device), use_cache=False, logits_to_keep=keep).logits
            predictions = logits.argmax(-1).cpu()
            for i, (prompt, answer) in enumerate(prompts):
                first = len(prompt) - 1 - (width - keep)
                predicted = predictions[i, first : first + len(answer)].tolist()
                correct = [p == a for p, a in zip(predicted, answer)]
                hits += all(correct)
                token_hits += sum(correct)
                token_total += len(answer)
            row.append(hits / trials)
            token_row.append(token_hits / token_total)
        accuracy.append(row)
        token_accuracy.append(token_row)
    by_length = [_mean(row) for row in accuracy]
    by_depth = [_mean([row[j] for row in accuracy]) for j in range(len(depths))]
    return {
        "lengths": list(lengths),
        "depths": list(depths),
        "trials": trials,
        "accuracy": accuracy,
        "token_accuracy": token_accuracy,
        "accuracy_by_length": by_length,
        "accuracy_by_depth": by_depth,
        "notes": notes,
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
