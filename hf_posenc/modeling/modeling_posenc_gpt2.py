"""GPT-2 with its learned absolute table replaced by any registered position encoding.

Every weight except `transformer.wpe` keeps its name; the encoding lives at `transformer.position_encoding`.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import GPT2Config
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.models.gpt2.modeling_gpt2 import (
    GPT2Attention,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    eager_attention_forward,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import PositionContext, attention_kwargs, cache_and_positions, mask_key_length
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncGPT2Config(GPT2Config):
    """GPT2Config plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_gpt2"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 1024


class PosEncGPT2Attention(GPT2Attention):
    """GPT-2 self-attention that rotates q/k before the cache and takes the bias through the mask or score_mod."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        kwargs.pop("encoder_hidden_states", None)
        kwargs.pop("encoder_attention_mask", None)
        kwargs.pop("output_attentions", None)
        query_key_value = self.c_attn(hidden_states)
        heads = query_key_value.view(*query_key_value.shape[:-1], -1, self.head_dim).transpose(1, 2)  # q, k, v heads
        query, key = position_context.rotate_stacked(heads[:, : 2 * self.num_heads])  # one pass over q and k
        value = heads[:, 2 * self.num_heads :]
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        attention_mask = position_context.attention_mask(attention_mask, self.layer_idx, key.shape[-2])

        if self.config._attn_implementation == "eager" and self.reorder_and_upcast_attn:
            attn_output, attn_weights = self._upcast_and_reordered_attn(query, key, value, attention_mask)
        else:
            attention = position_context.attention_function(self.layer_idx, eager_attention_forward)
            attn_output, attn_weights = attention(
                self,
                query,
                key,
                value,
                attention_mask,
                dropout=self.attn_dropout.p if self.training else 0.0,
                scaling=self.scaling,
                **attention_kwargs(kwargs),
            )
        attn_output = attn_output.reshape(*attn_output.shape[:-2], -1).contiguous()
        attn_output = self.resid_dropout(self.c_proj(attn_output))
        return attn_output, attn_weights


class PosEncGPT2PreTrainedModel(PosEncModelMixin, GPT2PreTrainedModel):
    config: PosEncGPT2Config
    config_class = PosEncGPT2Config

    def __init__(self, config: PosEncGPT2Config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)


class PosEncGPT2Model(PosEncGPT2PreTrainedModel, GPT2Model):
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        kwargs.pop("output_attentions", None)
        kwargs.pop("output_hidden_states", None)
        cache = kwargs.pop("past_key_values", cache)
        if kwargs.get("encoder_hidden_states") is not None:
            raise ValueError("hf_posenc GPT-2 models have no cross-attention.")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)
            input_ids = input_ids.view(-1, input_ids.shape[-1])
            inputs_embeds = self.wte(input_ids)
        batch_size, seq_length = inputs_embeds.shape[:2]
        if attention_mask is not None and attention_mask.ndim < 4:
            attention_mask = attention_mask.view(batch_size, -1)
        cache, past_length, position_ids, key_positions = cache_and_positions(
            self.config, cache, use_cache, attention_mask, position_ids, seq_length, inputs_embeds.device
        )

        hidden_states = inputs_embeds
        position_embeds = self.position_encoding.embed(position_ids)
        if position_embeds is not None:
            hidden_states = hidden_states + position_embeds.to(hidden_states.dtype)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids.view(-1, seq_length))
        hidden_states = self.drop(hidden_states)

        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        context = self.position_encoding(
            position_ids,
            past_length,
            self.config._attn_implementation,
            hidden_states.dtype,
            attention_mask=causal_mask,
            key_length=mask_key_length(cache, seq_length),
            key_positions=key_positions,
        )
        for block in self.h:
            hidden_states = block(
                hidden_states,
                cache if not (self.gradient_checkpointing and self.training) else None,
                causal_mask,
                use_cache=use_cache,
                position_ids=position_ids,
                position_context=context,
                **kwargs,
            )
        hidden_states = self.ln_f(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, cache=cache if use_cache else None
        )


class PosEncGPT2LMHeadModel(PosEncGPT2PreTrainedModel, GPT2LMHeadModel):
    pass


class PosEncGPT2ForSequenceClassification(PosEncGPT2PreTrainedModel, GPT2ForSequenceClassification):
    pass


class PosEncGPT2ForTokenClassification(PosEncGPT2PreTrainedModel, GPT2ForTokenClassification):
    pass


class PosEncGPT2ForQuestionAnswering(PosEncGPT2PreTrainedModel, GPT2ForQuestionAnswering):
    pass


def adopt(model: GPT2PreTrainedModel):
    """Turn a GPT-2 model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncGPT2Model
    if hasattr(base, "wpe"):
        del base.wpe
    for block in base.h:
        block.attn.__class__ = PosEncGPT2Attention
    return attach_encoding(base, build_position_encoding(base.config, causal=True), base.wte.weight)


def unsupported(config: GPT2Config) -> str | None:
    if config.add_cross_attention:
        return "GPT-2 with cross-attention (add_cross_attention=True) is not supported"
    return None


FAMILY = Family(
    model_type="gpt2",
    config_class=PosEncGPT2Config,
    heads={
        GPT2Model: PosEncGPT2Model,
        GPT2LMHeadModel: PosEncGPT2LMHeadModel,
        GPT2ForSequenceClassification: PosEncGPT2ForSequenceClassification,
        GPT2ForTokenClassification: PosEncGPT2ForTokenClassification,
        GPT2ForQuestionAnswering: PosEncGPT2ForQuestionAnswering,
    },
    auto_classes={
        PosEncGPT2Model: "AutoModel",
        PosEncGPT2LMHeadModel: "AutoModelForCausalLM",
        PosEncGPT2ForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncGPT2ForTokenClassification: "AutoModelForTokenClassification",
        PosEncGPT2ForQuestionAnswering: "AutoModelForQuestionAnswering",
    },
    absolute_table=lambda base: base.wpe.weight,
    adopt=adopt,
    is_causal=lambda config: True,
    unsupported=unsupported,
)

PosEncGPT2Config.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
