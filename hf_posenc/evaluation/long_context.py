"""`evaluate_long_context`: perplexity at several lengths, loss by position and passkey retrieval for one model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .limits import describe, is_causal_lm
from .passkey import passkey_retrieval
from .perplexity import chunked_perplexity, masked_lm_loss, safely, sliding_window_perplexity
from .report import write_report


def tokenize_documents(tokenizer: Any, texts: list[str]) -> list[torch.Tensor]:
    """Each text as one 1-D LongTensor of token ids, without special tokens (no length warning for long texts)."""
    saved = getattr(tokenizer, "model_max_length", None)
    tokenizer.model_max_length = int(1e12)
    try:
        return [
            torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long) for text in texts
        ]
    finally:
        tokenizer.model_max_length = saved


def evaluate_long_context(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str],
    lengths: list[int],
    *,
    stride: int | None = None,
    passkey: bool = True,
    out_dir: str | Path | None = None,
    max_tokens: int = 32768,
    sliding: bool = True,
    passkey_trials: int = 4,
    passkey_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
    name: str = "model",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` on held-out `texts` at each context length in `lengths`.

    Causal LMs get perplexity on non-overlapping chunks and with a sliding window (`stride` tokens scored per
    window, default half the length), the loss by position, and passkey retrieval. Masked LMs get the masked-LM
    loss (15% of tokens masked, fixed seed). At most `max_tokens` tokens are scored per length and mode. A length
    the model cannot encode is recorded with status "unsupported" instead of failing. With `out_dir`, writes
    results.json, results.md and PNG plots there.

    Returns {"model": {...}, "objective": "causal"|"masked", "lengths", "stride",
    "perplexity": [{"length", "mode", "status", "loss", "perplexity", "tokens", ...}], "passkey": {...} | None}.
    """
    lengths = sorted({int(x) for x in lengths})
    if not lengths or lengths[0] < 2:
        raise ValueError(f"lengths must be integers >= 2, got {lengths!r}.")
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("No evaluation text: texts is empty.")
    was_training = model.training
    model.eval()
    documents = tokenize_documents(tokenizer, texts)
    causal = is_causal_lm(model)
    records: list[dict[str, Any]] = []
    jobs: list[tuple] = []
    for length in lengths:
        if causal:
            jobs.append((chunked_perplexity, length, {"max_tokens": max_tokens}))
            if sliding:
                jobs.append((sliding_window_perplexity, length, {"stride": stride, "max_tokens": max_tokens}))
        else:
            specials = tuple(i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None)
            kwargs = {"mask_token_id": tokenizer.mask_token_id, "max_tokens": max_tokens, "special_ids": specials}
            jobs.append((masked_lm_loss, length, kwargs))
    bar = tqdm(jobs, desc=f"eval {name}", disable=not progress, leave=False)
    for function, length, kwargs in bar:
        bar.set_postfix(length=length, mode=function.__name__.split("_")[0])
        records.append(safely(function, model, documents, length, **kwargs))
    passkey_result = None
    if passkey and causal:
        passkey_result = passkey_retrieval(model, tokenizer, lengths, depths=passkey_depths, trials=passkey_trials)
    model.train(was_training)
    result = {
        "model": describe(model),
        "objective": "causal" if causal else "masked",
        "lengths": lengths,
        "stride": stride,
        "documents": len(documents),
        "document_tokens": [int(d.numel()) for d in documents],
        "perplexity": records,
        "passkey": passkey_result,
    }
    if out_dir is not None:
        write_report({name: result}, lengths, out_dir, title=f"Long-context evaluation: {name}")
    return result
