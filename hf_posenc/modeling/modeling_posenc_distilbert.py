"""DistilBERT with its learned (or frozen sinusoidal) absolute table replaced by any registered position encoding.

Every weight except `embeddings.position_embeddings` keeps its name; the encoding lives at
`distilbert.position_encoding`. DistilBERT is an encoder only: encodings are bidirectional.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import DistilBertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.distilbert.modeling_distilbert import (
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    DistilBertPreTrainedModel,
    DistilBertSelfAttention,
    Embeddings,
    eager_attention_forward,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import PositionContext, attention_kwargs, default_position_ids
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncDistilBertConfig(DistilBertConfig):
    """DistilBertConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_distilbert"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 512


class PosEncDistilBertEmbeddings(Embeddings):
    """Word embeddings; the position signal (if the encoding adds one at the input) is passed in."""

    def forward(self, input_ids=None, inputs_embeds=None, position_embeds=None):
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if position_embeds is not None:
            embeddings = embeddings + position_embeds.to(embeddings.dtype)
        return self.dropout(self.LayerNorm(embeddings))


class PosEncDistilBertSelfAttention(DistilBertSelfAttention):
    """DistilBERT self-attention that rotates q/k and takes the bias through the mask or score_mod."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        input_shape = hidden_states.shape[:-1]
        shape = (*input_shape, -1, self.attention_head_size)
        query = self.q_lin(hidden_states).view(shape).transpose(1, 2)
        key = self.k_lin(hidden_states).view(shape).transpose(1, 2)
        value = self.v_lin(hidden_states).view(shape).transpose(1, 2)
        query, key = position_context.rotate(query, key)
        attention_mask = position_context.attention_mask(attention_mask, self.layer_idx, key.shape[-2])
        attention = position_context.attention_function(self.layer_idx, eager_attention_forward)
        attn_output, attn_weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **attention_kwargs(kwargs),
        )
        return self.out_lin(attn_output.reshape(*input_shape, -1).contiguous()), attn_weights


class PosEncDistilBertPreTrainedModel(PosEncModelMixin, DistilBertPreTrainedModel):
    config: PosEncDistilBertConfig
    config_class = PosEncDistilBertConfig

    def __init__(self, config: PosEncDistilBertConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if not isinstance(module, PosEncDistilBertEmbeddings):  # it has no position table left to initialise
            super()._init_weights(module)


class PosEncDistilBertModel(PosEncDistilBertPreTrainedModel, DistilBertModel):
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        reference = input_ids if input_ids is not None else inputs_embeds
        key_positions = position_ids  # given positions: distance biases follow them
        if position_ids is None:
            position_ids = default_position_ids(attention_mask, 0, reference.shape[1], reference.device)
        embeddings = self.embeddings(input_ids, inputs_embeds, self.position_encoding.embed(position_ids))
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=embeddings, attention_mask=attention_mask)
        context = self.position_encoding(
            position_ids,
            0,
            self.config._attn_implementation,
            embeddings.dtype,
            attention_mask=mask,
            key_length=embeddings.shape[1],
            key_positions=key_positions,
        )
        return self.transformer(hidden_states=embeddings, attention_mask=mask, position_context=context, **kwargs)


class PosEncDistilBertForMaskedLM(PosEncDistilBertPreTrainedModel, DistilBertForMaskedLM):
    pass


class PosEncDistilBertForSequenceClassification(PosEncDistilBertPreTrainedModel, DistilBertForSequenceClassification):
    pass


class PosEncDistilBertForQuestionAnswering(PosEncDistilBertPreTrainedModel, DistilBertForQuestionAnswering):
    pass


class PosEncDistilBertForTokenClassification(PosEncDistilBertPreTrainedModel, DistilBertForTokenClassification):
    pass


class PosEncDistilBertForMultipleChoice(PosEncDistilBertPreTrainedModel, DistilBertForMultipleChoice):
    pass


def adopt(model: DistilBertPreTrainedModel):
    """Turn a DistilBERT model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncDistilBertModel
    embeddings = base.embeddings
    embeddings.__class__ = PosEncDistilBertEmbeddings
    for name in ("position_embeddings", "position_ids"):
        if hasattr(embeddings, name):
            delattr(embeddings, name)
    for layer_idx, layer in enumerate(base.transformer.layer):
        layer.attention.__class__ = PosEncDistilBertSelfAttention
        layer.attention.layer_idx = layer_idx  # per-layer bias tables are looked up by it
    encoding = build_position_encoding(base.config, causal=False)
    return attach_encoding(base, encoding, embeddings.word_embeddings.weight)


FAMILY = Family(
    model_type="distilbert",
    config_class=PosEncDistilBertConfig,
    heads={
        DistilBertModel: PosEncDistilBertModel,
        DistilBertForMaskedLM: PosEncDistilBertForMaskedLM,
        DistilBertForSequenceClassification: PosEncDistilBertForSequenceClassification,
        DistilBertForQuestionAnswering: PosEncDistilBertForQuestionAnswering,
        DistilBertForTokenClassification: PosEncDistilBertForTokenClassification,
        DistilBertForMultipleChoice: PosEncDistilBertForMultipleChoice,
    },
    auto_classes={
        PosEncDistilBertModel: "AutoModel",
        PosEncDistilBertForMaskedLM: "AutoModelForMaskedLM",
        PosEncDistilBertForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncDistilBertForQuestionAnswering: "AutoModelForQuestionAnswering",
        PosEncDistilBertForTokenClassification: "AutoModelForTokenClassification",
        PosEncDistilBertForMultipleChoice: "AutoModelForMultipleChoice",
    },
    absolute_table=lambda base: base.embeddings.position_embeddings.weight,
    adopt=adopt,
    is_causal=lambda config: False,
    unsupported=lambda config: None,
)

PosEncDistilBertConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
