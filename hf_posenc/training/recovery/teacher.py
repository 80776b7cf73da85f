"""The teacher: the unconverted original of a model, frozen (eval mode, no gradients)."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ...convert import original_record, unchanged_since_conversion
from ..errors import RecipeError


def freeze(teacher: nn.Module) -> nn.Module:
    """`teacher` in eval mode (no dropout) with no parameter requiring gradients."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_from(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` as it was before conversion, with weights of its own (the model trains in place).

    Call it before `hf_posenc.convert` (a deep copy of the original), or after, on a model converted in this process
    whose weights have not changed since: the original is then rebuilt from what `convert` removed, exactly (same
    class, config and weights). Either way the process holds two models. Build it before wrapping the model with PEFT
    or training it.
    """
    if hasattr(model, "peft_config"):
        raise RecipeError("Build the teacher before wrapping the model with PEFT: teacher_from(model), then wrap.")
    if getattr(model.config, "position_encoding", None) is None:
        return freeze(copy.deepcopy(model))
    record = original_record(model)
    if record is None or not unchanged_since_conversion(model):
        why = "was not converted in this process" if record is None else "has changed since it was converted"
        raise RecipeError(
            f"The teacher is the model before conversion, and this model {why}. Pass the original as teacher= "
            "(teacher_from(model) before converting) or its folder or Hub id as --teacher_name_or_path."
        )
    return freeze(rebuild_original(model, record))


def rebuild_original(model: nn.Module, record: Any) -> nn.Module:
    """The unconverted model: `record`'s class and config, `model`'s weights with the removed tables put back."""
    prefixes = tuple(f"{path}." for path in record.tables)
    state = {name: value for name, value in model.state_dict().items() if not name.startswith(prefixes)}
    state.update(record.removed)
    original = record.model_class(copy.deepcopy(record.config))
    original.load_state_dict(state, strict=True)
    return original.to(next(model.parameters()).dtype)


def load_teacher(name_or_path: str, student: nn.Module) -> nn.Module:
    """The teacher from a folder or Hub id, with the student's kind of head (causal or masked LM), frozen."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from ...evaluation import is_causal_lm

    auto_class = AutoModelForCausalLM if is_causal_lm(student) else AutoModelForMaskedLM
    try:
        teacher = auto_class.from_pretrained(name_or_path, trust_remote_code=True)
    except OSError as err:
        raise RecipeError(f"Could not load the teacher {name_or_path!r}: {str(err).splitlines()[0]}") from None
    return freeze(teacher)


def resolve_teacher(model: nn.Module, teacher: nn.Module | None, name_or_path: str | None) -> nn.Module:
    """The teacher given, else the one at `name_or_path`, else the model's own original (`teacher_from`)."""
    if teacher is not None:
        return freeze(teacher)
    if name_or_path:
        return load_teacher(name_or_path, model)
    return teacher_from(model)
