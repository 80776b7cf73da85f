"""RoPE (Su et al., 2021): q and k rotated by an angle proportional to position, before the KV cache.

Frequencies come from transformers' own `modeling_rope_utils` for every scaled `rope_type`; cos/sin are
computed in float32 once per forward (three kernels: one product of positions and frequencies, its cos and sin) and
shared by all layers.
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


def signed_frequencies(inv_freq: torch.Tensor) -> torch.Tensor:
    """[rotary_dim] frequencies of the rotated dimensions, those of the first half negated: the angles they give have
    the cos of transformers' rotation and the sin that `apply_rotation` takes (cos is even and sin odd, exactly)."""
    return torch.cat((-inv_freq, inv_freq))


@register_encoding
class RotaryEncoding(PositionEncoding):
    name = "rope"
    kind = "rotary"
    relative = True
    description = "Rotary position embedding on q and k (any transformers rope_type for scaling)."
    limits = (
        "No hard length limit. Past the trained window the rotation angles are new to the model: quality there "
        "depends on fine-tuning at longer lengths (or on RoPE scaling)."
    )
    options = {
        "theta": Option(10000.0, "RoPE base (rope_theta)."),
        "partial_rotary_factor": Option(1.0, "Fraction of each head's dimensions that rotate (the rest pass through)."),
        "scaling": Option(
            None,
            "transformers rope_parameters for scaled RoPE, e.g. {'rope_type': 'yarn', 'factor': 4.0}; "
            "original_max_position_embeddings defaults to the trained window. None for plain RoPE.",
        ),
    }
    float32_buffers = ("inv_freq", "long_inv_freq", "signed_inv_freq")

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
        self.rope_parameters = rope_config(options, info)  # built once: a config per forward costs 150 us
        self.original_length = self.rope_parameters.rope_parameters.get(
            "original_max_position_embeddings", info.trained_context_length
        )
        self.register_buffer("inv_freq", torch.empty(self.rotary_dim // 2), persistent=False)
        self.register_buffer("signed_inv_freq", torch.empty(self.rotary_dim), persistent=False)
        if self.rope_type == "longrope":
            self.register_buffer("long_inv_freq", torch.empty(self.rotary_dim // 2), persistent=False)
        self.reset_buffers()

    def _frequencies(self, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        if self.rope_type == "default":
            dim, theta = self.rotary_dim, self.config_options["theta"]
            return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)), 1.0
        return ROPE_INIT_FUNCTIONS[self.rope_type](self.rope_parameters, None, seq_len=seq_len)

    def reset_buffers(self) -> None:
        device = self.inv_freq.device if self.inv_freq.device.type != "meta" else None
        inv_freq, self.attention_scaling = self._frequencies()
        self.inv_freq = inv_freq.to(device=device, dtype=torch.float32)
        self.signed_inv_freq = signed_frequencies(self.inv_freq)
        if self.rope_type == "longrope":
            long = self._frequencies(seq_len=self.original_length + 1)[0]
            self.long_inv_freq = long.to(device=device, dtype=torch.float32)

    def _signed_inv_freq_for(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The `signed_frequencies` for these positions, on the device and without a host sync (dynamic and longrope
        depend on the longest position)."""
        if self.rope_type == "dynamic":
            return signed_frequencies(self._dynamic_inv_freq(position_ids.max() + 1)), self.attention_scaling
        if self.rope_type == "longrope":
            longer = position_ids.max() + 1 > self.original_length
            inv_freq = torch.where(longer, self.long_inv_freq, self.inv_freq)
            return signed_frequencies(inv_freq), self.attention_scaling
        return self.signed_inv_freq, self.attention_scaling

    def _dynamic_inv_freq(self, seq_len: torch.Tensor) -> torch.Tensor:
        """transformers' `_compute_dynamic_ntk_parameters` for a tensor `seq_len`, with the config read once: past
        the window the base grows to theta * (factor * L / window - (factor - 1)) ** (d / (d - 2))."""
        window = self.rope_parameters.max_position_embeddings
        factor, dim = self.rope_parameters.rope_parameters["factor"], self.rotary_dim
        length = seq_len.clamp(min=window)
        base = self.config_options["theta"] * ((factor * length / window) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** (torch.arange(0, dim, 2, device=seq_len.device, dtype=torch.float32) / dim))

    def rotation_tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and the signed sin of `apply_rotation`, [B or 1, 1, T, rotary_dim]: computed in float32, then cast."""
        signed_inv_freq, scaling = self._signed_inv_freq_for(position_ids)
        angles = position_ids[..., None, :, None] * signed_inv_freq  # integer positions promote to float32
        cos, signed_sin = angles.cos(), angles.sin()
        if scaling != 1.0:
            cos, signed_sin = cos * scaling, signed_sin * scaling
        if dtype != cos.dtype:
            cos, signed_sin = cos.to(dtype), signed_sin.to(dtype)
        return cos, signed_sin

    def rotary(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (cos, sin) of shape [B or 1, T, rotary_dim], as transformers' rotary embeddings give them."""
        cos, signed_sin = (table.squeeze(-3) for table in self.rotation_tables(position_ids, torch.float32))
        half = self.rotary_dim // 2
        return cos, torch.cat((-signed_sin[..., :half], signed_sin[..., half:]), dim=-1)

    def rotate_heads(self, states: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """Rotate heads of shape [B, heads, T, head_dim]; dimensions past `rotary_dim` pass through."""
        d = self.rotary_dim
        if d == states.shape[-1]:
            return apply_rotation(states, cos, signed_sin)
        return torch.cat((apply_rotation(states[..., :d], cos, signed_sin), states[..., d:]), dim=-1)

    def rotate(self, query, key, cos, signed_sin):
        return self.rotate_heads(query, cos, signed_sin), self.rotate_heads(key, cos, signed_sin)

    def rotate_stacked(self, query_key, cos, signed_sin):
        """q and k rotate alike: one pass over both."""
        return self.rotate_heads(query_key, cos, signed_sin).chunk(2, dim=1)


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
