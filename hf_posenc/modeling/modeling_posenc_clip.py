"""CLIP with both towers (`CLIPModel`): the text tower's learned table replaced by any registered encoding, the vision
tower left exactly as it was.

The text tower is converted as `CLIPTextModel` is (see `modeling_posenc_clip_text`) and lives at `text_model`, with its
encoding at `text_model.position_encoding`. The vision tower, both projections and `logit_scale` keep their classes,
names and bits. The config carries the encoding at the top level, as every converted config does, and in its
`text_config` (a `PosEncCLIPTextConfig`), from which the text tower is built.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPModel

from .modeling_posenc_clip_text import PosEncCLIPTextConfig
from .modeling_posenc_clip_text import adopt as adopt_text_tower
from .posenc_base import PositionEncoding
from .posenc_family import Family, PosEncModelMixin, Stack

ENCODING_FIELDS = (
    "position_encoding",
    "position_encoding_options",
    "trained_context_length",
    "max_position_embeddings",
)


@strict
class PosEncCLIPConfig(CLIPConfig):
    """CLIPConfig plus the text tower's position encoding, its options, its trained window and declared length."""

    model_type = "posenc_clip"
    sub_configs_defaults = {"vision_config": CLIPVisionConfig, "text_config": PosEncCLIPTextConfig}

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 77
    max_position_embeddings: int = 77  # the text tower's declared maximum length

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not isinstance(self.text_config, PosEncCLIPTextConfig):
            data = self.text_config.to_dict()
            for key in ("model_type", "transformers_version", "architectures", "auto_map"):
                data.pop(key, None)
            self.text_config = PosEncCLIPTextConfig(**data)
        for name in ENCODING_FIELDS:  # the text tower is built from its own config: it holds the encoding too
            setattr(self.text_config, name, getattr(self, name))

    def __setattr__(self, name, value):
        """Keep the text tower's config in step: `convert`, `declare_max_length` and `set_rope_scaling` set these
        fields at the top level, and `text_config` is what a text tower saved or loaded on its own reads."""
        super().__setattr__(name, value)
        text_config = self.__dict__.get("text_config")
        if name in ENCODING_FIELDS and isinstance(text_config, PosEncCLIPTextConfig):
            setattr(text_config, name, value)


class PosEncCLIPModel(PosEncModelMixin, CLIPModel):
    config: PosEncCLIPConfig
    config_class = PosEncCLIPConfig

    def __init__(self, config: PosEncCLIPConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)


def stacks(config: CLIPConfig) -> dict[str, Stack]:
    text = config.text_config
    tower = Stack(True, text.num_attention_heads, text.num_hidden_layers, text.hidden_size, config_key="text_config")
    return {"text_model": tower}


def absolute_tables(model: CLIPModel) -> dict[str, torch.Tensor]:
    return {"text_model": model.text_model.embeddings.position_embedding.weight}


def adopt(model: CLIPModel) -> dict[str, PositionEncoding]:
    """Convert the text tower of a two-tower CLIP, in place; the vision tower is not touched."""
    for name in ENCODING_FIELDS:
        setattr(model.text_model.config, name, getattr(model.config, name))
    return {"text_model": adopt_text_tower(model.text_model)}


FAMILY = Family(
    model_type="clip",
    config_class=PosEncCLIPConfig,
    heads={CLIPModel: PosEncCLIPModel},
    auto_classes={PosEncCLIPModel: "AutoModel"},
    absolute_table=absolute_tables,
    adopt=adopt,
    is_causal=lambda config: True,  # the text tower is causal-masked
    unsupported=lambda config: None,
    stacks=stacks,
)

PosEncCLIPConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
