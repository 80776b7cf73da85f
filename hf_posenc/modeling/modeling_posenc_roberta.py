"""RoBERTa with its learned absolute table replaced by any registered position encoding.

RoBERTa counts positions from `padding_idx + 1`; conversion keeps only the rows in use, so converted models
count from 0 like every other family and padding (either side) is read off the attention mask. Every other
weight keeps its name; the encoding lives at `roberta.position_encoding`. The layers are BERT's, so the
forward passes are BERT's adapter's.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import RobertaConfig
from transformers.models.roberta.modeling_roberta import (
    RobertaEmbeddings,
    RobertaForCausalLM,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    RobertaPreTrainedModel,
    RobertaSelfAttention,
)

from .modeling_posenc_bert import PosEncBertEmbeddings, PosEncBertModel, PosEncBertSelfAttention
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncRobertaConfig(RobertaConfig):
    """RobertaConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_roberta"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 512


class PosEncRobertaEmbeddings(RobertaEmbeddings):
    forward = PosEncBertEmbeddings.forward


class PosEncRobertaSelfAttention(RobertaSelfAttention):
    forward = PosEncBertSelfAttention.forward


class PosEncRobertaPreTrainedModel(PosEncModelMixin, RobertaPreTrainedModel):
    config: PosEncRobertaConfig
    config_class = PosEncRobertaConfig

    def __init__(self, config: PosEncRobertaConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if not isinstance(module, PosEncRobertaEmbeddings):  # it has no position buffers left to initialise
            super()._init_weights(module)


class PosEncRobertaModel(PosEncRobertaPreTrainedModel, RobertaModel):
    forward = PosEncBertModel.forward


class PosEncRobertaForCausalLM(PosEncRobertaPreTrainedModel, RobertaForCausalLM):
    pass


class PosEncRobertaForMaskedLM(PosEncRobertaPreTrainedModel, RobertaForMaskedLM):
    pass


class PosEncRobertaForSequenceClassification(PosEncRobertaPreTrainedModel, RobertaForSequenceClassification):
    pass


class PosEncRobertaForMultipleChoice(PosEncRobertaPreTrainedModel, RobertaForMultipleChoice):
    pass


class PosEncRobertaForTokenClassification(PosEncRobertaPreTrainedModel, RobertaForTokenClassification):
    pass


class PosEncRobertaForQuestionAnswering(PosEncRobertaPreTrainedModel, RobertaForQuestionAnswering):
    pass


def absolute_table(base: RobertaModel):
    """The rows of the position table in use: RoBERTa's position 0 is row `padding_idx + 1`."""
    padding_idx = base.embeddings.padding_idx
    return base.embeddings.position_embeddings.weight[0 if padding_idx is None else padding_idx + 1 :]


def adopt(model: RobertaPreTrainedModel):
    """Turn a RoBERTa model (freshly built or live) into the converted one, in place; returns the new encoding."""
    return adopt_bert_layers(model, PosEncRobertaModel, PosEncRobertaEmbeddings, PosEncRobertaSelfAttention)


def adopt_bert_layers(model, base_cls: type, embeddings_cls: type, attention_cls: type):
    """Adoption for every family whose embeddings and layers are laid out as BERT's."""
    base = model.base_model
    base.__class__ = base_cls
    embeddings = base.embeddings
    embeddings.__class__ = embeddings_cls
    for name in ("position_embeddings", "position_ids", "token_type_ids"):
        if hasattr(embeddings, name):
            delattr(embeddings, name)
    for layer in base.encoder.layer:
        layer.attention.self.__class__ = attention_cls
    encoding = build_position_encoding(base.config, causal=base.config.is_decoder)
    return attach_encoding(base, encoding, embeddings.word_embeddings.weight)


def unsupported(config: RobertaConfig) -> str | None:
    if config.add_cross_attention:
        return "RoBERTa with cross-attention (add_cross_attention=True) is not supported"
    return None


FAMILY = Family(
    model_type="roberta",
    config_class=PosEncRobertaConfig,
    heads={
        RobertaModel: PosEncRobertaModel,
        RobertaForCausalLM: PosEncRobertaForCausalLM,
        RobertaForMaskedLM: PosEncRobertaForMaskedLM,
        RobertaForSequenceClassification: PosEncRobertaForSequenceClassification,
        RobertaForMultipleChoice: PosEncRobertaForMultipleChoice,
        RobertaForTokenClassification: PosEncRobertaForTokenClassification,
        RobertaForQuestionAnswering: PosEncRobertaForQuestionAnswering,
    },
    auto_classes={
        PosEncRobertaModel: "AutoModel",
        PosEncRobertaForCausalLM: "AutoModelForCausalLM",
        PosEncRobertaForMaskedLM: "AutoModelForMaskedLM",
        PosEncRobertaForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncRobertaForMultipleChoice: "AutoModelForMultipleChoice",
        PosEncRobertaForTokenClassification: "AutoModelForTokenClassification",
        PosEncRobertaForQuestionAnswering: "AutoModelForQuestionAnswering",
    },
    absolute_table=absolute_table,
    adopt=adopt,
    is_causal=lambda config: bool(config.is_decoder),
    unsupported=unsupported,
)

PosEncRobertaConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
