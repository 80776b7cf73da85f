"""GPT-Neo with its learned absolute table replaced by any registered position encoding.

Every weight except `transformer.wpe` keeps its name; the encoding lives at `transformer.position_encoding`.
Local layers keep their window: they attend to the previous `window_size` tokens, through a mask that
transformers builds for any length (GPT-Neo's own masks are buffers sized to the trained window), or through
flash attention's `sliding_window`. Attention stays unscaled, with q.k in float32 on the eager path, as in GPT-Neo.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GPTNeoConfig
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask, sliding_window_overlay
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.gpt_neo.modeling_gpt_neo import (
    GPTNeoBlock,
    GPTNeoForCausalLM,
    GPTNeoForQuestionAnswering,
    GPTNeoForSequenceClassification,
    GPTNeoForTokenClassification,
    GPTNeoModel,
    GPTNeoPreTrainedModel,
    GPTNeoSelfAttention,
)

from .posenc_base import cache_and_positions, mask_key_length
from .posenc_family import Family, PosEncModelMixin, attach_encoding, build_position_encoding


@strict
class PosEncGPTNeoConfig(GPTNeoConfig):
    """GPTNeoConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_gpt_neo"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    trained_context_length: int = 2048


def eager_attention_forward(module, query, key, value, attention_mask, scaling=1.0, dropout=0.0, **kwargs):
    """GPT-Neo's eager attention: q.k in float32, then the (float or bool) mask, softmax, dropout."""
    weights = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    elif attention_mask is not None:
        weights = weights + attention_mask[..., : key.shape[-2]]
    weights = nn.functional.softmax(weights, dim=-1).to(value.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class PosEncGPTNeoSelfAttention(GPTNeoSelfAttention):
    """GPT-Neo self-attention (global or local) that rotates q/k before the cache and takes the bias via the mask."""

    def forward(self, hidden_states, attention_mask=None, layer_past=None, position_context=None, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query, key, value = (
            p(hidden_states).view(shape).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        query, key = position_context.rotate(query, key)
        if layer_past is not None:
            key, value = layer_past.update(key, value, self.layer_id)
        attention_mask = position_context.attention_mask(attention_mask, self.layer_id, key.shape[-2])
        attention = position_context.attention_function(self.layer_id, eager_attention_forward)
        attn_output, attn_weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attn_dropout.p if self.training else 0.0,
            scaling=1.0,  # GPT-Neo does not scale its attention scores
            sliding_window=self.config.window_size if self.attention_type == "local" else None,  # flash attention
        )
        attn_output = self.out_proj(attn_output.reshape(*hidden_states.shape[:-1], -1).contiguous())
        return self.resid_dropout(attn_output), attn_weights


class PosEncGPTNeoBlock(GPTNeoBlock):
    """GPT-Neo's block, handing the position context to its attention."""

    def forward(self, hidden_states, layer_past=None, attention_mask=None, position_context=None, **kwargs):
        attn_output, attn_weights = self.attn.attention(
            self.ln_1(hidden_states),
            attention_mask=attention_mask,
            layer_past=layer_past,
            position_context=position_context,
        )
        hidden_states = hidden_states + attn_output
        return hidden_states + self.mlp(self.ln_2(hidden_states)), attn_weights


class PosEncGPTNeoPreTrainedModel(PosEncModelMixin, GPTNeoPreTrainedModel):
    config: PosEncGPTNeoConfig
    config_class = PosEncGPTNeoConfig

    def __init__(self, config: PosEncGPTNeoConfig, *args, **kwargs):
        requested = config._attn_implementation_internal
        config._attn_implementation_internal = "eager"  # GPT-Neo's own layers are built for eager only
        declared = config.max_position_embeddings  # the original builds [n, n] mask buffers, dropped by adopt
        config.max_position_embeddings = min(declared, config.trained_context_length)
        try:
            super().__init__(config, *args, **kwargs)
        finally:
            config.max_position_embeddings = declared
        adopt(self)
        if requested not in (None, "eager"):
            self.set_attn_implementation(requested)

    def _init_weights(self, module):
        if not isinstance(module, PosEncGPTNeoSelfAttention):  # it has no mask buffer left to initialise
            super()._init_weights(module)


class PosEncGPTNeoModel(PosEncGPTNeoPreTrainedModel, GPTNeoModel):
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        cache = kwargs.pop("past_key_values", cache)
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = config.use_cache if use_cache is None else use_cache
        use_cache = use_cache and not (self.gradient_checkpointing and self.training)
        return_dict = config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        seq_length = inputs_embeds.shape[1]
        cache, past_length, position_ids, key_positions = cache_and_positions(
            config, cache, use_cache, attention_mask, position_ids, seq_length, inputs_embeds.device
        )
        mask_args = dict(config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache)
        masks = {"global": create_causal_mask(**mask_args, position_ids=position_ids)}
        if "local" in config.attention_layers:
            window = sliding_window_overlay(config.window_size)
            masks["local"] = create_causal_mask(**mask_args, position_ids=position_ids, and_mask_function=window)

        hidden_states = inputs_embeds
        position_embeds = self.position_encoding.embed(position_ids)
        if position_embeds is not None:
            hidden_states = hidden_states + position_embeds.to(hidden_states.dtype)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids.view(-1, seq_length))
        hidden_states = self.drop(hidden_states)
        context = self.position_encoding(
            position_ids,
            past_length,
            config._attn_implementation,
            hidden_states.dtype,
            attention_mask=masks["global"],
            key_length=mask_key_length(cache, seq_length),
            key_positions=key_positions,
        )
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, attn_weights = block(
                hidden_states,
                layer_past=cache,
                attention_mask=masks[block.attn.attention_type],
                position_context=context,
            )
            if output_attentions:
                all_attentions += (attn_weights,)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()


class PosEncGPTNeoForCausalLM(PosEncGPTNeoPreTrainedModel, GPTNeoForCausalLM):
    pass


class PosEncGPTNeoForSequenceClassification(PosEncGPTNeoPreTrainedModel, GPTNeoForSequenceClassification):
    pass


class PosEncGPTNeoForTokenClassification(PosEncGPTNeoPreTrainedModel, GPTNeoForTokenClassification):
    pass


class PosEncGPTNeoForQuestionAnswering(PosEncGPTNeoPreTrainedModel, GPTNeoForQuestionAnswering):
    pass


def adopt(model: GPTNeoPreTrainedModel):
    """Turn a GPT-Neo model (freshly built or live) into the converted one, in place; returns the new encoding."""
    base = model.base_model
    base.__class__ = PosEncGPTNeoModel
    if hasattr(base, "wpe"):
        del base.wpe
    for block in base.h:
        block.__class__ = PosEncGPTNeoBlock
        block.attn.attention.__class__ = PosEncGPTNeoSelfAttention
        if hasattr(block.attn.attention, "bias"):
            del block.attn.attention.bias  # the [window, window] mask buffer: masks are built per forward
    return attach_encoding(base, build_position_encoding(base.config, causal=True), base.wte.weight)


FAMILY = Family(
    model_type="gpt_neo",
    config_class=PosEncGPTNeoConfig,
    heads={
        GPTNeoModel: PosEncGPTNeoModel,
        GPTNeoForCausalLM: PosEncGPTNeoForCausalLM,
        GPTNeoForSequenceClassification: PosEncGPTNeoForSequenceClassification,
        GPTNeoForTokenClassification: PosEncGPTNeoForTokenClassification,
        GPTNeoForQuestionAnswering: PosEncGPTNeoForQuestionAnswering,
    },
    auto_classes={
        PosEncGPTNeoModel: "AutoModel",
        PosEncGPTNeoForCausalLM: "AutoModelForCausalLM",
        PosEncGPTNeoForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncGPTNeoForTokenClassification: "AutoModelForTokenClassification",
        PosEncGPTNeoForQuestionAnswering: "AutoModelForQuestionAnswering",
    },
    absolute_table=lambda base: base.wpe.weight,
    adopt=adopt,
    is_causal=lambda config: True,
    unsupported=lambda config: None,
)

PosEncGPTNeoConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
