"""BART with the learned absolute tables of its encoder and decoder replaced by any registered position encoding.

An encoder-decoder has two stacks and two tables: each stack gets its own encoding (same name and options), the
encoder's bidirectional and the decoder's causal, at `model.encoder.position_encoding` and
`model.decoder.position_encoding`. BART looks positions up at `position + 2`; conversion keeps only the rows in use,
so converted models count from 0. Every other weight keeps its name.

The encoding acts on self-attention only. Cross-attention (decoder queries over encoder states) is left exactly as
it was: its queries and keys come from two different sequences, so there is no distance between them to encode.

Positions: `position_ids` are the encoder's, `decoder_position_ids` the decoder's (as `generate` names them for
encoder-decoders); by default each stack counts over its own attention mask, so left padding keeps every row's
positions. The mBART adapter reuses the mixins here.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import BartConfig
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqModelOutput
from transformers.models.bart.modeling_bart import (
    BartAttention,
    BartDecoder,
    BartEncoder,
    BartForCausalLM,
    BartForConditionalGeneration,
    BartForQuestionAnswering,
    BartForSequenceClassification,
    BartModel,
    BartPreTrainedModel,
    eager_attention_forward,
    shift_tokens_right,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .posenc_base import (
    PositionContext,
    PositionEncoding,
    attention_kwargs,
    cache_and_positions,
    default_position_ids,
    mask_key_length,
)
from .posenc_family import (
    Family,
    PosEncModelMixin,
    PositionBuffersInitMixin,
    Stack,
    attach_encoding,
    build_position_encoding,
)


@strict
class PosEncBartConfig(BartConfig):
    """BartConfig plus the position encoding, its options, and the context length the weights were trained at."""

    model_type = "posenc_bart"

    position_encoding: str = "rope"
    position_encoding_options: dict | None = None
    stack_position_encoding_options: dict | None = None  # per stack ("encoder", "decoder"): options that differ
    trained_context_length: int = 1024


class PosEncSelfAttentionMixin:
    """Self-attention rotates q/k before the cache and takes the bias through the mask or score_mod; cross-attention
    (`key_value_states` given) runs the original code untouched, without the position context. Either passes on to the
    attention function only the keywords transformers documents for it (`attention_kwargs`)."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_context: PositionContext | None = None,
        **kwargs,
    ):
        cache = kwargs.pop("past_key_values", cache)
        if key_value_states is not None:
            return super().forward(
                hidden_states, key_value_states, cache=cache, attention_mask=attention_mask, **attention_kwargs(kwargs)
            )
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        query, key = position_context.rotate(query, key)
        if cache is not None:
            own = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            key, value = own.update(key, value, self.layer_idx, kwargs=kwargs)
        attention_mask = position_context.attention_mask(attention_mask, self.layer_idx, key.shape[-2])
        attention = position_context.attention_function(self.layer_idx, eager_attention_forward)
        attn_output, attn_weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout,
            scaling=self.scaling,
            **attention_kwargs(kwargs),
        )
        attn_output = attn_output.reshape(*hidden_states.shape[:-1], -1).contiguous()
        return self.out_proj(attn_output), attn_weights


def stack_input(stack: nn.Module, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """A stack's first hidden states, as (m)BART makes them: token embeddings plus the position signal (for an
    "input" encoding), then `layernorm_embedding` and dropout."""
    position_embeds = stack.position_encoding.embed(position_ids)
    if position_embeds is not None:
        inputs_embeds = inputs_embeds + position_embeds.to(inputs_embeds.dtype)
    hidden_states = stack.layernorm_embedding(inputs_embeds)
    return nn.functional.dropout(hidden_states, p=stack.dropout, training=stack.training)


class PosEncEncoderMixin(PositionBuffersInitMixin):
    """The encoder stack with its own (bidirectional) encoding; mBART's final `layer_norm` runs where it exists."""

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        length = inputs_embeds.shape[1]
        key_positions = position_ids  # given positions: distance biases follow them
        if position_ids is None:
            position_ids = default_position_ids(attention_mask, 0, length, inputs_embeds.device)
        hidden_states = stack_input(self, inputs_embeds, position_ids)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        context = self.position_encoding(
            position_ids,
            0,
            self.config._attn_implementation,
            hidden_states.dtype,
            attention_mask=mask,
            key_length=length,
            key_positions=key_positions,
        )
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            hidden_states = layer(hidden_states, mask, position_context=context, **kwargs)
        if getattr(self, "layer_norm", None) is not None:
            hidden_states = self.layer_norm(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)


class PosEncDecoderMixin(PositionBuffersInitMixin):
    """The decoder stack with its own (causal) encoding; cross-attention gets no position context."""

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        cache = kwargs.pop("past_key_values", cache)
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of decoder_input_ids or decoder_inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            new = DynamicCache(config=self.config)
            paired = encoder_hidden_states is not None or self.config.is_encoder_decoder
            cache = EncoderDecoderCache(new, DynamicCache(config=self.config)) if paired else new
        own = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        length = inputs_embeds.shape[1]
        own, past_length, position_ids, key_positions = cache_and_positions(
            self.config, own, use_cache, attention_mask, position_ids, length, inputs_embeds.device
        )
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=own,
            position_ids=position_ids,
        )
        encoder_attention_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        hidden_states = stack_input(self, inputs_embeds, position_ids)
        context = self.position_encoding(
            position_ids,
            past_length,
            self.config._attn_implementation,
            hidden_states.dtype,
            attention_mask=causal_mask,
            key_length=mask_key_length(own, length),
            key_positions=key_positions,
        )
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            hidden_states = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                use_cache=use_cache,
                position_context=context,
                **kwargs,
            )
        if getattr(self, "layer_norm", None) is not None:
            hidden_states = self.layer_norm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, cache=cache)


class PosEncSeq2SeqModelMixin:
    """The base model: routes `position_ids` to the encoder and `decoder_position_ids` to the decoder."""

    def shift_for_decoder(self, input_ids: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        cache = kwargs.pop("past_key_values", cache)
        if decoder_input_ids is None and decoder_inputs_embeds is None:  # as BART: denoising from the input
            if input_ids is None:
                raise ValueError(
                    "If no `decoder_input_ids` or `decoder_inputs_embeds` are passed, `input_ids` cannot be `None`."
                )
            decoder_input_ids = self.shift_for_decoder(input_ids)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                position_ids=position_ids,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs[0],
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            position_ids=decoder_position_ids,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


def seq2seq_stacks(config) -> dict[str, Stack]:
    """Encoder (bidirectional) and decoder (causal); a decoder-only head (`...ForCausalLM`) has the decoder only."""
    decoder = Stack(causal=True, num_heads=config.decoder_attention_heads, num_layers=config.decoder_layers)
    if not config.is_encoder_decoder:
        return {"decoder": decoder}
    encoder = Stack(causal=False, num_heads=config.encoder_attention_heads, num_layers=config.encoder_layers)
    return {"encoder": encoder, "decoder": decoder}


def seq2seq_tables(base: nn.Module) -> dict[str, torch.Tensor]:
    """Each stack's rows in use: position 0 is row `offset` (2)."""
    return {
        name: getattr(base, name).embed_positions.weight[getattr(base, name).embed_positions.offset :]
        for name in ("encoder", "decoder")
        if hasattr(base, name)
    }


def adopt_seq2seq(model, base_class: type, stack_classes: dict[str, type], attention_class: type):
    """Turn a (m)BART model, freshly built or live, into the converted one, in place; returns each stack's encoding."""
    base = model.base_model
    if hasattr(base, "encoder"):  # the base model of an encoder-decoder (not the wrapper of a decoder-only head)
        base.__class__ = base_class
    encodings: dict[str, PositionEncoding] = {}
    for name, stack in seq2seq_stacks(model.config).items():
        module = getattr(base, name)
        module.__class__ = stack_classes[name]
        if hasattr(module, "embed_positions"):
            del module.embed_positions
        for layer in module.layers:
            layer.self_attn.__class__ = attention_class
            if hasattr(layer, "encoder_attn"):  # cross-attention: the original code, given only documented keywords
                layer.encoder_attn.__class__ = attention_class
        encoding = build_position_encoding(model.config, stack.causal, stack, name)
        encodings[name] = attach_encoding(module, encoding, module.embed_tokens.weight)
    return encodings


class PosEncBartAttention(PosEncSelfAttentionMixin, BartAttention):
    pass


class PosEncBartEncoder(PosEncEncoderMixin, BartEncoder):
    pass


class PosEncBartDecoder(PosEncDecoderMixin, BartDecoder):
    pass


class PosEncBartPreTrainedModel(PosEncModelMixin, BartPreTrainedModel):
    config: PosEncBartConfig
    config_class = PosEncBartConfig

    def __init__(self, config: PosEncBartConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        adopt(self)


class PosEncBartModel(PosEncSeq2SeqModelMixin, PosEncBartPreTrainedModel, BartModel):
    pass


class PosEncBartForConditionalGeneration(PosEncBartPreTrainedModel, BartForConditionalGeneration):
    pass


class PosEncBartForSequenceClassification(PosEncBartPreTrainedModel, BartForSequenceClassification):
    pass


class PosEncBartForQuestionAnswering(PosEncBartPreTrainedModel, BartForQuestionAnswering):
    pass


class PosEncBartForCausalLM(PosEncBartPreTrainedModel, BartForCausalLM):
    pass


def adopt(model: BartPreTrainedModel) -> dict[str, PositionEncoding]:
    stacks = {"encoder": PosEncBartEncoder, "decoder": PosEncBartDecoder}
    return adopt_seq2seq(model, PosEncBartModel, stacks, PosEncBartAttention)


FAMILY = Family(
    model_type="bart",
    config_class=PosEncBartConfig,
    heads={
        BartModel: PosEncBartModel,
        BartForConditionalGeneration: PosEncBartForConditionalGeneration,
        BartForSequenceClassification: PosEncBartForSequenceClassification,
        BartForQuestionAnswering: PosEncBartForQuestionAnswering,
        BartForCausalLM: PosEncBartForCausalLM,
    },
    auto_classes={
        PosEncBartModel: "AutoModel",
        PosEncBartForConditionalGeneration: "AutoModelForSeq2SeqLM",
        PosEncBartForSequenceClassification: "AutoModelForSequenceClassification",
        PosEncBartForQuestionAnswering: "AutoModelForQuestionAnswering",
        PosEncBartForCausalLM: "AutoModelForCausalLM",
    },
    absolute_table=seq2seq_tables,
    adopt=adopt,
    is_causal=lambda config: True,  # the heads read the decoder's output
    unsupported=lambda config: None,
    stacks=seq2seq_stacks,
)

PosEncBartConfig.register_for_auto_class()
for _model_cls, _auto_name in FAMILY.auto_classes.items():
    _model_cls.register_for_auto_class(_auto_name)
