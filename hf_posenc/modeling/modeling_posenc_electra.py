"""ELECTRA (discriminator and generator) with its learned absolute table replaced by any registered position encoding.

Every weight except `embeddings.position_embeddings` keeps its name; the encoding lives at
`electra.position_encoding`. An "input" encoding is added at the embedding width (`embedding_size`), before
`embeddings_project`, where the learned table was. The layers are BERT's, so attention is BERT's adapter's.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import ElectraConfig
from transformers.cache_utils import Cache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.models.electra.modeling_electra import (
    ElectraEmbeddings,
    ElectraForCausalLM,
    ElectraForMaskedLM,
    ElectraForMultipleChoice,
    ElectraForPreTraining,
    ElectraForQuestionAnswering,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    ElectraModel,
    ElectraPreTrainedModel,
    ElectraSelfAttention,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .modeling_posenc_bert import PosEncBertEmbeddings, PosEncBertSelfAttention
from .modeling_posenc_roberta import adopt_bert_layers
from .posenc_base import cache_and_positions, mask_key_length
from .posenc_family import Family, PosEncModelMixin


@strict
class PosEncElectraConfig(ElectraConfig):
    """ElectraConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_electra"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 512


class PosEncElectraEmbeddings(ElectraEmbeddings):
    forward = PosEncBertEmbeddings.forward


class PosEncElectraSelfAttention(ElectraSelfAttention):
    forward = PosEncBertSelfAttention.forward


class PosEncElectraPreTrainedModel(PosEncModelMixin, ElectraPreTrainedModel):
    config: PosEncElectraConfig
    config_class = PosEncElectraConfig

    def __init__(self, config: PosEncElectraConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if not isinstance(module, PosEncElectraEmbeddings):  # it has no position buffers left to initialise
            super()._init_weights(module)


class PosEncElectraModel(PosEncElectraPreTrainedModel, ElectraModel):
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
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        cache = kwargs.pop("past_key_values", cache)
        if kwargs.get("encoder_hidden_states") is not None:
            raise ValueError("hf_posenc ELECTRA models have no cross-attention.")
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
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)
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
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=encoder_outputs.last_hidden_state, cache=encoder_outputs.cache
        )


class PosEncElectraForPreTraining(PosEncElectraPreTrainedModel, ElectraForPreTraining):
    pass


class PosEncElectraForMaskedLM(PosEncElectraPreTrainedModel, ElectraForMaskedLM):
    pass


class PosEncElectraForSequenceClassification(PosEncElectraPreTrainedModel, ElectraForSequenceClassification):
    pass


class PosEncElectraForTokenClassification(PosEncElectraPreTrainedModel, ElectraForTokenClassification):
    pass


class PosEncElectraForQuestionAnswering(PosEncElectraPreTrainedModel, ElectraForQuestionAnswering):
    pass


class PosEncElectraForMultipleChoice(PosEncElectraPreTrainedModel, ElectraForMultipleChoice):
    pass


class PosEncElectraForCausalLM(PosEncElectraPreTrainedModel, ElectraForCausalLM):
    pass


def adopt(model: ElectraPreTrainedModel):
    """Turn an ELECTRA model (freshly built or live) into the converted one, in place; returns the new encoding."""
    return adopt_bert_layers(model, PosEncElectraModel, PosEncElectraEmbeddings, PosEncElectraSelfAttention)


def unsupported(config: ElectraConfig) -> str | None:
    if config.add_cross_attention:
        return "ELECTRA with cross-attention (add_cross_attention=True) is not supported"
    return None


FAMILY = Family(
    model_type="electra",
    config_class=PosEncElectraConfig,
    heads={
        ElectraModel: PosEncElectraModel,
        ElectraForPreTraining: PosEncElectraForPreTraining,
        ElectraForMaskedLM: PosEncElectraForMaskedLM,
        ElectraForSequenceClassification: PosEncElectraForSequenceClassification,
        ElectraForTokenClassification: PosEncElectraForTokenClassification,
        ElectraForQuestionAnswering: PosEncElectraForQuestionAnswering,
        ElectraForMultipleChoice: PosEncElectraForMultipleChoice,
        ElectraForCausalLM: PosEncElectraForCausalLM,
    },
    auto_classes={
        PosEncElectraModel: "AutoModel",
        PosEncElectraForPreTraining: "AutoModelForPreTraining",
        PosEncElectraForMaskedLM: "AutoModelForMaskedLM",
        PosEncElectraForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncElectraForTokenClassification: "AutoModelForTokenClassification",
        PosEncElectraForQuestionAnswering: "AutoModelForQuestionAnswering",
        PosEncElectraForMultipleChoice: "AutoModelForMultipleChoice",
        PosEncElectraForCausalLM: "AutoModelForCausalLM",
    },
    absolute_table=lambda base: base.embeddings.position_embeddings.weight,
    adopt=adopt,
    is_causal=lambda config: bool(config.is_decoder),
    unsupported=unsupported,
)

PosEncElectraConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
