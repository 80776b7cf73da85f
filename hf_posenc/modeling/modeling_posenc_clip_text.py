"""CLIP's text tower with its learned absolute table (77 rows in OpenAI's CLIP) replaced by any registered encoding.

Every weight except `embeddings.position_embedding` keeps its name; the encoding lives at `position_encoding`
(`CLIPTextModel`) or `text_model.position_encoding` (`CLIPTextModelWithProjection`). `CLIPModel` (text and vision
towers together) converts its text tower with this module too (`modeling_posenc_clip`).

The text tower is treated as causal. It is an encoder in name only: CLIP applies a causal mask in every layer
(OpenAI's `build_attention_mask`, transformers' `create_causal_mask` here), so each token sees only itself and the
tokens before it, and the pooled output is the hidden state of the end-of-text token, which sees the whole prompt,
as the last token of a decoder does. So ALiBi gets causal penalties and T5's bias causal buckets, all of them for
distances into the past, the only ones the mask lets through (bidirectional buckets would spend half of them on
distances the mask removes), and `nope` keeps the order that the causal mask leaks. There is no KV cache and no
generation: a prompt is encoded in one pass, and past the old window too (pooling finds the end-of-text token at
any position).
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import CLIPTextConfig
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import PrefixChange
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import (
    CLIPAttention,
    CLIPPreTrainedModel,
    CLIPTextEmbeddings,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    eager_attention_forward,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import PositionContext, attention_kwargs, default_position_ids
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncCLIPTextConfig(CLIPTextConfig):
    """CLIPTextConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_clip_text_model"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 77


class PosEncCLIPTextEmbeddings(CLIPTextEmbeddings):
    """Token embeddings; the position signal (if the encoding adds one at the input) is passed in."""

    def forward(self, input_ids: torch.Tensor, position_embeds: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = self.token_embedding(input_ids)
        if position_embeds is not None:
            embeddings = embeddings + position_embeds.to(embeddings.dtype)
        return embeddings


class PosEncCLIPAttention(CLIPAttention):
    """CLIP self-attention that rotates q/k and takes the bias through the mask or score_mod."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        input_shape = hidden_states.shape[:-1]
        shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        query, key = position_context.rotate(query, key)
        attention_mask = position_context.attention_mask(attention_mask, self.layer_idx, key.shape[-2])
        attention = position_context.attention_function(self.layer_idx, eager_attention_forward)
        attn_output, attn_weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scale,
            dropout=0.0 if not self.training else self.dropout,
            **attention_kwargs(kwargs),
        )
        return self.out_proj(attn_output.reshape(*input_shape, -1).contiguous()), attn_weights


class PosEncCLIPTextPreTrainedModel(PosEncModelMixin, CLIPPreTrainedModel):
    config: PosEncCLIPTextConfig
    config_class = PosEncCLIPTextConfig

    def __init__(self, config: PosEncCLIPTextConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if isinstance(module, PosEncCLIPTextEmbeddings):  # no position table left: initialise the tokens as CLIP does
            torch.nn.init.normal_(module.token_embedding.weight, std=self.config.initializer_factor * 0.02)
        else:
            super()._init_weights(module)


class PosEncCLIPTextModel(PosEncCLIPTextPreTrainedModel, CLIPTextModel):
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        if input_ids is None:
            raise ValueError("You have to specify input_ids")
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        key_positions = position_ids  # given positions: distance biases follow them
        if position_ids is None:
            position_ids = default_position_ids(attention_mask, 0, input_ids.shape[1], input_ids.device)
        hidden_states = self.embeddings(input_ids, self.position_encoding.embed(position_ids))
        # as CLIP: no position_ids here, so explicit positions that restart are not read as packed documents
        mask = create_causal_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask, cache=None
        )
        context = self.position_encoding(
            position_ids,
            0,
            self.config._attn_implementation,
            hidden_states.dtype,
            attention_mask=mask,
            key_length=hidden_states.shape[1],
            key_positions=key_positions,
        )
        kwargs.pop("is_causal", None)
        encoder_outputs = self.encoder(
            inputs_embeds=hidden_states, attention_mask=mask, is_causal=True, position_context=context, **kwargs
        )
        last_hidden_state = self.final_layer_norm(encoder_outputs.last_hidden_state)
        rows = torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device)
        ids = input_ids.to(dtype=torch.int, device=last_hidden_state.device)
        if self.eos_token_id == 2:  # configs from before transformers PR #24773: the end-of-text id is the largest
            pooled_output = last_hidden_state[rows, ids.argmax(dim=-1)]
        else:  # the first end-of-text token, at any position
            pooled_output = last_hidden_state[rows, (ids == self.eos_token_id).int().argmax(dim=-1)]
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=pooled_output)


class PosEncCLIPTextModelWithProjection(PosEncCLIPTextPreTrainedModel, CLIPTextModelWithProjection):
    pass


def adopt(model: CLIPPreTrainedModel):
    """Turn a CLIP text model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncCLIPTextModel
    embeddings = base.embeddings
    embeddings.__class__ = PosEncCLIPTextEmbeddings
    for name in ("position_embedding", "position_ids"):
        if hasattr(embeddings, name):
            delattr(embeddings, name)
    for layer_idx, layer in enumerate(base.encoder.layers):
        layer.self_attn.__class__ = PosEncCLIPAttention
        layer.self_attn.layer_idx = layer_idx  # per-layer bias tables are looked up by it
    encoding = build_position_encoding(base.config, causal=True)
    return attach_encoding(base, encoding, embeddings.token_embedding.weight)


FAMILY = Family(
    model_type="clip_text_model",
    config_class=PosEncCLIPTextConfig,
    heads={
        CLIPTextModel: PosEncCLIPTextModel,
        CLIPTextModelWithProjection: PosEncCLIPTextModelWithProjection,
    },
    auto_classes={  # transformers has no Auto class of its own for the projection head
        PosEncCLIPTextModel: "AutoModel",
        PosEncCLIPTextModelWithProjection: "AutoModelForTextEncoding",
    },
    absolute_table=lambda base: base.embeddings.position_embedding.weight,
    adopt=adopt,
    is_causal=lambda config: True,
    unsupported=lambda config: None,
)

# as transformers does for CLIPTextModel (by class name): the base model loads a projection head's checkpoint too
register_checkpoint_conversion_mapping(
    PosEncCLIPTextModel.__name__, [PrefixChange(prefix_to_remove="text_model")], overwrite=True
)
PosEncCLIPTextConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
