"""mBART with the learned absolute tables of its encoder and decoder replaced by any registered position encoding.

The same conversion as BART (see `modeling_posenc_bart`, whose mixins run here): two stacks with an encoding each,
the encoder's bidirectional and the decoder's causal, cross-attention untouched, rows from offset 2 kept. What mBART
adds (pre-norm layers, a final `layer_norm` per stack) runs as in transformers; decoder inputs made from `input_ids`
end with the language code, as mBART's `shift_tokens_right` makes them.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import MBartConfig
from transformers.models.mbart.modeling_mbart import (
    MBartAttention,
    MBartDecoder,
    MBartEncoder,
    MBartForCausalLM,
    MBartForConditionalGeneration,
    MBartForQuestionAnswering,
    MBartForSequenceClassification,
    MBartModel,
    MBartPreTrainedModel,
    shift_tokens_right,
)

from .modeling_posenc_bart import (
    PosEncDecoderMixin,
    PosEncEncoderMixin,
    PosEncSelfAttentionMixin,
    PosEncSeq2SeqModelMixin,
    adopt_seq2seq,
    seq2seq_stacks,
    seq2seq_tables,
)
from .posenc_base import PositionEncoding
from .posenc_family import Family, PosEncModelMixin


@strict
class PosEncMBartConfig(MBartConfig):
    """MBartConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_mbart"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    stack_position_encoding_options: dict | None = None  # per stack ("encoder", "decoder"): options that differ
    trained_context_length: int = 1024


class PosEncMBartAttention(PosEncSelfAttentionMixin, MBartAttention):
    pass


class PosEncMBartEncoder(PosEncEncoderMixin, MBartEncoder):
    pass


class PosEncMBartDecoder(PosEncDecoderMixin, MBartDecoder):
    pass


class PosEncMBartPreTrainedModel(PosEncModelMixin, MBartPreTrainedModel):
    config: PosEncMBartConfig
    config_class = PosEncMBartConfig

    def __init__(self, config: PosEncMBartConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)


class PosEncMBartModel(PosEncSeq2SeqModelMixin, PosEncMBartPreTrainedModel, MBartModel):
    def shift_for_decoder(self, input_ids: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(input_ids, self.config.pad_token_id)


class PosEncMBartForConditionalGeneration(PosEncMBartPreTrainedModel, MBartForConditionalGeneration):
    pass


class PosEncMBartForSequenceClassification(PosEncMBartPreTrainedModel, MBartForSequenceClassification):
    pass


class PosEncMBartForQuestionAnswering(PosEncMBartPreTrainedModel, MBartForQuestionAnswering):
    pass


class PosEncMBartForCausalLM(PosEncMBartPreTrainedModel, MBartForCausalLM):
    pass


def adopt(model: MBartPreTrainedModel) -> dict[str, PositionEncoding]:
    stacks = {"encoder": PosEncMBartEncoder, "decoder": PosEncMBartDecoder}
    return adopt_seq2seq(model, PosEncMBartModel, stacks, PosEncMBartAttention)


FAMILY = Family(
    model_type="mbart",
    config_class=PosEncMBartConfig,
    heads={
        MBartModel: PosEncMBartModel,
        MBartForConditionalGeneration: PosEncMBartForConditionalGeneration,
        MBartForSequenceClassification: PosEncMBartForSequenceClassification,
        MBartForQuestionAnswering: PosEncMBartForQuestionAnswering,
        MBartForCausalLM: PosEncMBartForCausalLM,
    },
    auto_classes={
        PosEncMBartModel: "AutoModel",
        PosEncMBartForConditionalGeneration: "AutoModelForSeq2SeqLM",
        PosEncMBartForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncMBartForQuestionAnswering: "AutoModelForQuestionAnswering",
        PosEncMBartForCausalLM: "AutoModelForCausalLM",
    },
    absolute_table=seq2seq_tables,
    adopt=adopt,
    is_causal=lambda config: True,  # the heads read the decoder's output
    unsupported=lambda config: None,
    stacks=seq2seq_stacks,
)

PosEncMBartConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
