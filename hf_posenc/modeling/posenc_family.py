"""What every model-family adapter shares: the family description, the PreTrainedModel mixin, and in-place adoption."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .posenc_all import get_encoding_class
from .posenc_base import ModelInfo, PositionEncoding

POSENC_CONFIG_FIELDS = ("position_encoding", "position_encoding_options", "trained_context_length")


def build_position_encoding(config: Any, causal: bool) -> PositionEncoding:
    encoding_cls = get_encoding_class(config.position_encoding)
    return encoding_cls(config.position_encoding_options or {}, ModelInfo.from_config(config, causal))


@dataclass(frozen=True)
class Family:
    """One model family: its converted config class, its heads, and how a live instance is adopted.

    `heads` maps each original transformers class to its converted class; `auto_classes` maps each
    converted class to the transformers Auto class that loads it; `absolute_table` returns the learned
    position table of a base model; `adopt` turns a freshly built or live model into the converted one.
    """

    model_type: str
    config_class: type
    heads: dict[type, type]
    auto_classes: dict[type, str]
    absolute_table: Callable[[nn.Module], torch.Tensor]
    adopt: Callable[[nn.Module], PositionEncoding]
    is_causal: Callable[[Any], bool]
    unsupported: Callable[[Any], str | None]

    def auto_map(self) -> dict[str, str]:
        """`auto_map` for config.json, so that every head loads as remote code, not only the one saved."""
        auto_map = {"AutoConfig": f"{self.config_class.__module__.rsplit('.', 1)[-1]}.{self.config_class.__name__}"}
        for model_cls, auto_name in self.auto_classes.items():
            auto_map[auto_name] = f"{model_cls.__module__.rsplit('.', 1)[-1]}.{model_cls.__name__}"
        return auto_map


class PosEncModelMixin:
    """Mixed into each family's PreTrainedModel subclass: buffer init after meta loading, backend checks."""

    _supports_flex_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PositionEncoding):
            module.reset_buffers()

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """`generate`'s positions are the padding-aware ones the model counts itself. Distance biases read given
        positions per (query, key) pair and row, a `[batch, heads, q, k]` table, so for them `generate` leaves them
        out and the shared per-distance table is used (exact: left padding does not change real tokens' distances).
        Positions passed to `generate` by the caller are still used."""
        if get_encoding_class(self.config.position_encoding).kind == "bias":
            return None
        return super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)

    def _check_and_adjust_attn_implementation(self, attn_implementation, is_init_check=False, **kwargs):
        implementation = super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, **kwargs)
        get_encoding_class(self.config.position_encoding).check_backend(implementation)
        return implementation


def replace_config(model: nn.Module, old: Any, new: Any) -> None:
    """Point every submodule that held the old config at the new one."""
    for module in model.modules():
        if getattr(module, "config", None) is old:
            module.config = new


def attach_encoding(base: nn.Module, encoding: PositionEncoding, reference: torch.Tensor) -> PositionEncoding:
    base.position_encoding = encoding.to(device=reference.device, dtype=reference.dtype)
    return base.position_encoding
