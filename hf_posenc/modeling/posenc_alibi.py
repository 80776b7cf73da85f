"""ALiBi (Press et al., 2022): a fixed per-head linear penalty on distance, no learned parameters.

Slopes follow BLOOM's `_get_alibi_slopes` for any head count, powers of two or not. Decoders penalise
how far back a key lies; encoders penalise |distance| symmetrically.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .posenc_base import SCORE_BACKENDS, ModelInfo, PositionEncoding, register_encoding


def alibi_slopes(num_heads: int) -> torch.Tensor:
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra_base = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        slopes += [extra_base ** (2 * i + 1) for i in range(min(closest, num_heads - closest))]
    return torch.tensor(slopes, dtype=torch.float32)


@register_encoding
class ALiBi(PositionEncoding):
    name = "alibi"
    kind = "bias"
    relative = True
    description = "Linear per-head distance penalty on the attention scores (causal or symmetric), no parameters."
    limits = (
        "No hard length limit. The fixed penalty grows linearly with distance, so distant tokens get little "
        "attention at any length."
    )
    options = {}
    backends = SCORE_BACKENDS
    float32_buffers = ("slopes",)

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        self.register_buffer("slopes", alibi_slopes(info.num_heads), persistent=False)

    def reset_buffers(self) -> None:
        self.slopes = alibi_slopes(self.info.num_heads).to(
            self.slopes.device if self.slopes.device.type != "meta" else None
        )

    def distance_bias(self, distances: torch.Tensor) -> torch.Tensor:
        return alibi_bias(distances, self.info.num_heads, self.info.causal, self.slopes).unsqueeze(0)


def alibi_bias(
    distances: torch.Tensor, num_heads: int, causal: bool, slopes: torch.Tensor | None = None
) -> torch.Tensor:
    """[heads, *distances.shape]: minus slope x how far back the key lies (causal) or x |distance| (encoders)."""
    slopes = alibi_slopes(num_heads).to(distances.device) if slopes is None else slopes
    slopes = slopes.view(-1, *([1] * distances.ndim))
    if causal:  # a key that lies back by -d >= 0 gets slope * d (integer distances promote to float32)
        return slopes * distances.clamp(max=0)
    return -(slopes * distances.abs())
