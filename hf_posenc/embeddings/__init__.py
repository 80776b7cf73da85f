"""Long-document sentence embeddings: read and write sentence-transformers folders, embed long texts (whole,
truncated, chunked), LongEmbed-style retrieval tasks from the shipped books, and distillation from the original."""

from .distill import DistillConfig, distill, distillation_data
from .encode import chunk_mean, embed_ids, embed_texts
from .evaluate import Method, evaluate_method, fidelity, top1_hits
from .sentence_model import SentenceEncoder, load_sentence_encoder, save_sentence_encoder
from .tasks import RetrievalGroup, needle_groups, quote_group

__all__ = [
    "DistillConfig",
    "Method",
    "RetrievalGroup",
    "SentenceEncoder",
    "chunk_mean",
    "quote_group",
    "distill",
    "distillation_data",
    "embed_ids",
    "embed_texts",
    "evaluate_method",
    "fidelity",
    "load_sentence_encoder",
    "needle_groups",
    "save_sentence_encoder",
    "top1_hits",
]
