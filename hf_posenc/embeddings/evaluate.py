"""Top-1 retrieval accuracy of embedding methods on the retrieval groups, and fidelity to the original model."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .encode import chunk_mean, embed_ids, embed_texts
from .sentence_model import SentenceEncoder
from .tasks import RetrievalGroup


@dataclass
class Method:
    """How documents are embedded: `truncate` at `length` tokens (a model that reads them all when `length` covers
    the document), or `chunk_mean` over chunks of `length` tokens. Queries are embedded whole (they are short)."""

    label: str
    encoder: SentenceEncoder
    strategy: str  # "truncate" or "chunk_mean"
    length: int

    def documents(self, sequences: list[list[int]], batch_size: int) -> torch.Tensor:
        kwargs = {"batch_size": batch_size}
        if self.strategy == "chunk_mean":
            return chunk_mean(self.encoder, sequences, self.length, **kwargs)
        return embed_ids(self.encoder, sequences, self.length, **kwargs)

    def queries(self, texts: list[str], batch_size: int) -> torch.Tensor:
        return embed_texts(self.encoder, texts, min(self.length, self.encoder.max_seq_length), batch_size=batch_size)


def top1_hits(queries: torch.Tensor, documents: torch.Tensor) -> list[bool]:
    """Whether each query's own document (same index) has the highest cosine similarity among the documents."""
    queries = torch.nn.functional.normalize(queries, dim=-1)
    documents = torch.nn.functional.normalize(documents, dim=-1)
    best = (queries @ documents.T).argmax(dim=-1)
    return (best == torch.arange(len(queries))).tolist()


def own_ranks(queries: torch.Tensor, documents: torch.Tensor) -> list[int]:
    """The rank (1: first) of each query's own document (same index) by cosine similarity; ties count against it,
    and a NaN score is the lowest."""
    scores = torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(documents, dim=-1).T
    scores = scores.nan_to_num(nan=-math.inf)  # a NaN embedding ranks last, never first
    own = scores[torch.arange(len(queries)), torch.arange(len(queries))]
    return (scores >= own[:, None]).sum(dim=-1).tolist()


def ndcg_at_10(ranks: list[int]) -> list[float]:
    """nDCG@10 of each query with one relevant document at `rank` (LongEmbed's metric): 1 / log2(rank + 1) within the
    top 10, else 0."""
    return [1 / math.log2(rank + 1) if rank <= 10 else 0.0 for rank in ranks]


def evaluate_method(method: Method, groups: list[RetrievalGroup], batch_size: int = 8, progress: bool = False) -> dict:
    """Top-1 accuracy, nDCG@10 and each query's rank of its own document per group (with its number of candidates),
    and top-1 accuracy per task and length (mean over depths) as {task: {length: accuracy}}."""
    rows = []
    for group in tqdm(groups, desc=method.label, disable=not progress, leave=False):
        ranks = own_ranks(method.queries(group.queries, batch_size), method.documents(group.documents, batch_size))
        accuracy = sum(rank == 1 for rank in ranks) / len(ranks)
        rows.append({"task": group.task, "length": group.length, "depth": group.depth, "accuracy": accuracy,
                     "ndcg_at_10": statistics.fmean(ndcg_at_10(ranks)), "ranks": ranks,
                     "candidates": len(group.documents)})  # fmt: skip
    summary: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(row["task"] for row in rows):
        lengths = dict.fromkeys(row["length"] for row in rows if row["task"] == task)
        summary[task] = {
            str(length): statistics.fmean(r["accuracy"] for r in rows if r["task"] == task and r["length"] == length)
            for length in lengths
        }
    about = {"label": method.label, "strategy": method.strategy, "length": method.length}
    return {**about, "summary": summary, "groups": rows}


def fidelity(original: SentenceEncoder, converted: SentenceEncoder, sequences: list[list[int]], length: int) -> dict:
    """Cosine between the original's and the converted model's embeddings of the same in-window sequences."""
    a = torch.nn.functional.normalize(embed_ids(original, sequences, length), dim=-1)
    b = torch.nn.functional.normalize(embed_ids(converted, sequences, length), dim=-1)
    cosines = (a * b).sum(-1)
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "passages": len(sequences),
        "cosines": [round(float(c), 6) for c in cosines],  # per sequence, for intervals and paired tests
    }
