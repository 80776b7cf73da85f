"""RoPE (Su et al., 2021): q and k rotated by an angle proportional to position, before the KV cache.

Frequencies come from transformers' own `modeling_rope_utils` for every scaled `rope_type`; cos/sin are
computed in float32 once per forward and shared by all layers.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from .posenc_base import ModelInfo, Option, PositionEncoding, PositionEncodingError, check_positive, register_encoding

ROPE_TYPES = ("default", *ROPE_INIT_FUNCTIONS)


def apply_rotation(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """`x * cos + cat(-x2, x1) * sin` in three passes: `roll` swaps the halves, `signed_sin` carries the sign."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


@register_encoding
class RotaryEncoding(PositionEncoding):
    name = "rope"
    kind = "rotary"
    relative = True
    description = "Rotary position embedding on q and k (any transformers rope_type for scaling)."
    options = {
        "theta": Option(10000.0, "RoPE base (rope_theta)."),
        "partial_rotary_factor": Option(1.0, "Fraction of each head's dimensions that rotate (the rest pass through)."),
        "scaling": Option(
            None,
            "transformers rope_parameters for scaled RoPE, e.g. {'rope_type': 'yarn', 'factor': 4.0}; "
            "original_max_position_embeddings defaults to the trained window. None for plain RoPE.",
        ),
    }
    float32_buffers = ("inv_freq", "long_inv_freq")

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        check_positive("theta", options["theta"])
        options["theta"] = float(options["theta"])
        factor = options["partial_rotary_factor"]
        check_positive("partial_rotary_factor", factor)
        rotary_dim = int(info.head_dim * factor)
        if factor > 1 or rotary_dim < 2 or rotary_dim % 2:
            raise PositionEncodingError(
                f"partial_rotary_factor={factor} gives a rotary dimension of {rotary_dim} for heads of size "
                f"{info.head_dim}; it must be even, at least 2 and at most the head size (factor in (0, 1])."
            )
        scaling = options["scaling"]
        if scaling is not None:
            if not isinstance(scaling, dict) or scaling.get("rope_type") not in ROPE_TYPES:
                raise PositionEncodingError(
                    f"Option 'scaling' must be None or a dict with 'rope_type' in {ROPE_TYPES}, got {scaling!r}."
                )
            scaling = dict(scaling)
            if scaling["rope_type"] in ("yarn", "longrope", "llama3"):
                scaling.setdefault("original_max_position_embeddings", info.trained_context_length)
            options["scaling"] = scaling
        try:  # transformers validates the rope_parameters it will use
            rope_config(options, info)
        except (KeyError, ValueError, TypeError) as err:
            raise PositionEncodingError(f"Invalid RoPE scaling {scaling!r}: {err}") from None
        return options

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        self.rope_type = (options["scaling"] or {}).get("rope_type", "default")
        self.rotary_dim = int(info.head_dim * options["partial_rotary_factor"])
        self.register_buffer("inv_freq", torch.empty(self.rotary_dim // 2), persistent=False)
        if self.rope_type == "longrope":
            self.register_buffer("long_inv_freq", torch.empty(self.rotary_dim // 2), persistent=False)
        self.reset_buffers()

    def _rope_config(self) -> PreTrainedConfig:
        return rope_config(self.config_options, self.info)

    def _frequencies(self, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        if self.rope_type == "default":
            dim, theta = self.rotary_dim, self.config_options["theta"]
            return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)), 1.0
        return ROPE_INIT_FUNCTIONS[self.rope_type](self._rope_config(), None, seq_len=seq_len)

    def reset_buffers(self) -> None:
        device = self.inv_freq.device if self.inv_freq.device.type != "meta" else None
        inv_freq, self.attention_scaling = self._frequencies()
        self.inv_freq = inv_freq.to(device=device, dtype=torch.float32)
        if self.rope_type == "longrope":
            original = self._rope_config().rope_parameters["original_max_position_embeddings"]
            self.long_inv_freq = self._frequencies(seq_len=original + 1)[0].to(device=device, dtype=torch.float32)

    def _inv_freq_for(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, float]:
        if self.rope_type == "dynamic":
            seq_len = int(position_ids.max()) + 1
            if seq_len > self.info.trained_context_length:
                inv_freq, scaling = self._frequencies(seq_len=seq_len)
                return inv_freq.to(position_ids.device), scaling
        if self.rope_type == "longrope":
            original = self._rope_config().rope_parameters["original_max_position_embeddings"]
            longer = position_ids.max() + 1 > original
            return torch.where(longer, self.long_inv_freq, self.inv_freq), self.attention_scaling
        return self.inv_freq, self.attention_scaling

    def rotary(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq, scaling = self._inv_freq_for(position_ids)
        freqs = position_ids[..., None].float() * inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos() * scaling, angles.sin() * scaling

    def rotate(self, query, key, cos, sin):
        half = sin.shape[-1] // 2
        cos, sin = cos.unsqueeze(1), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1).unsqueeze(1)
        d = self.rotary_dim
        if d == query.shape[-1]:
            return apply_rotation(query, cos, sin), apply_rotation(key, cos, sin)
        q_rot = apply_rotation(query[..., :d], cos, sin)
        k_rot = apply_rotation(key[..., :d], cos, sin)
        return torch.cat((q_rot, query[..., d:]), dim=-1), torch.cat((k_rot, key[..., d:]), dim=-1)


def rope_config(options: dict[str, Any], info: ModelInfo) -> PreTrainedConfig:
    """A minimal transformers config carrying `rope_parameters`, as `ROPE_INIT_FUNCTIONS` expect it."""
    params = {
        "rope_type": "default",
        **(options["scaling"] or {}),
        "rope_theta": options["theta"],
        "partial_rotary_factor": options["partial_rotary_factor"],
    }
    max_positions = info.trained_context_length
    if params["rope_type"] in ("yarn", "longrope", "llama3") and "factor" in params:
        max_positions = int(params["original_max_position_embeddings"] * params["factor"])
    return PreTrainedConfig(
        hidden_size=info.hidden_size,
        num_attention_heads=info.num_heads,
        head_dim=info.head_dim,
        max_position_embeddings=max_positions,
        rope_parameters=params,
    )
