"""What a model can run at: the longest context its position encoding allows, and whether it is causal."""

from __future__ import annotations

from typing import Any

from torch import nn

UNLIMITED_ENCODINGS = ("rope", "t5_bias", "alibi", "sinusoidal", "nope")


def is_causal_lm(model: nn.Module) -> bool:
    """True for next-token models (GPT-2 style heads), False for masked-LM encoders (BERT style)."""
    config = model.config
    if getattr(config, "is_decoder", False):
        return True
    can_generate = getattr(model, "can_generate", None)
    return bool(can_generate()) if callable(can_generate) else False


def lm_objective(model: nn.Module) -> str | None:
    """What the evaluation measures: "causal" for a causal LM, "masked" for a masked LM (`*ForMaskedLM`), None for
    a model without a language-model head (`BertModel`, a classification head, `BertForPreTraining`'s two heads)."""
    get_head = getattr(model, "get_output_embeddings", None)
    if not callable(get_head) or get_head() is None:
        return None
    if is_causal_lm(model):
        return "causal"
    return "masked" if type(model).__name__.endswith("ForMaskedLM") else None


def max_context(model: nn.Module) -> int | None:
    """The longest input `model` can encode, or None when its positions have no hard limit."""
    config = model.config
    encoding = getattr(config, "position_encoding", None)
    if encoding is None:  # an original checkpoint: the learned absolute table is the limit
        return int(config.max_position_embeddings)
    if encoding == "learned":
        options: dict[str, Any] = config.position_encoding_options or {}
        return int(options.get("max_positions") or config.max_position_embeddings)
    return None


def trained_context_length(model: nn.Module) -> int:
    """The window the weights were pretrained at (the original table size for unconverted models)."""
    config = model.config
    return int(getattr(config, "trained_context_length", None) or config.max_position_embeddings)


def describe(model: nn.Module) -> dict[str, Any]:
    """A JSON-able summary of the model under evaluation."""
    config = model.config
    return {
        "class": type(model).__name__,
        "model_type": config.model_type,
        "position_encoding": getattr(config, "position_encoding", "learned (original)"),
        "position_encoding_options": getattr(config, "position_encoding_options", None),
        "trained_context_length": trained_context_length(model),
        "max_context": max_context(model),
        "causal": is_causal_lm(model),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
