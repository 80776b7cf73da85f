"""The fixed sine/cosine table of "Attention Is All You Need", added at the input, for any length."""

from __future__ import annotations

from typing import Any

import torch

from .posenc_base import ModelInfo, Option, PositionEncoding, PositionEncodingError, check_positive, register_encoding


def sinusoidal_table(position_ids: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """float32 [..., dim] with sin on even and cos on odd channels, computed from the positions directly."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=position_ids.device) / dim))
    angles = position_ids[..., None].float() * inv_freq
    table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
    return table[..., :dim]


@register_encoding
class SinusoidalEncoding(PositionEncoding):
    name = "sinusoidal"
    kind = "input"
    relative = False
    description = "Fixed sinusoidal absolute positions added to the token embeddings, no length limit."
    limits = (
        "No hard length limit, but positions are absolute: past the trained window the model meets positions it "
        "was not fine-tuned on."
    )
    options = {
        "base": Option(10000.0, "Wavelength base of the sine/cosine table."),
        "scale": Option(
            "auto",
            "Multiplier of the table; 'auto' matches the root-mean-square of the learned table it replaces.",
        ),
    }

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        check_positive("base", options["base"])
        if options["scale"] != "auto":
            check_positive("scale", options["scale"])
        if info.input_size % 2:
            raise PositionEncodingError(f"'sinusoidal' needs an even embedding size, got {info.input_size}.")
        return options

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        scale = options["scale"]
        self.scale = 1.0 if scale == "auto" else float(scale)

    def load_absolute_table(self, weight: torch.Tensor) -> None:
        if self.config_options["scale"] == "auto":
            # the sinusoid has RMS 1/sqrt(2); match the table it replaces so the embeddings keep their balance
            self.scale = float(weight.float().pow(2).mean().sqrt() * 2**0.5)
            self.config_options["scale"] = self.scale

    def embed(self, position_ids: torch.Tensor) -> torch.Tensor:
        return sinusoidal_table(position_ids, self.info.input_size, self.config_options["base"]) * self.scale
