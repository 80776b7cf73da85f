"""A learned absolute table extended past the pretrained window (Longformer's copy, or interpolation)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .posenc_base import ModelInfo, Option, PositionEncoding, PositionEncodingError, register_encoding

METHODS = ("copy", "interpolate")


@register_encoding
class LearnedEncoding(PositionEncoding):
    name = "learned"
    kind = "input"
    relative = False
    description = "Learned absolute table extended to max_positions by tiling (copy) or linear interpolation."
    limits = (
        "Hard limit: {max_positions} positions (the rows of the table); a longer input is an error. Rows past the "
        "trained window are filled by '{method}' and mean little until the model is fine-tuned at those lengths."
    )
    options = {
        "max_positions": Option(None, "Rows of the extended table (default: 4x the trained window)."),
        "method": Option("copy", "How new rows are filled: 'copy' tiles the old table, 'interpolate' stretches it."),
    }

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        if options["max_positions"] is None:
            options["max_positions"] = 4 * info.trained_context_length
        rows = options["max_positions"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < info.trained_context_length:
            raise PositionEncodingError(
                f"Option 'max_positions' must be an integer >= the trained window ({info.trained_context_length}), "
                f"got {rows!r}."
            )
        if options["method"] not in METHODS:
            raise PositionEncodingError(f"Option 'method' must be one of {METHODS}, got {options['method']!r}.")
        return options

    @classmethod
    def keeps_trained_window(cls, options: dict[str, Any]) -> bool:
        return options.get("method") == "copy"  # the first rows are the old table, bit for bit

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        self.weight = nn.Parameter(torch.zeros(options["max_positions"], info.input_size))

    def load_absolute_table(self, weight: torch.Tensor) -> None:
        rows, old = self.weight.shape[0], weight.shape[0]
        with torch.no_grad():
            if self.config_options["method"] == "copy":
                tiled = weight.repeat((rows + old - 1) // old, 1)[:rows]
            else:
                stretched = nn.functional.interpolate(
                    weight.float().T[None], size=rows, mode="linear", align_corners=True
                )[0].T
                tiled = stretched.to(weight.dtype)
            self.weight.copy_(tiled.to(self.weight.dtype))

    def embed(self, position_ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight.shape[0]
        if position_ids.shape[-1] > rows or (not torch.compiler.is_compiling() and int(position_ids.max()) >= rows):
            raise PositionEncodingError(
                f"Position {int(position_ids.max())} is past the learned table of {rows} rows; convert with a "
                f"larger 'max_positions' or choose a relative encoding."
            )
        return nn.functional.embedding(position_ids, self.weight)
