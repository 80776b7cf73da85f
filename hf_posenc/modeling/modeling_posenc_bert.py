"""BERT with its learned absolute table replaced by any registered position encoding.

Every weight except `embeddings.position_embeddings` keeps its name; the encoding lives at
`bert.position_encoding`. Encoders get bidirectional encodings; `is_decoder=True` models causal ones.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import BertConfig
from transformers.cache_utils import Cache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions
from transformers.models.bert.modeling_bert import (
    BertEmbeddings,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
    BertPreTrainedModel,
    BertSelfAttention,
    eager_attention_forward,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import PositionContext, attention_kwargs, cache_and_positions, mask_key_length
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncBertConfig(BertConfig):
    """BertConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_bert"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 512


class PosEncBertEmbeddings(BertEmbeddings):
    """Word and token-type embeddings; the position signal (if the encoding adds one at the input) is passed in."""

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None, position_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if position_embeds is not None:
            embeddings = embeddings + position_embeds.to(embeddings.dtype)
        return self.dropout(self.LayerNorm(embeddings))


class PosEncBertSelfAttention(BertSelfAttention):
    """BERT self-attention that rotates q/k before the cache and takes the bias through the mask or score_mod."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        kwargs.pop("encoder_hidden_states", None)
        input_shape = hidden_states.shape[:-1]
        shape = (*input_shape, -1, self.attention_head_size)
        query = self.query(hidden_states).view(shape).transpose(1, 2)
        key = self.key(hidden_states).view(shape).transpose(1, 2)
        value = self.value(hidden_states).view(shape).transpose(1, 2)
        query, key = position_context.rotate(query, key)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
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
        return attn_output.reshape(*input_shape, -1).contiguous(), attn_weights


class PosEncBertPreTrainedModel(PosEncModelMixin, BertPreTrainedModel):
    config: PosEncBertConfig
    config_class = PosEncBertConfig

    def __init__(self, config: PosEncBertConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if not isinstance(module, PosEncBertEmbeddings):  # it has no position buffers left to initialise
            super()._init_weights(module)


class PosEncBertModel(PosEncBertPreTrainedModel, BertModel):
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        cache = kwargs.pop("past_key_values", cache)
        if kwargs.get("encoder_hidden_states") is not None:
            raise ValueError("hf_posenc BERT models have no cross-attention.")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        use_cache = bool(use_cache) and self.config.is_decoder
        reference = input_ids if input_ids is not None else inputs_embeds
        seq_length = reference.shape[1]
        cache, past_length, position_ids, key_positions = cache_and_positions(
            self.config, cache, use_cache, attention_mask, position_ids, seq_length, reference.device
        )

        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            position_embeds=self.position_encoding.embed(position_ids),
        )
        if self.config.is_decoder:
            mask = create_causal_mask(
                config=self.config,
                inputs_embeds=embedding_output,
                attention_mask=attention_mask,
                cache=cache,
                position_ids=position_ids,
            )
        else:
            mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
            )
        context = self.position_encoding(
            position_ids,
            past_length,
            self.config._attn_implementation,
            embedding_output.dtype,
            attention_mask=mask,
            key_length=mask_key_length(cache, seq_length),
            key_positions=key_positions,
        )
        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=mask,
            cache=cache,
            use_cache=use_cache,
            position_ids=position_ids,
            position_context=context,
            **kwargs,
        )
        sequence_output = encoder_outputs.last_hidden_state
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            cache=encoder_outputs.cache,
        )


class PosEncBertForMaskedLM(PosEncBertPreTrainedModel, BertForMaskedLM):
    pass


class PosEncBertForSequenceClassification(PosEncBertPreTrainedModel, BertForSequenceClassification):
    pass


class PosEncBertForTokenClassification(PosEncBertPreTrainedModel, BertForTokenClassification):
    pass


class PosEncBertForQuestionAnswering(PosEncBertPreTrainedModel, BertForQuestionAnswering):
    pass


class PosEncBertForMultipleChoice(PosEncBertPreTrainedModel, BertForMultipleChoice):
    pass


class PosEncBertForNextSentencePrediction(PosEncBertPreTrainedModel, BertForNextSentencePrediction):
    pass


class PosEncBertForPreTraining(PosEncBertPreTrainedModel, BertForPreTraining):
    pass


class PosEncBertLMHeadModel(PosEncBertPreTrainedModel, BertLMHeadModel):
    pass


def adopt(model: BertPreTrainedModel):
    """Turn a BERT model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncBertModel
    embeddings = base.embeddings
    embeddings.__class__ = PosEncBertEmbeddings
    for name in ("position_embeddings", "position_ids", "token_type_ids"):
        if hasattr(embeddings, name):
            delattr(embeddings, name)
    for layer in base.encoder.layer:
        layer.attention.self.__class__ = PosEncBertSelfAttention
    encoding = build_position_encoding(base.config, causal=base.config.is_decoder)
    return attach_encoding(base, encoding, embeddings.word_embeddings.weight)


def unsupported(config: BertConfig) -> str | None:
    if config.add_cross_attention:
        return "BERT with cross-attention (add_cross_attention=True) is not supported"
    return None


FAMILY = Family(
    model_type="bert",
    config_class=PosEncBertConfig,
    heads={
        BertModel: PosEncBertModel,
        BertForMaskedLM: PosEncBertForMaskedLM,
        BertForSequenceClassification: PosEncBertForSequenceClassification,
        BertForTokenClassification: PosEncBertForTokenClassification,
        BertForQuestionAnswering: PosEncBertForQuestionAnswering,
        BertForMultipleChoice: PosEncBertForMultipleChoice,
        BertForNextSentencePrediction: PosEncBertForNextSentencePrediction,
        BertForPreTraining: PosEncBertForPreTraining,
        BertLMHeadModel: PosEncBertLMHeadModel,
    },
    auto_classes={
        PosEncBertModel: "AutoModel",
        PosEncBertForMaskedLM: "AutoModelForMaskedLM",
        PosEncBertForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncBertForTokenClassification: "AutoModelForTokenClassification",
        PosEncBertForQuestionAnswering: "AutoModelForQuestionAnswering",
        PosEncBertForMultipleChoice: "AutoModelForMultipleChoice",
        PosEncBertForNextSentencePrediction: "AutoModelForNextSentencePrediction",
        PosEncBertForPreTraining: "AutoModelForPreTraining",
        PosEncBertLMHeadModel: "AutoModelForCausalLM",
    },
    absolute_table=lambda base: base.embeddings.position_embeddings.weight,
    adopt=adopt,
    is_causal=lambda config: bool(config.is_decoder),
    unsupported=unsupported,
)

PosEncBertConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
