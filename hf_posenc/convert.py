"""`convert(model, encoding, **options)`: swap a model's learned absolute positions for another encoding, in place."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .families import FAMILIES
from .modeling.posenc_base import PositionEncodingError, get_encoding_class
from .modeling.posenc_family import Family, position_encodings, replace_config


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


def convert(model: nn.Module, encoding: str, *, max_length: int | None = None, **options: Any) -> nn.Module:
    """Replace the learned absolute position table of `model` with `encoding`, in place, and return `model`.

    Every check runs before the model is touched: on any error the model is exactly as it was.
    Options are the encoding's own (see `hf_posenc.available_encodings()`). `max_length` is the declared maximum
    input length, written to the config's own position limit (`max_position_embeddings`; `n_positions` for GPT-2)
    so that tokenizers, pipelines and `generate` see it; default 4x the trained window (`learned`: its table size,
    which is also the most it may declare). See `declare_max_length`.
    """
    family = family_of(model)
    encoding_cls = get_encoding_class(encoding)
    old_config = model.config
    tables = {name: table.detach() for name, table in family.absolute_tables(model.base_model).items()}
    windows = {name: table.shape[0] for name, table in tables.items()}  # the rows in use (offsets left out)
    window = max(windows.values())
    if len(set(windows.values())) > 1:
        raise PositionEncodingError(
            f"The position tables of this model differ in length ({windows}); convert needs one trained window."
        )
    embedding_size = next(iter(tables.values())).shape[1]
    stacks = family.stack_layout(old_config)
    infos = [stack.info(old_config, window, embedding_size) for stack in stacks.values()]
    validated = [encoding_cls.validate(options, info) for info in infos][0]  # every stack's checks, same options
    for stack in stacks.values():  # the backend of each stack's own config (a tower's may differ)
        encoding_cls.check_backend(stack.runs_on(old_config)._attn_implementation)
    if max_length is None:
        max_length = default_max_length(encoding, validated, window)
    max_length = check_max_length(max_length, encoding, validated)
    original_class = type(model)
    new_config = converted_config(
        family, old_config, family.heads[original_class], encoding, validated, window, max_length
    )
    before = dict(model.named_parameters())

    model.__class__ = family.heads[original_class]
    replace_config(model, old_config, new_config)
    encodings = family.adopt_all(model)
    record_outputs(model)
    for name, position_encoding in encodings.items():
        position_encoding.load_absolute_table(tables[name])
    resolved = {name: dict(position_encoding.config_options) for name, position_encoding in encodings.items()}
    shared = next(iter(resolved.values()))  # options resolved from a table (sinusoidal's scale) may differ by stack
    new_config.position_encoding_options = shared
    if len(resolved) > 1:
        new_config.stack_position_encoding_options = {
            name: {key: value for key, value in options.items() if value != shared[key]}
            for name, options in resolved.items()
        }
    setattr(model, CONVERTED_WEIGHTS, weights_state(model))  # lets a model card say "not fine-tuned after the swap"
    after, paths = dict(model.named_parameters()), {id(module): path for path, module in model.named_modules()}
    removed = {name: parameter.detach() for name, parameter in before.items() if name not in after}
    by_path = {paths[id(position_encoding)]: tables[name] for name, position_encoding in encodings.items()}
    setattr(model, ORIGINAL, Original(original_class, old_config, removed, by_path))
    return model


CONVERTED_WEIGHTS = "_hf_posenc_weights_at_conversion"
ORIGINAL = "_hf_posenc_original"


@dataclass(frozen=True)
class Original:
    """What `convert` took out of a model, kept on it (not saved) so that the original can be rebuilt from it while
    its weights are unchanged: the class and config it had, the parameters it removed (the position tables, by name)
    and each table's rows in use by the path of the encoding that replaced it."""

    model_class: type
    config: Any
    removed: dict[str, torch.Tensor]
    tables: dict[str, torch.Tensor]


def original_record(model: nn.Module) -> Original | None:
    """The record `convert` left on `model`, or None (not converted in this process)."""
    return model.__dict__.get(ORIGINAL)


def record_outputs(model: nn.Module) -> None:
    """Let transformers capture attentions and hidden states (`output_attentions=True`) of a model whose classes
    changed in place: it looks the capturable outputs up by class, registered when a model is built."""
    from transformers import PreTrainedModel
    from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            _CAN_RECORD_REGISTRY[module] = module._can_record_outputs


def weights_state(model: nn.Module) -> tuple[tuple[str, int, int, float], ...]:
    """Each parameter's name, storage, in-place version counter and sum: the state only stays equal while no
    optimizer step, `load_state_dict`, device or dtype move or other edit (also through `.data`, as PEFT's merge
    writes) has touched the weights."""
    with torch.no_grad():
        return tuple((name, p.data_ptr(), p._version, float(p.double().sum())) for name, p in model.named_parameters())


def unchanged_since_conversion(model: nn.Module) -> bool:
    """True when `model` was converted in this process and its weights have not changed since (so it cannot have
    been fine-tuned after the swap); False when they changed or this is unknown (e.g. a model loaded from disk)."""
    recorded = model.__dict__.get(CONVERTED_WEIGHTS)
    return recorded is not None and recorded == weights_state(model)


def converted_config(
    family: Family, old: Any, head: type, encoding: str, options: dict, window: int, max_length: int
) -> Any:
    data = old.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map", "_name_or_path"):
        data.pop(key, None)
    data[type(old).attribute_map.get("max_position_embeddings", "max_position_embeddings")] = max_length
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
    for key in getattr(old, "sub_configs", {}):  # a tower's config keeps its backend too
        getattr(config, key)._attn_implementation_internal = getattr(old, key)._attn_implementation_internal
    return config


def default_max_length(encoding: str, options: dict[str, Any], window: int) -> int:
    """The declared maximum length when none is given: 4x the trained window; `learned`: its table size."""
    return int(options["max_positions"]) if encoding == "learned" else 4 * int(window)


def position_limit(encoding: str, options: dict[str, Any]) -> int | None:
    """The hard limit of an encoding: the rows of the `learned` table; None when positions have no limit."""
    return int(options["max_positions"]) if encoding == "learned" else None


def check_max_length(max_length: Any, encoding: str, options: dict[str, Any]) -> int:
    """`max_length` as an int, or PositionEncodingError when it is not a positive integer or is past the hard limit."""
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < 1:
        raise PositionEncodingError(f"max_length must be a positive integer, got {max_length!r}.")
    limit = position_limit(encoding, options)
    if limit is not None and max_length > limit:
        raise PositionEncodingError(
            f"max_length={max_length} is past the {limit} rows of the learned position table; "
            f"declare at most {limit}, or convert with max_positions={max_length}."
        )
    return int(max_length)


def declared_max_length(config: Any) -> int | None:
    """The maximum length a converted config declares (`max_position_embeddings`), or None for other configs."""
    if getattr(config, "position_encoding", None) is None:
        return None
    return int(config.max_position_embeddings)


def declare_max_length(model: Any, max_length: int) -> int:
    """Declare the longest input a converted `model` (or its config) takes, e.g. after fine-tuning at that length.

    Sets the config's own position limit (`max_position_embeddings`, `n_positions` for GPT-2), which
    `generate` and pipelines read; `save_converted` also writes it to the tokenizer's `model_max_length`.
    `trained_context_length` keeps the window the weights were pretrained at.
    """
    config = getattr(model, "config", model)
    encoding = getattr(config, "position_encoding", None)
    if encoding is None:
        raise PositionEncodingError("Only a converted model declares a maximum length: call hf_posenc.convert first.")
    config.max_position_embeddings = check_max_length(max_length, encoding, config.position_encoding_options or {})
    return config.max_position_embeddings


def set_rope_scaling(model: nn.Module, scaling: dict[str, Any] | None, *, max_length: int | None = None) -> nn.Module:
    """Give a rope-converted `model` a transformers RoPE scaling at inference, in place, with no weight changed.

    `scaling` is a `rope_parameters` dict as for `convert(model, "rope", scaling=...)`: e.g. `{"rope_type":
    "linear", "factor": 4.0}` (Position Interpolation) or `{"rope_type": "yarn", "factor": 4.0}`, with
    `original_max_position_embeddings` defaulting to the trained window; None returns to plain RoPE. This is how a
    RoPE model is usually run past the length it was trained or fine-tuned at. `max_length` also declares a new
    maximum input length (see `declare_max_length`). Checks run first: on an error the model is as it was.
    """
    config = getattr(model, "config", None)
    encoding = getattr(config, "position_encoding", None)
    if encoding != "rope":
        raise PositionEncodingError(
            f"set_rope_scaling needs a model converted to rope, got position_encoding={encoding!r}."
        )
    olds = position_encodings(model)
    if not olds:
        raise PositionEncodingError(f"{type(model).__name__} has no position encoding for set_rope_scaling to rescale.")
    others = {name: type(old).__name__ for name, old in olds.items() if getattr(type(old), "name", None) != "rope"}
    if others:
        raise PositionEncodingError(f"set_rope_scaling rescales rope encodings only; this model also has {others}.")
    encoding_cls = get_encoding_class("rope")
    wanted = {**(config.position_encoding_options or {}), "scaling": scaling}
    options = {name: encoding_cls.validate(wanted, old.info) for name, old in olds.items()}
    if max_length is not None:
        max_length = check_max_length(max_length, "rope", next(iter(options.values())))
    for name, old in olds.items():  # every stack (an encoder-decoder has two)
        new = type(old)(options[name], old.info).to(old.inv_freq.device)  # the model's own class (maybe remote code)
        new.train(old.training)
        parent = model.get_submodule(name.rpartition(".")[0])
        setattr(parent, name.rpartition(".")[2], new)
    config.position_encoding_options = dict(new.config_options)
    if max_length is not None:
        config.max_position_embeddings = max_length
    return model
