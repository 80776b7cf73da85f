"""Retrieval tasks in the shape of LongEmbed's synthetic ones (Zhu et al. 2024), built from the held-out books.

- passkey: each candidate document is the same stretch of a book with one person's pass key inserted at a given
  depth; the query asks for that person's pass key.
- needle: the same, with a fact sentence as the needle and a question about it as the query.
- quote (inside the window): the query is one sentence of a passage, the candidates are all the passages (every
  query against every passage).

As in LongEmbed, the candidates of one group share their haystack and differ only in the needle, so a model
finds the right one exactly when its embedding of the whole document keeps the needle. A group holds one query per
candidate; top-1 accuracy is the fraction of queries whose own document ranks first (chance: 1 / candidates).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

NAMES = (
    "Margaret", "Theodore", "Rosalind", "Augustin", "Philippa", "Cornelius", "Evangeline", "Barnaby",
    "Henrietta", "Leopold", "Clementine", "Ambrose", "Winifred", "Tobias", "Seraphina", "Lucian",
)  # fmt: skip
NEEDLES = (
    ("The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
     "What is the best thing to do in San Francisco?"),
    ("The secret ingredient of Grandmother Alder's famous soup is a spoonful of smoked paprika.",
     "What is the secret ingredient of Grandmother Alder's soup?"),
    ("The lighthouse keeper on Karrow Island paints the lighthouse door bright blue every spring.",
     "What colour does the lighthouse keeper on Karrow Island paint the door?"),
    ("The annual chess tournament in Brightwater is always won by a retired clockmaker.",
     "Who always wins the chess tournament in Brightwater?"),
    ("The password to the observatory's archive is the first line of an old sailing song.",
     "What is the password to the observatory's archive?"),
    ("The rarest bird in the valley of Montreve is a small owl with golden feathers.",
     "What is the rarest bird in the valley of Montreve?"),
    ("Every train from Eastfield station leaves exactly seven minutes late on Thursdays.",
     "When do the trains from Eastfield station leave late?"),
    ("The museum in Old Harlow keeps a violin made entirely of glass.",
     "What unusual instrument does the museum in Old Harlow keep?"),
)  # fmt: skip


@dataclass
class RetrievalGroup:
    """Queries and candidate documents (token ids, without special tokens); query i belongs to document i (there may
    be more documents than queries: the rest are distractors)."""

    task: str
    length: int  # tokens of each document with its special tokens ([CLS] ... [SEP]); 0 for quote
    depth: float | None
    queries: list[str]
    documents: list[list[int]]
    needle_depths: list[float] | None = None  # each document's own needle depth, where they differ (longembed)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def _boundaries(tokens: list[int], stops: int | set[int]) -> list[int]:
    """Indices right after each stop token: where a needle can go without splitting a word (or a sentence)."""
    stops = {stops} if isinstance(stops, int) else stops
    return [i + 1 for i, token in enumerate(tokens) if token in stops]


def needle_groups(
    tokenizer: Any,
    text: str,
    task: str,
    lengths: list[int],
    depths: list[float],
    candidates: int,
    seed: int = 0,
) -> list[RetrievalGroup]:
    """One group per (length, depth): `candidates` documents of `length` tokens cut from `text` at one random start,
    each with its own needle at `depth` (0: start, 1: end) of the haystack, snapped to the nearest clause end."""
    if task not in ("passkey", "needle"):
        raise ValueError(f"task must be 'passkey' or 'needle', got {task!r}")
    pool = NAMES if task == "passkey" else NEEDLES
    if not 2 <= candidates <= len(pool):
        raise ValueError(f"{task}: candidates must be in [2, {len(pool)}], got {candidates}.")
    tokens = _ids(tokenizer, text)
    clause_ends = {_ids(tokenizer, mark)[-1] for mark in (".", ",", ";", "!", "?")}
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    rng = random.Random(f"{seed}-{task}")
    groups = []
    for length in lengths:
        for depth in depths:
            picks = rng.sample(range(len(pool)), candidates)
            if task == "passkey":
                keys = [rng.randrange(10_000, 100_000) for _ in picks]
                needles = [
                    f"{pool[p]}'s pass key is {k}. Remember it. {k} is the pass key for {pool[p]}."
                    for p, k in zip(picks, keys, strict=True)
                ]  # noqa: E501
                queries = [f"What is the pass key for {pool[p]}?" for p in picks]
            else:
                needles, queries = [pool[p][0] for p in picks], [pool[p][1] for p in picks]
            needle_ids = [_ids(tokenizer, " " + needle) for needle in needles]
            longest = max(len(ids) for ids in needle_ids)
            room = length - specials - longest  # haystack tokens around the longest needle
            if room < 1:
                raise ValueError(f"{length} tokens cannot hold a {task} needle of {longest} tokens.")
            if len(tokens) < room + 1:
                raise ValueError(f"The text has {len(tokens)} tokens; a {length}-token document needs more.")
            start = rng.randrange(0, len(tokens) - room)
            hay = tokens[start : start + room + longest]
            cuts = [0, *_boundaries(hay[:room], clause_ends)]
            at = min(cuts, key=lambda cut: abs(cut - depth * room))
            documents = []
            for ids in needle_ids:
                body = hay[:at] + ids + hay[at:]
                documents.append(body[: length - specials])
            groups.append(RetrievalGroup(task, length, depth, queries, documents))
    return groups


def quote_group(tokenizer: Any, text: str, passages: int, passage_tokens: int, seed: int = 0) -> RetrievalGroup:
    """`passages` disjoint passages of `passage_tokens` tokens of `text`; each query is one whole sentence (8 to 48
    tokens) from the middle of its passage, which still holds it: find the passage a quotation comes from."""
    tokens = _ids(tokenizer, text)
    full_stop = _ids(tokenizer, ".")[-1]
    stride = len(tokens) // passages
    if stride < passage_tokens:
        raise ValueError(f"The text has {len(tokens)} tokens: too few for {passages} passages of {passage_tokens}.")
    rng = random.Random(f"{seed}-quote")
    queries, documents = [], []
    for index in range(passages):
        offset = index * stride + rng.randrange(0, stride - passage_tokens + 1)
        passage = tokens[offset : offset + passage_tokens]
        stops = [0, *_boundaries(passage, full_stop)]
        sentences = [(a, b) for a, b in zip(stops, stops[1:]) if 8 <= b - a <= 48 and a > 0]
        a, b = min(sentences, key=lambda s: abs(s[0] + s[1] - passage_tokens)) if sentences else (0, 32)
        queries.append(tokenizer.decode(passage[a:b]).strip())
        documents.append(passage)
    return RetrievalGroup("quote", 0, None, queries, documents)
