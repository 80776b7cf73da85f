"""The adapter registry, keyed by the original `model_type`. Adding a family adds one line here."""

from __future__ import annotations

from .modeling import modeling_posenc_bert, modeling_posenc_gpt2
from .modeling.posenc_family import Family

FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        modeling_posenc_gpt2.FAMILY,
        modeling_posenc_bert.FAMILY,
    )
}


def register_with_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel*` load converted checkpoints without remote code."""
    import transformers

    for family in FAMILIES.values():
        transformers.AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
        for model_cls, auto_name in family.auto_classes.items():
            getattr(transformers, auto_name).register(family.config_class, model_cls, exist_ok=True)
