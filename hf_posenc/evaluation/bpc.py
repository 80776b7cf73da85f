"""Bits per character: a tokenizer-independent loss, so that models with different vocabularies compare.

bpc = total negative log-likelihood (nats) / (characters scored x ln 2). The characters are those of the text the
scored tokens decode to, so a coarser tokenizer cannot look better by predicting fewer, longer tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .modes import evaluates


def bits_per_character(total_nll_nats: float, num_chars: int) -> float:
    """Convert a summed NLL in nats over text of `num_chars` characters to bits per character."""
    if num_chars <= 0:
        raise ValueError(f"num_chars must be positive, got {num_chars}.")
    return total_nll_nats / (num_chars * math.log(2))


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def window_starts(num_tokens: int, window: int, max_windows: int | None = None) -> list[int]:
    """Starts of the non-overlapping `window`-token windows of a document, `max_windows` of them evenly spaced."""
    starts = list(range(0, num_tokens - window + 1, window))
    if max_windows is not None and len(starts) > max_windows:
        step = len(starts) / max_windows
        starts = [starts[int(i * step)] for i in range(max_windows)]
    return starts


def heldout_windows(
    tokenizer: Any, texts: Sequence[str], window: int, max_windows_per_text: int | None = 64
) -> list[list[int]]:
    """The non-overlapping `window`-token windows of each text (`max_windows_per_text` of them, evenly spaced over
    the whole text), in text order."""
    windows: list[list[int]] = []
    for text in texts:
        ids = _encode(tokenizer, text)
        windows.extend(ids[s : s + window] for s in window_starts(len(ids), window, max_windows_per_text))
    if not windows:
        raise ValueError(f"No text is {window} tokens long.")
    return windows


@torch.inference_mode()
@evaluates
def score_windows(model: nn.Module, tokenizer: Any, windows: Sequence[Sequence[int]], batch_size: int = 16) -> dict:
    """Score a causal LM on equal-length token windows, each starting at position 0. Each window's first token is
    context only; the others are scored. Returns {"bpc", "perplexity", "loss", "tokens", "chars", "windows",
    "window_losses"} (the mean loss of each window, for a bootstrap over windows); chars are those of the scored
    tokens' text."""
    device = next(model.parameters()).device
    total_nll, tokens, chars, window_losses = 0.0, 0, 0, []
    for i in range(0, len(windows), batch_size):
        batch = torch.tensor(windows[i : i + batch_size], device=device)
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").sum(1)
        total_nll += float(nll.sum())
        window_losses.extend((nll / (batch.shape[1] - 1)).tolist())
        tokens += batch[:, 1:].numel()
        chars += sum(len(tokenizer.decode(w[1:])) for w in windows[i : i + batch_size])
    loss = total_nll / tokens
    return {
        "bpc": bits_per_character(total_nll, chars),
        "perplexity": math.exp(loss),
        "loss": loss,
        "tokens": tokens,
        "chars": chars,
        "windows": len(windows),
        "window_losses": window_losses,
    }


def heldout_bpc(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    window: int,
    max_windows_per_text: int | None = 64,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Score a causal LM on non-overlapping `window`-token windows of each text, `max_windows_per_text` of them
    evenly spaced over each (in-window: every window starts at position 0): `score_windows` of `heldout_windows`."""
    windows = heldout_windows(tokenizer, texts, window, max_windows_per_text)
    return score_windows(model, tokenizer, windows, batch_size)


def unigram_bpc(tokenizer: Any, train_texts: Sequence[str], eval_texts: Sequence[str]) -> dict[str, float]:
    """A unigram token model fitted on `train_texts` (add-one smoothing over the vocabulary), scored on every token
    of `eval_texts`, in bits per character of those texts. Returns {"bpc", "perplexity", "tokens", "chars"}."""
    counts: Counter[int] = Counter()
    for text in train_texts:
        counts.update(_encode(tokenizer, text))
    vocab = len(tokenizer)
    denominator = sum(counts.values()) + vocab
    total_nll, tokens, chars = 0.0, 0, 0
    for text in eval_texts:
        ids = _encode(tokenizer, text)
        total_nll -= sum(math.log((counts[t] + 1) / denominator) for t in ids)
        tokens += len(ids)
        chars += len(text)
    return {
        "bpc": bits_per_character(total_nll, chars),
        "perplexity": math.exp(total_nll / tokens),
        "tokens": tokens,
        "chars": chars,
    }
