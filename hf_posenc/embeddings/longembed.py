"""Passkey and needle retrieval at LongEmbed's difficulty (Zhu et al. 2024): per length, 100 candidate documents and
50 queries, each candidate its own stretch of held-out text with its own needle at its own depth.

Unlike `tasks.needle_groups` (candidates that share one haystack and differ only in the needle), every candidate
here starts at its own random place in the held-out books, so a document's embedding must keep a needle that is a
small part of other text (at long lengths, where the books hold few disjoint spans, candidates' haystacks overlap;
their needles always differ). The needles are generated, not taken from any text: people's names built from
syllables (passkey) and facts about generated places (needle), so no model has seen them. Chance is 1 / candidates
for top-1.
"""

from __future__ import annotations

import random
from typing import Any

from .tasks import RetrievalGroup, _boundaries, _ids

ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "w")
VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou")
CODAS = ("", "l", "n", "r", "s", "th", "nd", "rk")
THINGS = ("lantern", "violin", "compass", "teapot", "bell", "clock", "mirror", "kite", "anchor", "quilt", "map", "key")
COLOURS = ("red", "blue", "green", "golden", "silver", "black", "white", "purple", "amber", "grey")
KEEPERS = ("the miller", "the baker", "the ferryman", "the schoolteacher", "the blacksmith", "the innkeeper",
           "the weaver", "the harbour master", "the librarian", "the gardener")  # fmt: skip


def generated_names(count: int, seed: int = 0) -> list[str]:
    """`count` distinct made-up names of two or three syllables, e.g. "Traelon", capitalised."""
    rng, names = random.Random(f"{seed}-names"), dict[str, None]()
    for _ in range(100 * count):
        if len(names) == count:
            break
        parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((2, 3)))]
        names["".join(parts).title()] = None
    if len(names) < count:
        raise ValueError(f"Could not make {count} distinct names.")
    return list(names)


def generated_facts(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` (fact, question) pairs about made-up places, each fact the only one about its place, e.g. ("In
    Dravenholt the golden lantern is kept by the ferryman.", "Who keeps the golden lantern in Dravenholt?")."""
    rng = random.Random(f"{seed}-facts")
    places = [name + rng.choice(("holt", "ford", "mere", "wick", "stead")) for name in generated_names(count, seed + 1)]
    facts = []
    for place in places:
        thing, colour, keeper = rng.choice(THINGS), rng.choice(COLOURS), rng.choice(KEEPERS)
        question = f"Who keeps the {colour} {thing} in {place}?"
        facts.append((f"In {place} the {colour} {thing} is kept by {keeper}.", question))
    return facts


def longembed_groups(
    tokenizer: Any,
    texts: list[str],
    task: str,
    lengths: list[int],
    candidates: int = 100,
    queries: int = 50,
    seed: int = 0,
) -> list[RetrievalGroup]:
    """One group per length: `candidates` documents of `length` tokens (special tokens included), each a random span
    of one of `texts` with its own needle at its own depth (spread evenly from start to end over the candidates, in a
    random order, snapped to the nearest clause end); the first `queries` documents are asked for. Query i belongs to
    document i; `RetrievalGroup.depth` is None and `needle_depths` holds each document's (where its needle begins,
    as a share of its haystack)."""
    if task not in ("passkey", "needle"):
        raise ValueError(f"task must be 'passkey' or 'needle', got {task!r}")
    if not 1 <= queries <= candidates:
        raise ValueError(f"queries must be in [1, candidates={candidates}], got {queries}.")
    books = [_ids(tokenizer, text) for text in texts]
    clause_ends = {_ids(tokenizer, mark)[-1] for mark in (".", ",", ";", "!", "?")}
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    groups = []
    for length in lengths:
        rng = random.Random(f"{seed}-{task}-{length}")
        if task == "passkey":
            names = generated_names(candidates, seed + length)
            keys = [rng.randrange(10_000, 100_000) for _ in names]
            needles = [f"{n}'s pass key is {k}. Remember it. {k} is the pass key for {n}." for n, k in zip(names, keys)]
            asks = [f"What is the pass key for {n}?" for n in names]
        else:
            pairs = generated_facts(candidates, seed + length)
            needles, asks = [fact for fact, _ in pairs], [question for _, question in pairs]
        depths = [i / max(candidates - 1, 1) for i in range(candidates)]
        rng.shuffle(depths)
        documents, placed = [], []
        for needle, depth in zip(needles, depths):
            ids = _ids(tokenizer, " " + needle)
            room = length - specials - len(ids)
            usable = [book for book in books if len(book) > room]
            if room < 1 or not usable:
                raise ValueError(f"{length} tokens cannot hold a {task} needle of {len(ids)} tokens in these texts.")
            book = rng.choice(usable)
            start = rng.randrange(0, len(book) - room)
            hay = book[start : start + room]
            cuts = [0, *_boundaries(hay, clause_ends), len(hay)]
            at = min(cuts, key=lambda cut: abs(cut - depth * len(hay)))
            documents.append(hay[:at] + ids + hay[at:])
            placed.append(at / len(hay))
        groups.append(RetrievalGroup(task, length, None, asks[:queries], documents, placed))
    return groups


def content_groups(
    tokenizer: Any,
    texts: list[str],
    lengths: list[int],
    candidates: int | None = None,
    seed: int = 0,
) -> list[RetrievalGroup]:
    """Content retrieval on distinct documents: per length, `candidates` non-overlapping spans of `length` tokens
    (special tokens included; by default as many as `texts` hold at the longest length, so that every length has the
    same count and chance), each queried by one of its own sentences (8 to 48 tokens) taken at a depth spread evenly
    over the documents. Nothing is planted: a model finds the document only if
    its embedding keeps what that part of the document says. `needle_depths` holds where each query's sentence
    begins, as a share of its document."""
    books = [_ids(tokenizer, text) for text in texts]
    full_stop = _ids(tokenizer, ".")[-1]
    specials = tokenizer.num_special_tokens_to_add(pair=False)

    def cut(size: int) -> list[list[int]]:
        return [book[i : i + size] for book in books for i in range(0, len(book) - size + 1, size)]

    if candidates is None:
        candidates = len(cut(max(lengths) - specials))
    if candidates < 2:
        raise ValueError(f"The texts hold {candidates} distinct {max(lengths)}-token documents: too few to retrieve.")
    groups = []
    for length in lengths:
        spans = cut(length - specials)
        if len(spans) < candidates:
            raise ValueError(f"The texts hold {len(spans)} distinct {length}-token documents, not {candidates}.")
        spans = random.Random(f"{seed}-content-{length}").sample(spans, candidates)
        size = length - specials
        queries, depths = [], []
        for index, doc in enumerate(spans):
            target = index / max(len(spans) - 1, 1) * size
            stops = [0, *_boundaries(doc, full_stop)]
            sentences = [(a, b) for a, b in zip(stops, stops[1:]) if 8 <= b - a <= 48]
            a, b = min(sentences, key=lambda s: abs(s[0] - target)) if sentences else (0, min(32, size))
            queries.append(tokenizer.decode(doc[a:b]).strip())
            depths.append(a / size)
        groups.append(RetrievalGroup("content", length, None, queries, spans, depths))
    return groups
