"""The adapter registry, keyed by the original `model_type`. Adding a family adds one line here."""

from __future__ import annotations

from .modeling import (
    modeling_posenc_bart,
    modeling_posenc_bert,
    modeling_posenc_clip,
    modeling_posenc_clip_text,
    modeling_posenc_distilbert,
    modeling_posenc_electra,
    modeling_posenc_gpt2,
    modeling_posenc_gpt_neo,
    modeling_posenc_mbart,
    modeling_posenc_opt,
    modeling_posenc_roberta,
    modeling_posenc_xlm_roberta,
)
from .modeling.posenc_family import Family

FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        modeling_posenc_gpt2.FAMILY,
        modeling_posenc_bert.FAMILY,
        modeling_posenc_roberta.FAMILY,
        modeling_posenc_xlm_roberta.FAMILY,
        modeling_posenc_opt.FAMILY,
        modeling_posenc_distilbert.FAMILY,
        modeling_posenc_electra.FAMILY,
        modeling_posenc_gpt_neo.FAMILY,
        modeling_posenc_clip_text.FAMILY,
        modeling_posenc_clip.FAMILY,
        modeling_posenc_bart.FAMILY,
        modeling_posenc_mbart.FAMILY,
    )
}


def register_with_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel*` load converted checkpoints without remote code."""
    import transformers

    for family in FAMILIES.values():
        transformers.AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
        for model_cls, auto_name in family.auto_classes.items():
            getattr(transformers, auto_name).register(family.config_class, model_cls, exist_ok=True)


def families_table() -> str:
    """A Markdown table of every supported family and the classes `convert` accepts (the README's table)."""
    rows = ["| family (`model_type`) | converted `model_type` | classes |", "| --- | --- | --- |"]
    for model_type, family in FAMILIES.items():
        classes = ", ".join(f"`{cls.__name__}`" for cls in family.heads)
        rows.append(f"| `{model_type}` | `{family.config_class.model_type}` | {classes} |")
    return "\n".join(rows)
