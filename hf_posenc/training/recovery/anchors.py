"""Frozen anchors: a `learned` table's rows that conversion kept as they were get no gradient, so they stay the
pretrained ones while the new rows train (E5-Base-4k, LongEmbed: Zhu et al. 2024). With no gradient, AdamW leaves
them bit for bit (the table gets no weight decay)."""

from __future__ import annotations

import torch
from torch import nn

from ...modeling.posenc_base import PositionEncoding
from ..errors import RecipeError


def kept_rows(model: nn.Module) -> list[int]:
    """The rows of the `learned` table that are the pretrained ones: the first trained-window rows ('copy'), the
    first `keep` ('keep_stretch'), or every stride-th ('anchor'); RecipeError for another encoding or 'interpolate',
    which moves every row."""
    config = model.config
    options = config.position_encoding_options or {}
    if config.position_encoding != "learned" or options.get("method") == "interpolate":
        raise RecipeError(
            "--freeze_trained_positions keeps the pretrained rows of a 'learned' table converted with method 'copy', "
            f"'keep_stretch' or 'anchor'; this model's encoding is {config.position_encoding!r} "
            f"{options.get('method', '')}."
        )
    window = config.trained_context_length
    if options.get("method") == "anchor":
        stride = options["max_positions"] // window
        return list(range(0, window * stride, stride))
    return list(range(window if options.get("method") == "copy" else options["keep"]))


def freeze_rows(model: nn.Module, rows: list[int]) -> list[torch.utils.hooks.RemovableHandle]:
    """Zero the gradient of `rows` of every trained `learned` table in `model` (a PEFT copy that trains in place of
    the table included); returns the hooks' handles."""
    handles = []
    for module in model.modules():
        if isinstance(module, PositionEncoding) and module.name == "learned" and module.weight.requires_grad:
            kept = torch.zeros(module.weight.shape[0], 1, dtype=torch.bool, device=module.weight.device)
            kept[rows] = True
            handles.append(module.weight.register_hook(lambda grad, kept=kept: grad.masked_fill(kept, 0)))
    return handles
