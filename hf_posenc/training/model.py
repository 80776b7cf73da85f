"""Load, convert and prepare a model for training: which parameters train (all, attention + positions, LoRA)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import TrainConfig
from .errors import RecipeError

ATTENTION_PARTS = ("attn", "attention", "position_encoding", "ln_", "layernorm", "norm")
LORA_TARGETS = {"gpt2": ["c_attn", "attn.c_proj"], "bert": ["query", "key", "value", "attention.output.dense"]}
NORMS = {"gpt2": ["ln_1", "ln_2", "ln_f"], "bert": ["LayerNorm"]}


def family_name(model: nn.Module) -> str:
    model_type = model.config.model_type
    return model_type.removeprefix("posenc_")


def load_model(cfg: TrainConfig, auto_class: Any) -> nn.Module:
    """`auto_class.from_pretrained(cfg.model_name_or_path)`, converted to `cfg.encoding` when one is given."""
    if not cfg.model_name_or_path:
        raise RecipeError("--model_name_or_path is required (a Hub id or a local folder).")
    try:
        model = auto_class.from_pretrained(cfg.model_name_or_path, trust_remote_code=True)
    except OSError as err:
        raise RecipeError(f"Could not load model {cfg.model_name_or_path!r}: {str(err).splitlines()[0]}") from None
    return convert_if_asked(model, cfg.encoding, cfg.options())


SHIPPED_GPT2 = "hf_posenc:gpt2"  # the name that asks for the GPT-2 tokenizer shipped with hf_posenc


def load_tokenizer(name_or_path: str | None, tokenizer_name: str | None = None) -> Any:
    """The tokenizer `tokenizer_name` names, else the model's own at `name_or_path` (a Hub id or folder), with the pad
    token set to EOS where it has none. `SHIPPED_GPT2` names the GPT-2 tokenizer shipped with hf_posenc, which is also
    what no name at all gives (a model pretrained from scratch). One that cannot be loaded, or loads without a
    vocabulary (a folder without tokenizer files), is a RecipeError naming it and the cause: never another tokenizer."""
    from transformers import AutoTokenizer

    from .. import data

    name = tokenizer_name or name_or_path
    if not name or name == SHIPPED_GPT2:
        return data.gpt2_tokenizer()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as err:  # the cause is named in the message: a missing folder, no network, missing files
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(f"Could not load a tokenizer from {name!r}: {cause}") from None
    ids = tokenizer.encode("The tokenizer reads this.", add_special_tokens=False)
    if not ids or all(i == tokenizer.unk_token_id for i in ids):
        raise RecipeError(f"Could not load a tokenizer from {name!r}: it has no vocabulary (no tokenizer files?).")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_gpt2_shape(n_layer: int, n_embd: int, n_head: int) -> None:
    """Refuse a GPT-2 shape that cannot be built, before any data is prepared."""
    if min(n_layer, n_embd, n_head) < 1 or n_embd % n_head:
        raise RecipeError(f"n_embd ({n_embd}) must be a positive multiple of n_head ({n_head}); n_layer >= 1.")


def fresh_gpt2(tokenizer: Any, window: int, n_layer: int, n_embd: int, n_head: int, **config: Any) -> Any:
    """An untrained GPT2LMHeadModel with a learned table of `window` positions and the tokenizer's vocabulary, its
    EOS as BOS/EOS (the recipes pretrain from scratch with it)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    check_gpt2_shape(n_layer, n_embd, n_head)
    eos = tokenizer.eos_token_id
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=window,
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            bos_token_id=eos,
            eos_token_id=eos,
            **config,
        )
    )


def check_block_size(model: nn.Module, block_size: int) -> None:
    from ..evaluation import max_context

    limit = max_context(model)
    if limit is not None and block_size > limit:
        raise RecipeError(f"--block_size {block_size} is past the model's {limit} positions; use at most {limit}.")


def convert_if_asked(model: nn.Module, encoding: str | None, options: dict[str, Any]) -> nn.Module:
    import hf_posenc

    if encoding in (None, "", "none", "original"):
        if options:
            raise RecipeError("--encoding_options given without --encoding.")
        return model
    return hf_posenc.convert(model, encoding, **options)


def select_trainable(model: nn.Module, trainable: str, lora_r: int = 8, lora_alpha: int = 16) -> nn.Module:
    """Freeze what should not train; for "lora", wrap with PEFT (position encoding and norms fully trained)."""
    if trainable == "all":
        return model
    if trainable == "attention":
        for name, parameter in model.named_parameters():
            parameter.requires_grad = any(part in name.lower() for part in ATTENTION_PARTS)
        return model
    from peft import LoraConfig, get_peft_model

    family = family_name(model)
    if family not in LORA_TARGETS:
        raise RecipeError(f"LoRA targets are known for {', '.join(LORA_TARGETS)} models, not {family!r}.")
    modules_to_save = list(NORMS[family])
    encoding = getattr(model.base_model, "position_encoding", None)
    if encoding is not None and any(True for _ in encoding.parameters()):
        modules_to_save.append("position_encoding")
    config = LoraConfig(
        r=lora_r,
        lora_alpha=lora_alpha,
        target_modules=LORA_TARGETS[family],
        modules_to_save=modules_to_save,
        fan_in_fan_out=family == "gpt2",
    )
    return get_peft_model(model, config)


def trainable_count(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def unwrap_for_saving(model: nn.Module) -> nn.Module:
    """The plain transformers model to `save_pretrained`: LoRA weights merged in, PEFT wrapper removed."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
