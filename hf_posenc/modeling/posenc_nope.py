"""NoPE: no position information at all. In a decoder the causal mask alone carries order."""

from __future__ import annotations

from typing import Any

from transformers.utils import logging

from .posenc_base import ModelInfo, PositionEncoding, register_encoding

logger = logging.get_logger(__name__)


@register_encoding
class NoPositionEncoding(PositionEncoding):
    name = "nope"
    kind = "none"
    relative = True
    description = "No position encoding (order comes from the causal mask; encoders become order-blind)."
    options = {}

    @classmethod
    def describe_limits(cls, options: dict[str, Any], causal: bool) -> str:
        if causal:
            return (
                "No hard length limit. Order comes only from the causal mask; quality past the trained window "
                "depends on fine-tuning at those lengths."
            )
        return "No position information at all: this encoder is order-blind (it sees a bag of tokens) at every length."

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        if not info.causal:
            logger.warning("'nope' on a bidirectional encoder removes all order information: it sees a bag of tokens.")
        return options
