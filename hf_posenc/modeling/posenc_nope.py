"""NoPE: no position information at all. In a decoder the causal mask alone carries order."""

from __future__ import annotations

import warnings
from typing import Any

from .posenc_base import ModelInfo, PositionEncoding, register_encoding


@register_encoding
class NoPositionEncoding(PositionEncoding):
    name = "nope"
    kind = "none"
    relative = True
    description = "No position encoding (order comes from the causal mask; encoders become order-blind)."
    options = {}

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        if not info.causal:
            warnings.warn(
                "'nope' on a bidirectional encoder removes all order information: it sees a bag of tokens.",
                UserWarning,
                stacklevel=4,
            )
        return options
