"""What every model-family adapter shares: the family description, the PreTrainedModel mixin, and in-place adoption."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .posenc_all import get_encoding_class, registered_encodings
from .posenc_base import ModelInfo, PositionEncoding

POSENC_CONFIG_FIELDS = ("position_encoding", "position_encoding_options", "trained_context_length")


@dataclass(frozen=True)
class Stack:
    """One stack of layers with a position table of its own: an encoder-decoder has two (encoder and decoder), each
    converted to the same encoding with its own direction, heads and layers (None: the config's own counts)."""

    causal: bool
    num_heads: int | None = None
    num_layers: int | None = None
    hidden_size: int | None = None
    config_key: str = ""  # the sub-config the stack runs on (a tower's `text_config`); "": the model's own

    def runs_on(self, config: Any) -> Any:
        return getattr(config, self.config_key) if self.config_key else config

    def info(self, config: Any, trained_context_length: int, embedding_size: int | None = None) -> ModelInfo:
        return ModelInfo(
            hidden_size=self.hidden_size or config.hidden_size,
            num_heads=self.num_heads or config.num_attention_heads,
            num_layers=self.num_layers or config.num_hidden_layers,
            causal=self.causal,
            trained_context_length=trained_context_length,
            embedding_size=embedding_size,
        )


def build_position_encoding(config: Any, causal: bool, stack: Stack | None = None, name: str = "") -> PositionEncoding:
    """The converted config's encoding for the model's only stack, or for stack `name` of a model with several (its
    options: the shared ones, updated by what conversion resolved for it from its own table, in
    `config.stack_position_encoding_options[name]`)."""
    encoding_cls = get_encoding_class(config.position_encoding)
    options = dict(config.position_encoding_options or {})
    options.update((getattr(config, "stack_position_encoding_options", None) or {}).get(name, {}))
    if stack is None:
        info = ModelInfo.from_config(config, causal)
    else:
        info = stack.info(config, config.trained_context_length, getattr(config, "embedding_size", None))
    return encoding_cls(options, info)


@dataclass(frozen=True)
class Family:
    """One model family: its converted config class, its heads, and how a live instance is adopted.

    `heads` maps each original transformers class to its converted class; `auto_classes` maps each
    converted class to the transformers Auto class that loads it; `absolute_table` returns the learned
    position table of a base model; `adopt` turns a freshly built or live model into the converted one and
    returns its encoding.

    A model with several stacks of layers, each with its own table (an encoder-decoder), sets `stacks`: their
    names and `Stack`s for a config. `absolute_table` and `adopt` then return dicts keyed by those names, and
    `is_causal` says whether the head's output comes from a causal stack.
    """

    model_type: str
    config_class: type
    heads: dict[type, type]
    auto_classes: dict[type, str]
    absolute_table: Callable[[nn.Module], torch.Tensor | dict[str, torch.Tensor]]
    adopt: Callable[[nn.Module], PositionEncoding | dict[str, PositionEncoding]]
    is_causal: Callable[[Any], bool]
    unsupported: Callable[[Any], str | None]
    stacks: Callable[[Any], dict[str, Stack]] | None = None

    def stack_layout(self, config: Any) -> dict[str, Stack]:
        """The stacks of a model with this config; a single-stack family's one stack is named ""."""
        return self.stacks(config) if self.stacks is not None else {"": Stack(causal=self.is_causal(config))}

    def absolute_tables(self, base: nn.Module) -> dict[str, torch.Tensor]:
        tables = self.absolute_table(base)
        return tables if isinstance(tables, dict) else {"": tables}

    def adopt_all(self, model: nn.Module) -> dict[str, PositionEncoding]:
        encodings = self.adopt(model)
        return encodings if isinstance(encodings, dict) else {"": encodings}

    def auto_map(self) -> dict[str, str]:
        """`auto_map` for config.json, so that every head loads as remote code, not only the one saved."""
        auto_map = {"AutoConfig": f"{self.config_class.__module__.rsplit('.', 1)[-1]}.{self.config_class.__name__}"}
        for model_cls, auto_name in self.auto_classes.items():
            auto_map[auto_name] = f"{model_cls.__module__.rsplit('.', 1)[-1]}.{model_cls.__name__}"
        return auto_map


class PositionBuffersInitMixin:
    """Mixed into a PreTrainedModel that holds an encoding: its buffers are computed after meta loading. (A stack that
    is a PreTrainedModel of its own, as BART's encoder, initialises its children itself and mixes this in too.)"""

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PositionEncoding):
            module.reset_buffers()


@functools.cache
def causal_lm_loss_type(model_class: type) -> str | None:
    """The causal-LM loss type, "ForCausalLM", for a causal-LM head class; None for any other class. transformers
    picks a model's loss (`loss_type`) from its class name and finds none in GPT-2's and BERT's `...LMHeadModel`
    (nor in hf_posenc's subclasses of them): their `loss_function` then warns and falls back to the causal-LM loss,
    the loss they compute. This declares it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    heads = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()  # a class name, or a tuple of them, per model type
    names = {name for head in heads for name in ((head,) if isinstance(head, str) else head)}
    return "ForCausalLM" if any(cls.__name__ in names for cls in model_class.__mro__) else None


class PosEncModelMixin(PositionBuffersInitMixin):
    """Mixed into each family's PreTrainedModel subclass: buffer init after meta loading, backend checks, the loss."""

    _supports_flex_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    @property
    def loss_type(self) -> str | None:
        """The loss `loss_function` uses: the one transformers inferred from the class name (also a converted model's,
        kept from its original class), else a causal-LM head's (`causal_lm_loss_type`)."""
        inferred = self.__dict__.get("loss_type")
        return inferred if inferred is not None else causal_lm_loss_type(type(self))

    @loss_type.setter
    def loss_type(self, value: str | None) -> None:
        self.__dict__["loss_type"] = value

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
    """Point every submodule that held the old config, or one of its sub-configs (a tower's), at the new one."""
    pairs = [(old, new)] + [(getattr(old, key), getattr(new, key)) for key in getattr(old, "sub_configs", {})]
    for module in model.modules():
        held = getattr(module, "config", None)
        for before, after in pairs:
            if held is before:
                module.config = after


def attach_encoding(base: nn.Module, encoding: PositionEncoding, reference: torch.Tensor) -> PositionEncoding:
    """Put `encoding` at `base.position_encoding` (`base`: a base model, or one stack of it) on `reference`'s device
    and dtype."""
    base.position_encoding = encoding.to(device=reference.device, dtype=reference.dtype)
    return base.position_encoding


def is_position_encoding(module: nn.Module) -> bool:
    """True for a position encoding: an instance of this package's classes, or of a registered encoding's namesake
    (same `name` and class name) from another copy of this code, as a checkpoint loaded with `trust_remote_code=True`
    defines its own classes."""
    if isinstance(module, PositionEncoding):
        return True
    name = getattr(type(module), "name", None)
    registered = registered_encodings().get(name) if isinstance(name, str) else None
    return registered is not None and type(module).__name__ == registered.__name__


def position_encodings(model: nn.Module) -> dict[str, PositionEncoding]:
    """Every position encoding in `model` by module path: one per stack (`model.position_encoding`,
    `model.encoder.position_encoding`, ...), whether its classes come from this package or from a checkpoint's
    remote code."""
    return {name: module for name, module in model.named_modules() if is_position_encoding(module)}
