"""Long-document sentence embeddings: read and write sentence-transformers folders, embed long texts (whole,
truncated, chunked), LongEmbed-style retrieval tasks from the shipped books, and distillation from the original."""

from .distill import DistillConfig, distill, distillation_data
from .encode import chunk_mean, embed_ids, embed_texts
from .evaluate import Method, evaluate_method, fidelity, ndcg_at_10, own_ranks, top1_hits
from .longembed import content_groups, generated_facts, generated_names, longembed_groups
from .sentence_model import SentenceEncoder, load_sentence_encoder, save_sentence_encoder
from .tasks import RetrievalGroup, needle_groups, quote_group

__all__ = [
    "DistillConfig",
    "Method",
    "RetrievalGroup",
    "SentenceEncoder",
    "chunk_mean",
    "content_groups",
    "quote_group",
    "distill",
    "distillation_data",
    "embed_ids",
    "embed_texts",
    "evaluate_method",
    "fidelity",
    "generated_facts",
    "generated_names",
    "load_sentence_encoder",
    "longembed_groups",
    "ndcg_at_10",
    "needle_groups",
    "own_ranks",
    "save_sentence_encoder",
    "top1_hits",
]
