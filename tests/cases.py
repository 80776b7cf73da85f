"""The model families under test: one `FamilyCase` line each. A new family passes the suite by adding a line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    DistilBertConfig,
    DistilBertForMaskedLM,
    ElectraConfig,
    ElectraForPreTraining,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    MBartConfig,
    MBartForConditionalGeneration,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedModel,
    RobertaConfig,
    RobertaForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

WINDOW = 32  # the tiny models' learned position window
VOCAB = 128


@dataclass(frozen=True)
class FamilyCase:
    """How to build a tiny original model of a family and what to expect of it."""

    name: str
    build: Callable[[], PreTrainedModel]  # a tiny original model with its main head, in eval mode
    causal: bool
    auto_class: str  # the transformers Auto class that loads the main head
    table_key: str  # state-dict key of the learned absolute table that conversion removes
    qk_weights: tuple[str, ...]  # parameter-name suffixes scaled up so that positions change the logits
    lora_targets: tuple[str, ...]
    lora_fan_in_fan_out: bool = False
    pad_token_id: int = 0
    output: str = "logits"  # the output the suite compares (a head without logits: what it returns instead)
    labels: bool = True  # the head takes `labels` and returns a loss; False: `loss` trains on a stand-in objective
    no_cache: str = ""  # a causal model without KV cache or `generate`: why those checks do not apply (shown as skip)
    bf16_tolerance: float = 0.03  # bf16 vs fp32, of the largest |fp32 output| (tests/test_convert.py)
    seq2seq: bool = False  # an encoder-decoder: `input_ids` feed the encoder and, shifted right, the decoder
    more_table_keys: tuple[str, ...] = ()  # the other stacks' tables (an encoder-decoder's decoder table)
    tower: str = ""  # a two-tower model: the submodule that takes `input_ids` (CLIPModel's text_model)

    def text_part(self, model: PreTrainedModel) -> PreTrainedModel:
        """What `input_ids` are fed to: the model, or its `tower`."""
        return getattr(model, self.tower) if self.tower else model

    def __str__(self) -> str:
        return self.name

    def outputs(self, model: PreTrainedModel, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        """The head's main output (`self.output`) for `input_ids`. An encoder-decoder's decoder reads `input_ids`
        shifted right, so given `position_ids` go to both stacks (the decoder's as `decoder_position_ids`)."""
        if self.seq2seq and kwargs.get("position_ids") is not None:
            kwargs["decoder_position_ids"] = kwargs["position_ids"]
        return self.text_part(model)(input_ids, **kwargs)[self.output]

    def loss(self, model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
        """The head's own loss with `labels=input_ids`; for a head without one (a text encoder), next-token
        cross-entropy of the hidden states read through the token embeddings, which reaches every position weight."""
        if self.labels:
            return model(input_ids, labels=input_ids).loss
        text = self.text_part(model)
        scores = text(input_ids).last_hidden_state @ text.get_input_embeddings().weight.T
        return torch.nn.functional.cross_entropy(scores[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=4, n_positions=WINDOW, vocab_size=VOCAB, bos_token_id=1, eos_token_id=2
    )
    return GPT2LMHeadModel(config).eval()


def tiny_bert() -> BertForMaskedLM:
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        pad_token_id=0,
    )
    return BertForMaskedLM(config).eval()


def tiny_roberta(config_class=RobertaConfig, model_class=RobertaForMaskedLM) -> PreTrainedModel:
    config = config_class(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=WINDOW + 2,  # positions start at pad_token_id + 1
        vocab_size=VOCAB,
        pad_token_id=1,
    )
    return model_class(config).eval()


def tiny_xlm_roberta() -> XLMRobertaForMaskedLM:
    return tiny_roberta(XLMRobertaConfig, XLMRobertaForMaskedLM)


def tiny_opt() -> OPTForCausalLM:
    config = OPTConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        ffn_dim=128,
        word_embed_proj_dim=48,  # exercises project_in / project_out
        dropout=0.0,  # functional dropout: there is no nn.Dropout module for a test to switch off
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        pad_token_id=1,
    )
    return OPTForCausalLM(config).eval()


def tiny_distilbert() -> DistilBertForMaskedLM:
    config = DistilBertConfig(
        n_layers=2, dim=64, n_heads=4, hidden_dim=128, max_position_embeddings=WINDOW, vocab_size=VOCAB, pad_token_id=0
    )
    return DistilBertForMaskedLM(config).eval()


def tiny_electra() -> ElectraForPreTraining:
    config = ElectraConfig(
        num_hidden_layers=2,
        hidden_size=64,
        embedding_size=32,  # exercises embeddings_project: input encodings work at the embedding width
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        pad_token_id=0,
    )
    return ElectraForPreTraining(config).eval()


def tiny_gpt_neo() -> GPTNeoForCausalLM:
    config = GPTNeoConfig(
        num_layers=2,
        hidden_size=64,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=8,  # the local layer attends to the previous 8 tokens
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPTNeoForCausalLM(config).eval()


def tiny_clip_text_config(window: int = WINDOW, eos_token_id: int = VOCAB - 1) -> CLIPTextConfig:
    """A tiny CLIP text tower; by default EOS is the last id, as in CLIP's current configs (pooled at its first
    occurrence)."""
    return CLIPTextConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        projection_dim=32,
        max_position_embeddings=window,
        vocab_size=VOCAB,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=eos_token_id,
    )


def tiny_clip_text() -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(tiny_clip_text_config()).eval()


def tiny_clip() -> CLIPModel:
    """Both towers: the tiny text tower and a one-layer vision tower on 32 x 32 images."""
    vision = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    config = CLIPConfig(
        text_config=tiny_clip_text_config().to_dict(),
        vision_config={**vision, "image_size": 32, "patch_size": 16},
        projection_dim=32,
    )
    return CLIPModel(config).eval()


def tiny_bart(config_class=BartConfig, model_class=BartForConditionalGeneration) -> PreTrainedModel:
    """A tiny BART (or mBART), both tables of WINDOW positions; the decoder has more heads than the encoder, so that
    each stack's encoding must be built from its own counts. (The layer counts agree: transformers sizes the
    decoder-only head's cache by `num_hidden_layers`, which is BART's `encoder_layers`.)"""
    config = config_class(
        encoder_layers=2,
        decoder_layers=2,
        d_model=64,
        encoder_attention_heads=4,
        decoder_attention_heads=8,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        dropout=0.0,  # functional dropout, as OPT's: no nn.Dropout module for a test to switch off
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=WINDOW,
        vocab_size=VOCAB,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
    )
    return model_class(config).eval()


def tiny_mbart() -> MBartForConditionalGeneration:
    return tiny_bart(MBartConfig, MBartForConditionalGeneration)


BART_CASE = FamilyCase(
    name="bart",
    build=tiny_bart,
    causal=True,  # the logits are the causal decoder's; the encoder is bidirectional (tests/test_seq2seq.py)
    auto_class="AutoModelForSeq2SeqLM",
    table_key="model.encoder.embed_positions.weight",
    qk_weights=("self_attn.q_proj.weight", "self_attn.k_proj.weight"),
    lora_targets=("q_proj", "k_proj", "v_proj"),
    pad_token_id=1,
    seq2seq=True,
    more_table_keys=("model.decoder.embed_positions.weight",),
)

CASES: list[FamilyCase] = [
    FamilyCase(
        name="gpt2",
        build=tiny_gpt2,
        causal=True,
        auto_class="AutoModelForCausalLM",
        table_key="transformer.wpe.weight",
        qk_weights=("attn.c_attn.weight",),
        lora_targets=("c_attn",),
        lora_fan_in_fan_out=True,
    ),
    FamilyCase(
        name="bert",
        build=tiny_bert,
        causal=False,
        auto_class="AutoModelForMaskedLM",
        table_key="bert.embeddings.position_embeddings.weight",
        qk_weights=("attention.self.query.weight", "attention.self.key.weight"),
        lora_targets=("query", "key", "value"),
    ),
    FamilyCase(
        name="roberta",
        build=tiny_roberta,
        causal=False,
        auto_class="AutoModelForMaskedLM",
        table_key="roberta.embeddings.position_embeddings.weight",
        qk_weights=("attention.self.query.weight", "attention.self.key.weight"),
        lora_targets=("query", "key", "value"),
        pad_token_id=1,
    ),
    FamilyCase(
        name="xlm-roberta",
        build=tiny_xlm_roberta,
        causal=False,
        auto_class="AutoModelForMaskedLM",
        table_key="roberta.embeddings.position_embeddings.weight",
        qk_weights=("attention.self.query.weight", "attention.self.key.weight"),
        lora_targets=("query", "key", "value"),
        pad_token_id=1,
    ),
    FamilyCase(
        name="opt",
        build=tiny_opt,
        causal=True,
        auto_class="AutoModelForCausalLM",
        table_key="model.decoder.embed_positions.weight",
        qk_weights=("self_attn.q_proj.weight", "self_attn.k_proj.weight"),
        lora_targets=("q_proj", "k_proj", "v_proj"),
        pad_token_id=1,
    ),
    FamilyCase(
        name="distilbert",
        build=tiny_distilbert,
        causal=False,
        auto_class="AutoModelForMaskedLM",
        table_key="distilbert.embeddings.position_embeddings.weight",
        qk_weights=("attention.q_lin.weight", "attention.k_lin.weight"),
        lora_targets=("q_lin", "k_lin", "v_lin"),
    ),
    FamilyCase(
        name="electra",
        build=tiny_electra,
        causal=False,
        auto_class="AutoModelForPreTraining",
        table_key="electra.embeddings.position_embeddings.weight",
        qk_weights=("attention.self.query.weight", "attention.self.key.weight"),
        lora_targets=("query", "key", "value"),
    ),
    FamilyCase(
        name="gpt_neo",
        build=tiny_gpt_neo,
        causal=True,
        auto_class="AutoModelForCausalLM",
        table_key="transformer.wpe.weight",
        qk_weights=("attention.q_proj.weight", "attention.k_proj.weight"),
        lora_targets=("q_proj", "k_proj", "v_proj"),
    ),
    FamilyCase(
        name="clip_text",
        build=tiny_clip_text,
        causal=True,  # CLIP's text tower is causal-masked (see modeling_posenc_clip_text.py)
        auto_class="AutoModelForTextEncoding",
        table_key="text_model.embeddings.position_embedding.weight",
        qk_weights=("self_attn.q_proj.weight", "self_attn.k_proj.weight"),
        lora_targets=("q_proj", "k_proj", "v_proj"),
        output="last_hidden_state",  # a text encoder: no logits; the pooled output is one row of these
        labels=False,
        no_cache="CLIP's text tower has no KV cache and no generate: it encodes a prompt in one pass",
        bf16_tolerance=0.06,  # layer-normed hidden states: the unconverted original is 4.3% off in bf16 at 32 tokens
    ),
    FamilyCase(
        name="clip",
        build=tiny_clip,
        causal=True,
        auto_class="AutoModel",
        table_key="text_model.embeddings.position_embedding.weight",
        qk_weights=("self_attn.q_proj.weight", "self_attn.k_proj.weight"),
        lora_targets=("q_proj", "k_proj", "v_proj"),
        output="last_hidden_state",
        labels=False,
        no_cache="CLIP's text tower has no KV cache and no generate: it encodes a prompt in one pass",
        bf16_tolerance=0.06,
        tower="text_model",  # the vision tower is checked bit for bit in tests/test_families.py
    ),
    BART_CASE,
    replace(BART_CASE, name="mbart", build=tiny_mbart),  # the same checks on mBART's classes
]

ENCODINGS = ["rope", "t5_bias", "alibi", "sinusoidal", "learned", "nope"]


def sharpen(model: PreTrainedModel, case: FamilyCase, factor: float = 16.0, seed: int = 0) -> PreTrainedModel:
    """Scale q/k weights and randomise learned position parameters, so that a position bug shows in the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(case.qk_weights):
                param.mul_(factor)
            elif ".position_encoding." in name and "relative_attention_bias" in name:
                param.copy_(torch.randn(param.shape, generator=generator))
    return model


def swap_encodings(model: PreTrainedModel, donor: PreTrainedModel) -> PreTrainedModel:
    """Put each of `donor`'s position encodings in place of `model`'s (same paths), in place."""
    import hf_posenc

    for name, module in hf_posenc.position_encodings(donor).items():
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, module)
    return model


def position_parameters(model: PreTrainedModel) -> list[torch.nn.Parameter]:
    """The parameters of every position encoding in `model` (one per stack)."""
    import hf_posenc

    return [p for encoding in hf_posenc.position_encodings(model).values() for p in encoding.parameters()]


@contextlib.contextmanager
def transformers_warnings() -> Iterator[list[str]]:
    """The warnings transformers logs inside the block, also those it logs once per process (`warning_once`) and
    had logged before it, whatever verbosity an earlier test set."""
    from transformers.utils import logging as transformers_logging

    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    transformers_logging.warning_once.cache_clear()
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        yield seen
    finally:
        library.removeHandler(handler)
        transformers_logging.set_verbosity(verbosity)
