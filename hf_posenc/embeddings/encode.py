"""Embeddings of token sequences with a `SentenceEncoder`: whole, truncated, or chunked and mean-pooled."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from .sentence_model import SentenceEncoder


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence ([CLS] and [SEP] for BERT)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:at], full[at + len(bare) :]


def with_specials(tokenizer: Any, sequences: list[list[int]]) -> list[list[int]]:
    """[CLS] ids [SEP] for each sequence: the tokenizer's own special tokens around one sequence."""
    prefix, suffix = special_tokens(tokenizer)
    return [[*prefix, *ids, *suffix] for ids in sequences]


@torch.no_grad()
def embed_ids(
    encoder: SentenceEncoder,
    sequences: list[list[int]],
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "embed",
) -> torch.Tensor:
    """One embedding per sequence of token ids (no special tokens), cut to `max_length` tokens with its special
    tokens, as sentence-transformers truncates. Sequences are batched by length, so padding stays small."""
    specials = encoder.tokenizer.num_special_tokens_to_add(pair=False)
    inputs = with_specials(encoder.tokenizer, [ids[: max_length - specials] for ids in sequences])
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    model = encoder.model
    device = next(model.parameters()).device
    pad = encoder.tokenizer.pad_token_id or 0
    out = torch.empty(len(inputs), encoder_dimension(encoder), dtype=torch.float32)
    was_training = model.training
    model.eval()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        longest = max(len(inputs[i]) for i in batch)
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
            mask[row, : len(inputs[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out[batch] = encoder.pool(hidden, mask).float().cpu()
    model.train(was_training)
    return out


def encoder_dimension(encoder: SentenceEncoder) -> int:
    return encoder.model.config.hidden_size * len(encoder.pooling_modes)


def embed_texts(encoder: SentenceEncoder, texts: list[str], max_length: int, **kwargs: Any) -> torch.Tensor:
    ids = [encoder.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return embed_ids(encoder, ids, max_length, **kwargs)


def chunk_mean(encoder: SentenceEncoder, sequences: list[list[int]], chunk_length: int, **kwargs: Any) -> torch.Tensor:
    """Each sequence cut into chunks of `chunk_length` tokens (with special tokens), each chunk embedded, the chunk
    embeddings averaged (then L2-normalised if the model normalises): the usual way to embed a long document with a
    short model."""
    room = chunk_length - encoder.tokenizer.num_special_tokens_to_add(pair=False)
    chunks, owner = [], []
    for index, ids in enumerate(sequences):
        for start in range(0, max(len(ids), 1), room):
            chunks.append(ids[start : start + room])
            owner.append(index)
    embedded = embed_ids(encoder, chunks, chunk_length, **kwargs)
    owner_t = torch.tensor(owner)
    summed = torch.zeros(len(sequences), embedded.shape[-1]).index_add_(0, owner_t, embedded)
    mean = summed / torch.bincount(owner_t, minlength=len(sequences)).clamp(min=1)[:, None]
    return torch.nn.functional.normalize(mean, dim=-1) if encoder.normalize else mean
