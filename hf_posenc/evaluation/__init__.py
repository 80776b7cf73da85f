"""Long-context evaluation: perplexity at lengths (chunked and sliding window), loss by position, passkey retrieval,
masked-LM loss for encoders, and the report (results.json, results.md, PNG plots).

Entry point: `evaluate_long_context(model, tokenizer, texts, lengths, *, stride=None, passkey=True, out_dir=None)`.
For several models: evaluate each, then `write_report({name: result, ...}, lengths, out_dir)`. Every function that
scores a model does so in eval mode (`eval_mode`) and gives the model back in the mode it came in.
"""

from .bpc import bits_per_character, heldout_bpc, heldout_windows, score_windows, unigram_bpc
from .limits import describe, is_causal_lm, lm_objective, max_context, trained_context_length
from .long_context import evaluate_long_context, tokenize_documents
from .modes import eval_mode
from .passkey import build_prompt, passkey_retrieval
from .perplexity import chunked_perplexity, masked_lm_loss, sliding_window_perplexity

_REPORT = ("markdown_table", "measurement", "write_report")  # need matplotlib (hf_posenc[train]): loaded on first use


def __getattr__(name: str):
    if name in _REPORT:
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "bits_per_character",
    "build_prompt",
    "chunked_perplexity",
    "describe",
    "eval_mode",
    "evaluate_long_context",
    "heldout_bpc",
    "heldout_windows",
    "is_causal_lm",
    "lm_objective",
    "markdown_table",
    "masked_lm_loss",
    "max_context",
    "measurement",
    "passkey_retrieval",
    "score_windows",
    "sliding_window_perplexity",
    "tokenize_documents",
    "trained_context_length",
    "unigram_bpc",
    "write_report",
]
