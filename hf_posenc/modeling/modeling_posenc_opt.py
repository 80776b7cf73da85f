"""OPT with its learned absolute table replaced by any registered position encoding.

OPT looks positions up at `position + 2`; conversion keeps only the rows in use, so converted models count
from 0. Every weight except `model.decoder.embed_positions` keeps its name; the encoding lives at
`model.position_encoding`, and the base model runs the decoder's layers itself.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import OPTConfig
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.opt.modeling_opt import (
    OPTAttention,
    OPTDecoder,
    OPTForCausalLM,
    OPTForQuestionAnswering,
    OPTForSequenceClassification,
    OPTModel,
    OPTPreTrainedModel,
    eager_attention_forward,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import PositionContext, attention_kwargs, cache_and_positions, mask_key_length
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncOPTConfig(OPTConfig):
    """OPTConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_opt"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 2048


class PosEncOPTAttention(OPTAttention):
    """OPT self-attention that rotates q/k before the cache and takes the bias through the mask or score_mod."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        kwargs.pop("output_attentions", None)
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = (self.q_proj(hidden_states) * self.scaling).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
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
            dropout=0.0 if not self.training else self.dropout,
            scaling=1.0,  # OPT scales the query before the product
            **attention_kwargs(kwargs),
        )
        attn_output = attn_output.reshape(*hidden_states.shape[:-1], -1).contiguous()
        return self.out_proj(attn_output), attn_weights


class PosEncOPTDecoder(OPTDecoder):
    """The decoder's modules, run by the base model: the encoding lives on the base model, not here."""

    def forward(self, *args, **kwargs):
        raise TypeError(
            "A converted OPT runs its decoder layers from the base model, which holds the position encoding: "
            "call model.model(...) instead of model.model.decoder(...)."
        )


class PosEncOPTPreTrainedModel(PosEncModelMixin, OPTPreTrainedModel):
    config: PosEncOPTConfig
    config_class = PosEncOPTConfig

    def __init__(self, config: PosEncOPTConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)


class PosEncOPTModel(PosEncOPTPreTrainedModel, OPTModel):
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        cache = kwargs.pop("past_key_values", cache)
        decoder = self.decoder
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = decoder.embed_tokens(input_ids.view(-1, input_ids.shape[-1]))
        cache, past_length, position_ids, key_positions = cache_and_positions(
            self.config, cache, use_cache, attention_mask, position_ids, inputs_embeds.shape[1], inputs_embeds.device
        )
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )

        hidden_states = decoder.project_in(inputs_embeds) if decoder.project_in is not None else inputs_embeds
        position_embeds = self.position_encoding.embed(position_ids)
        if position_embeds is not None:
            hidden_states = hidden_states + position_embeds.to(hidden_states.dtype)
        context = self.position_encoding(
            position_ids,
            past_length,
            self.config._attn_implementation,
            hidden_states.dtype,
            attention_mask=causal_mask,
            key_length=mask_key_length(cache, inputs_embeds.shape[1]),
            key_positions=key_positions,
        )
        for layer in decoder.layers:
            if self.training and decoder.layerdrop > 0.0 and torch.rand([]) < decoder.layerdrop:
                continue
            hidden_states = layer(
                hidden_states,
                attention_mask=causal_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                position_context=context,
                **kwargs,
            )
        if decoder.final_layer_norm is not None:
            hidden_states = decoder.final_layer_norm(hidden_states)
        if decoder.project_out is not None:
            hidden_states = decoder.project_out(hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache if use_cache else None)


class PosEncOPTForCausalLM(PosEncOPTPreTrainedModel, OPTForCausalLM):
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """OPT's own head, calling the base model (which holds the encoding) instead of its decoder."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=kwargs.pop("past_key_values", cache),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)).contiguous()
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class PosEncOPTForSequenceClassification(PosEncOPTPreTrainedModel, OPTForSequenceClassification):
    pass


class PosEncOPTForQuestionAnswering(PosEncOPTPreTrainedModel, OPTForQuestionAnswering):
    pass


def absolute_table(base: OPTModel) -> torch.Tensor:
    """The rows of the position table in use: OPT's position 0 is row `offset` (2)."""
    table = base.decoder.embed_positions
    return table.weight[table.offset :]


def adopt(model: OPTPreTrainedModel):
    """Turn an OPT model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncOPTModel
    base.decoder.__class__ = PosEncOPTDecoder
    if hasattr(base.decoder, "embed_positions"):
        del base.decoder.embed_positions
    for layer in base.decoder.layers:
        layer.self_attn.__class__ = PosEncOPTAttention
    encoding = build_position_encoding(base.config, causal=True)
    return attach_encoding(base, encoding, base.decoder.embed_tokens.weight)


FAMILY = Family(
    model_type="opt",
    config_class=PosEncOPTConfig,
    heads={
        OPTModel: PosEncOPTModel,
        OPTForCausalLM: PosEncOPTForCausalLM,
        OPTForSequenceClassification: PosEncOPTForSequenceClassification,
        OPTForQuestionAnswering: PosEncOPTForQuestionAnswering,
    },
    auto_classes={
        PosEncOPTModel: "AutoModel",
        PosEncOPTForCausalLM: "AutoModelForCausalLM",
        PosEncOPTForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncOPTForQuestionAnswering: "AutoModelForQuestionAnswering",
    },
    absolute_table=absolute_table,
    adopt=adopt,
    is_causal=lambda config: True,
    unsupported=lambda config: None,
)

PosEncOPTConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
