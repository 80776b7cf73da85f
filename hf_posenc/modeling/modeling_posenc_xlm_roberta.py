"""XLM-RoBERTa with its learned absolute table replaced by any registered position encoding.

As in RoBERTa, positions counted from `padding_idx + 1` become positions counted from 0. Every other weight
keeps its name; the encoding lives at `roberta.position_encoding`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import XLMRobertaConfig
from transformers.models.xlm_roberta.modeling_xlm_roberta import (
    XLMRobertaEmbeddings,
    XLMRobertaForCausalLM,
    XLMRobertaForMaskedLM,
    XLMRobertaForMultipleChoice,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    XLMRobertaPreTrainedModel,
    XLMRobertaSelfAttention,
)

from .modeling_posenc_bert import PosEncBertEmbeddings, PosEncBertModel, PosEncBertSelfAttention
from .modeling_posenc_roberta import absolute_table, adopt_bert_layers
from .posenc_family import Family, PosEncModelMixin


@strict
class PosEncXLMRobertaConfig(XLMRobertaConfig):
    """XLMRobertaConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_xlm-roberta"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 512


class PosEncXLMRobertaEmbeddings(XLMRobertaEmbeddings):
    forward = PosEncBertEmbeddings.forward


class PosEncXLMRobertaSelfAttention(XLMRobertaSelfAttention):
    forward = PosEncBertSelfAttention.forward


class PosEncXLMRobertaPreTrainedModel(PosEncModelMixin, XLMRobertaPreTrainedModel):
    config: PosEncXLMRobertaConfig
    config_class = PosEncXLMRobertaConfig

    def __init__(self, config: PosEncXLMRobertaConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)

    def _init_weights(self, module):
        if not isinstance(module, PosEncXLMRobertaEmbeddings):  # it has no position buffers left to initialise
            super()._init_weights(module)


class PosEncXLMRobertaModel(PosEncXLMRobertaPreTrainedModel, XLMRobertaModel):
    forward = PosEncBertModel.forward


class PosEncXLMRobertaForCausalLM(PosEncXLMRobertaPreTrainedModel, XLMRobertaForCausalLM):
    pass


class PosEncXLMRobertaForMaskedLM(PosEncXLMRobertaPreTrainedModel, XLMRobertaForMaskedLM):
    pass


class PosEncXLMRobertaForSequenceClassification(PosEncXLMRobertaPreTrainedModel, XLMRobertaForSequenceClassification):
    pass


class PosEncXLMRobertaForMultipleChoice(PosEncXLMRobertaPreTrainedModel, XLMRobertaForMultipleChoice):
    pass


class PosEncXLMRobertaForTokenClassification(PosEncXLMRobertaPreTrainedModel, XLMRobertaForTokenClassification):
    pass


class PosEncXLMRobertaForQuestionAnswering(PosEncXLMRobertaPreTrainedModel, XLMRobertaForQuestionAnswering):
    pass


def adopt(model: XLMRobertaPreTrainedModel):
    """Turn an XLM-RoBERTa model (freshly built or live) into the converted one, in place; returns the new encoding."""
    return adopt_bert_layers(model, PosEncXLMRobertaModel, PosEncXLMRobertaEmbeddings, PosEncXLMRobertaSelfAttention)


def unsupported(config: XLMRobertaConfig) -> str | None:
    if config.add_cross_attention:
        return "XLM-RoBERTa with cross-attention (add_cross_attention=True) is not supported"
    return None


FAMILY = Family(
    model_type="xlm-roberta",
    config_class=PosEncXLMRobertaConfig,
    heads={
        XLMRobertaModel: PosEncXLMRobertaModel,
        XLMRobertaForCausalLM: PosEncXLMRobertaForCausalLM,
        XLMRobertaForMaskedLM: PosEncXLMRobertaForMaskedLM,
        XLMRobertaForSequenceClassification: PosEncXLMRobertaForSequenceClassification,
        XLMRobertaForMultipleChoice: PosEncXLMRobertaForMultipleChoice,
        XLMRobertaForTokenClassification: PosEncXLMRobertaForTokenClassification,
        XLMRobertaForQuestionAnswering: PosEncXLMRobertaForQuestionAnswering,
    },
    auto_classes={
        PosEncXLMRobertaModel: "AutoModel",
        PosEncXLMRobertaForCausalLM: "AutoModelForCausalLM",
        PosEncXLMRobertaForMaskedLM: "AutoModelForMaskedLM",
        PosEncXLMRobertaForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncXLMRobertaForMultipleChoice: "AutoModelForMultipleChoice",
        PosEncXLMRobertaForTokenClassification: "AutoModelForTokenClassification",
        PosEncXLMRobertaForQuestionAnswering: "AutoModelForQuestionAnswering",
    },
    absolute_table=absolute_table,
    adopt=adopt,
    is_causal=lambda config: bool(config.is_decoder),
    unsupported=unsupported,
)

PosEncXLMRobertaConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
