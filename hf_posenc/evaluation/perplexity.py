"""Perplexity at a context length: non-overlapping chunks, a sliding window, and masked-LM loss.

Every function takes documents as 1-D LongTensors of token ids and returns a JSON-able record with a
`status`: "ok", "unsupported" (the model's positions stop before this length) or "too_short" (no
document is that long).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .limits import max_context
from .modes import evaluates


def _record(length: int, mode: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"length": length, "mode": mode, "status": status, **extra}


def _unsupported(model: nn.Module, length: int, mode: str) -> dict[str, Any] | None:
    limit = max_context(model)
    if limit is not None and length > limit:
        return _record(
            length, mode, "unsupported", message=f"positions stop at {limit}: the model cannot encode {length} tokens"
        )
    return None


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def chunks_of(documents: list[torch.Tensor], length: int, max_chunks: int | None) -> torch.Tensor:
    """[N, length] non-overlapping chunks, taken round-robin across documents so that all are represented."""
    return chunk_rows(documents, length, max_chunks)[0]


def chunk_rows(documents: list[torch.Tensor], length: int, max_chunks: int | None) -> tuple[torch.Tensor, list[int]]:
    """`chunks_of` with the index of the document each chunk comes from."""
    per_doc = [doc[: (doc.numel() // length) * length].view(-1, length) for doc in documents]
    rows: list[torch.Tensor] = []
    owners: list[int] = []
    index = 0
    while any(index < block.shape[0] for block in per_doc):
        for owner, block in enumerate(per_doc):
            if index < block.shape[0]:
                rows.append(block[index])
                owners.append(owner)
        index += 1
    if max_chunks is not None:
        rows, owners = rows[:max_chunks], owners[:max_chunks]
    return (torch.stack(rows) if rows else torch.empty(0, length, dtype=torch.long)), owners


@torch.inference_mode()
@evaluates
def token_losses(model: nn.Module, chunks: torch.Tensor, batch_tokens: int = 2048) -> torch.Tensor:
    """[N, length - 1] next-token losses of a causal LM on each chunk (position p predicts token p + 1)."""
    device = _device(model)
    batch = max(1, batch_tokens // chunks.shape[1])
    out = []
    for start in range(0, chunks.shape[0], batch):
        ids = chunks[start : start + batch].to(device)
        out.append(next_token_losses(model(input_ids=ids, use_cache=False).logits, ids).cpu())
    return torch.cat(out) if out else torch.empty(0, chunks.shape[1] - 1)


def next_token_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[B, T - 1] losses of `logits` [B, T, V] at predicting `ids[:, 1:]`, computed in float32."""
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)


@evaluates
def chunked_perplexity(
    model: nn.Module, documents: list[torch.Tensor], length: int, max_tokens: int = 32768, bins: int = 32
) -> dict[str, Any]:
    """Perplexity over non-overlapping `length`-token chunks, plus the mean loss in `bins` position buckets and each
    document's mean chunk loss ("document_losses", None for a document without a scored chunk: the units of a
    bootstrap over documents)."""
    unsupported = _unsupported(model, length, "chunked")
    if unsupported:
        return unsupported
    chunks, owners = chunk_rows(documents, length, max(1, max_tokens // length))
    if chunks.shape[0] == 0:
        return _record(length, "chunked", "too_short", message=f"no held-out document has {length} tokens")
    losses = token_losses(model, chunks)
    loss = float(losses.mean())
    edges = torch.linspace(0, losses.shape[1], min(bins, losses.shape[1]) + 1).long()
    by_position = losses.mean(0)
    per_chunk = losses.mean(1)
    owned = [[float(per_chunk[i]) for i, o in enumerate(owners) if o == d] for d in range(len(documents))]
    return _record(
        length,
        "chunked",
        "ok",
        loss=loss,
        perplexity=math.exp(loss),
        tokens=int(losses.numel()),
        chunks=int(chunks.shape[0]),
        position_bins=[int(edges[i]) + 1 for i in range(len(edges) - 1)],
        loss_by_position=[float(by_position[edges[i] : edges[i + 1]].mean()) for i in range(len(edges) - 1)],
        document_losses=[sum(values) / len(values) if values else None for values in owned],
    )


@torch.inference_mode()
@evaluates
def sliding_window_perplexity(
    model: nn.Module, documents: list[torch.Tensor], length: int, stride: int | None = None, max_tokens: int = 32768
) -> dict[str, Any]:
    """Perplexity with a sliding window (the transformers perplexity guide): each window of `length` tokens
    scores only the `stride` tokens not scored before, so every token sees up to `length - stride` of context.
    At most `max_tokens` tokens are scored in all, shared evenly across the documents at least `length` long."""
    stride = stride or max(1, length // 2)
    unsupported = _unsupported(model, length, "sliding")
    if unsupported:
        return unsupported
    if stride > length:
        raise ValueError(f"stride ({stride}) must be at most the window length ({length}).")
    if not any(doc.numel() >= length for doc in documents):
        return _record(
            length, "sliding", "too_short", stride=stride, message=f"no held-out document has {length} tokens"
        )
    device = _device(model)
    total_nll, total_tokens = 0.0, 0
    eligible = [doc for doc in documents if doc.numel() >= length]
    for index, doc in enumerate(eligible):
        # an even share of what is left (a short document leaves the rest of its share to the next ones)
        quota = (max_tokens - total_tokens) // (len(eligible) - index)
        scored, previous_end = 0, 0
        for begin in range(0, doc.numel() - 1, stride):
            if scored >= quota:
                break
            end = min(begin + length, doc.numel())
            # the first token of a document has no context; the last window of a document's share scores fewer tokens
            target_length = min(end - previous_end, end - begin - 1, quota - scored)
            ids = doc[begin:end].to(device)[None]
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=target_length + 1).logits
            losses = next_token_losses(logits, ids[:, -(target_length + 1) :])
            count = losses.numel()
            total_nll += float(losses.sum())
            total_tokens += count
            scored += count
            previous_end = end
            if end == doc.numel():
                break
    loss = total_nll / max(1, total_tokens)
    return _record(length, "sliding", "ok", stride=stride, loss=loss, perplexity=math.exp(loss), tokens=total_tokens)


@torch.inference_mode()
@evaluates
def masked_lm_loss(
    model: nn.Module,
    documents: list[torch.Tensor],
    length: int,
    mask_token_id: int,
    max_tokens: int = 16384,
    probability: float = 0.15,
    seed: int = 0,
    special_ids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Masked-LM loss on `length`-token chunks with a fixed random 15% of tokens replaced by the mask token.

    `special_ids` (e.g. BERT's [CLS] and [SEP]) wrap each chunk: the chunk body is `length - len(special_ids)` long.
    """
    unsupported = _unsupported(model, length, "masked")
    if unsupported:
        return unsupported
    body = length - len(special_ids)
    chunks = chunks_of(documents, body, max(1, max_tokens // length))
    if chunks.shape[0] == 0:
        return _record(length, "masked", "too_short", message=f"no held-out document has {length} tokens")
    if special_ids:
        cls_ids = torch.tensor(special_ids[:1]).expand(chunks.shape[0], 1)
        sep_ids = torch.tensor(special_ids[1:]).expand(chunks.shape[0], len(special_ids) - 1)
        chunks = torch.cat([cls_ids, chunks, sep_ids], dim=1)
    generator = torch.Generator().manual_seed(seed)
    masked = torch.rand(chunks.shape, generator=generator) < probability
    if special_ids:
        masked[:, 0] = False
        masked[:, chunks.shape[1] - len(special_ids) + 1 :] = False
    inputs = chunks.masked_fill(masked, mask_token_id)
    device = _device(model)
    batch = max(1, 8192 // length)
    total, count = 0.0, 0
    for start in range(0, chunks.shape[0], batch):
        ids = inputs[start : start + batch].to(device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
        labels = chunks[start : start + batch].to(device).masked_fill(~masked[start : start + batch].to(device), -100)
        total += float(F.cross_entropy(logits.transpose(1, 2), labels, reduction="sum", ignore_index=-100))
        count += int((labels != -100).sum())
    loss = total / max(1, count)
    return _record(length, "masked", "ok", loss=loss, perplexity=math.exp(loss), tokens=count)


def safely(function, *args, **kwargs) -> dict[str, Any]:
    """Run one measurement; a model that fails at a length is reported as such instead of stopping the run."""
    try:
        return function(*args, **kwargs)
    except (RuntimeError, IndexError, ValueError) as err:
        length = args[2] if len(args) > 2 else kwargs.get("length")
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _record(length, function.__name__, "error", message=message[:300])
