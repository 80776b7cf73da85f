"""Frozen anchors: a `learned` table's rows that conversion kept as they were get no gradient, so they stay the
pretrained ones while the new rows train (E5-Base-4k, LongEmbed: Zhu et al. 2024). With no gradient, AdamW leaves
them bit for bit (the table gets no weight decay)."""

from __future__ import annotations

import torch
from torch import nn

from ...modeling.posenc_base import PositionEncoding
from ..errors import RecipeError


def kept_rows(model: nn.Module) -> int:
    """How many leading rows of the `learned` table are the pretrained ones: the trained window ('copy') or `keep`
    ('keep_stretch'); RecipeError for another encoding or 'interpolate', which moves every row."""
    config = model.config
    options = config.position_encoding_options or {}
    if config.position_encoding != "learned" or options.get("method") == "interpolate":
        raise RecipeError(
            "--freeze_trained_positions keeps the pretrained rows of a 'learned' table converted with method 'copy' "
            f"or 'keep_stretch'; this model's encoding is {config.position_encoding!r} {options.get('method', '')}."
        )
    return config.trained_context_length if options.get("method") == "copy" else options["keep"]


def freeze_rows(model: nn.Module, rows: int) -> list[torch.utils.hooks.RemovableHandle]:
    """Zero the gradient of the first `rows` rows of every trained `learned` table in `model` (a PEFT copy that
    trains in place of the table included); returns the hooks' handles."""
    handles = []
    for module in model.modules():
        if isinstance(module, PositionEncoding) and module.name == "learned" and module.weight.requires_grad:
            handles.append(
                module.weight.register_hook(lambda grad: torch.cat((torch.zeros_like(grad[:rows]), grad[rows:])))
            )
    return handles
