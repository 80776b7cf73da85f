"""`evaluate_long_context`: perplexity at several lengths, loss by position and passkey retrieval for one model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .limits import describe, lm_objective
from .modes import evaluates
from .passkey import passkey_retrieval
from .perplexity import chunked_perplexity, masked_lm_loss, safely, sliding_window_perplexity

logger = logging.getLogger(__name__)

NO_LM_HEAD = (
    "{name} has no language-model head, and this evaluation needs one: a causal LM (e.g. GPT2LMHeadModel: perplexity "
    "and passkey retrieval) or a masked LM (e.g. BertForMaskedLM: masked-LM loss). A sentence encoder "
    "(a sentence-transformers folder) is evaluated on long-document retrieval by recipes/extend_sentence_encoder.py "
    "(hf_posenc.embeddings); to score an encoder's language modelling here, give it a masked-LM head "
    "(recipes/finetune_mlm.py trains one) and evaluate that checkpoint."
)


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


@evaluates
def evaluate_long_context(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str] | list[torch.Tensor],
    lengths: list[int],
    *,
    stride: int | None = None,
    passkey: bool = True,
    out_dir: str | Path | None = None,
    max_tokens: int = 32768,
    sliding: bool = True,
    passkey_trials: int = 4,
    passkey_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
    passkey_seed: int = 0,
    passkey_lengths: list[int] | None = None,
    name: str = "model",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` on held-out `texts` (strings, or documents already tokenized as 1-D LongTensors) at each
    context length in `lengths`.

    Causal LMs get perplexity on non-overlapping chunks and (unless `sliding=False`) with a sliding window (`stride`
    tokens scored per window, default half the length), the loss by position, and passkey retrieval (keys drawn with
    `passkey_seed`; at the `passkey_lengths` among `lengths`, default all of them). Masked LMs get the masked-LM loss
    (15% of tokens masked, fixed seed); a model with neither head (e.g. `BertModel`) raises ValueError. At most
    `max_tokens` tokens are scored per length and mode, except that a length longer than that still scores one chunk
    of that length. A length the model cannot encode is recorded with status "unsupported" instead of failing. With
    `out_dir`, writes results.json, results.md and PNG plots there (results.json alone without matplotlib).

    Returns {"model": {...}, "objective": "causal"|"masked", "lengths", "stride",
    "perplexity": [{"length", "mode", "status", "loss", "perplexity", "tokens", ...}], "passkey": {...} | None}.
    """
    lengths = sorted({int(x) for x in lengths})
    if not lengths or lengths[0] < 2:
        raise ValueError(f"lengths must be integers >= 2, got {lengths!r}.")
    tokenized = bool(texts) and all(isinstance(t, torch.Tensor) for t in texts)
    if not texts or not (tokenized or any(t.strip() for t in texts)):
        raise ValueError("No evaluation text: texts is empty.")
    objective = lm_objective(model)
    if objective is None:
        raise ValueError(NO_LM_HEAD.format(name=type(model).__name__))
    if objective == "masked" and getattr(tokenizer, "mask_token_id", None) is None:
        raise ValueError("The masked-LM evaluation needs a tokenizer with a mask token; this one has none.")
    documents = list(texts) if tokenized else tokenize_documents(tokenizer, texts)
    causal = objective == "causal"
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
    keyed = lengths if passkey_lengths is None else [n for n in lengths if n in {int(x) for x in passkey_lengths}]
    if passkey and causal and keyed:
        passkey_result = passkey_retrieval(
            model, tokenizer, keyed, depths=passkey_depths, trials=passkey_trials, seed=passkey_seed
        )
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
        save_report({name: result}, lengths, out_dir, title=f"Long-context evaluation: {name}")
    return result


def save_report(results: dict[str, dict[str, Any]], lengths: list[int], out_dir: str | Path, title: str) -> None:
    """`write_report` (results.json, results.md, plots); without matplotlib, results.json alone and a warning."""
    try:
        from .report import write_report
    except ModuleNotFoundError as error:
        if error.name != "matplotlib":
            raise
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"lengths": lengths, "models": results}, indent=2) + "\n")
        logger.warning(
            "matplotlib is not installed, so %s has results.json but no results.md or plots; "
            "pip install 'hf_posenc[train]' draws them.",
            out,
        )
        return
    write_report(results, lengths, out_dir, title=title)
