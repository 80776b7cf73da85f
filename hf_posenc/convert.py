"""`convert(model, encoding, **options)`: swap a model's learned absolute positions for another encoding, in place."""

from __future__ import annotations

from typing import Any

from torch import nn

from .families import FAMILIES
from .modeling.posenc_base import ModelInfo, PositionEncodingError, get_encoding_class
from .modeling.posenc_family import Family, replace_config


def family_of(model: nn.Module) -> Family:
    """The adapter for `model`, or a clear error naming what is supported."""
    if hasattr(model, "peft_config") or type(model).__module__.startswith("peft."):
        raise PositionEncodingError(
            "This model is wrapped by PEFT. Convert the base model first, then wrap it: "
            "hf_posenc.convert(model, ...) followed by peft.get_peft_model(model, lora_config)."
        )
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if isinstance(model_type, str) and model_type.startswith("posenc_"):
        raise PositionEncodingError(
            f"This model is already converted (position_encoding={config.position_encoding!r}). "
            "Convert the original checkpoint instead of converting twice."
        )
    if model_type not in FAMILIES:
        raise PositionEncodingError(
            f"Unsupported model type {model_type!r} ({type(model).__name__}). Supported: {', '.join(FAMILIES)}."
        )
    family = FAMILIES[model_type]
    if type(model) not in family.heads:
        names = ", ".join(cls.__name__ for cls in family.heads)
        raise PositionEncodingError(
            f"Unsupported class {type(model).__name__}. Supported {model_type} classes: {names}."
        )
    problem = family.unsupported(config)
    if problem:
        raise PositionEncodingError(f"{problem}.")
    return family


def convert(model: nn.Module, encoding: str, **options: Any) -> nn.Module:
    """Replace the learned absolute position table of `model` with `encoding`, in place, and return `model`.

    Every check runs before the model is touched: on any error the model is exactly as it was.
    Options are the encoding's own (see `hf_posenc.available_encodings()`).
    """
    family = family_of(model)
    encoding_cls = get_encoding_class(encoding)
    old_config = model.config
    old_table = family.absolute_table(model.base_model).detach()
    window = old_table.shape[0]  # the rows in use: families with a position offset return only those
    info = ModelInfo(
        hidden_size=old_config.hidden_size,
        num_heads=old_config.num_attention_heads,
        num_layers=old_config.num_hidden_layers,
        causal=family.is_causal(old_config),
        trained_context_length=window,
        embedding_size=old_table.shape[1],
    )
    validated = encoding_cls.validate(options, info)
    encoding_cls.check_backend(old_config._attn_implementation)
    new_config = converted_config(family, old_config, family.heads[type(model)], encoding, validated, window)

    model.__class__ = family.heads[type(model)]
    replace_config(model, old_config, new_config)
    position_encoding = family.adopt(model)
    position_encoding.load_absolute_table(old_table)
    new_config.position_encoding_options = dict(position_encoding.config_options)
    return model


def converted_config(family: Family, old: Any, head: type, encoding: str, options: dict, window: int) -> Any:
    data = old.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map", "_name_or_path"):
        data.pop(key, None)
    if encoding == "learned":
        data[type(old).attribute_map.get("max_position_embeddings", "max_position_embeddings")] = options[
            "max_positions"
        ]
    config = family.config_class(
        **data,
        position_encoding=encoding,
        position_encoding_options=options,
        trained_context_length=window,
    )
    config.architectures = [head.__name__]
    config.auto_map = family.auto_map()
    config._name_or_path = old._name_or_path
    config._attn_implementation_internal = old._attn_implementation_internal
    return config
