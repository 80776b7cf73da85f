"""Reference shapes, and the original model with converted copies (and an unconverted twin) on its weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

import hf_posenc

ORIGINAL = "original"
CONTROL = "twin"  # an unconverted copy of the original: its ratio is the harness's own noise floor (an A/A test)


@dataclass(frozen=True)
class Shape:
    """A GPT-2 configuration and the batch it is measured with."""

    layers: int
    hidden: int
    heads: int
    vocab: int
    batch: int
    max_positions: int = 1024

    def config(self, backend: str) -> GPT2Config:
        config = GPT2Config(
            n_layer=self.layers,
            n_embd=self.hidden,
            n_head=self.heads,
            vocab_size=self.vocab,
            n_positions=self.max_positions,
            bos_token_id=self.vocab - 1,
            eos_token_id=self.vocab - 1,
            attn_pdrop=0.0,  # dropout off: flex_attention cannot drop attention weights, and timings stay comparable
            resid_pdrop=0.0,
            embd_pdrop=0.0,
        )
        config._attn_implementation = backend
        return config

    def as_dict(self) -> dict:
        return asdict(self)


REFERENCE = Shape(layers=12, hidden=768, heads=12, vocab=50257, batch=4)  # GPT-2 small, random weights
QUICK = Shape(layers=2, hidden=128, heads=4, vocab=1024, batch=2, max_positions=256)


def scaled_rope(rope_type: str) -> Callable[[Shape], dict]:
    """rope with a transformers `rope_type` of factor 4 (longrope: short factors 1, long factors 4)."""

    def options(shape: Shape) -> dict:
        scaling = {"rope_type": rope_type, "factor": 4.0}
        if rope_type == "longrope":
            half = shape.hidden // shape.heads // 2
            scaling.update(short_factor=[1.0] * half, long_factor=[4.0] * half)
        return {"scaling": scaling}

    return options


# variants with options: name -> (encoding, options for a shape)
VARIANTS: dict[str, tuple[str, Callable[[Shape], dict]]] = {
    f"rope_{kind}": ("rope", scaled_rope(kind)) for kind in ("linear", "dynamic", "yarn", "longrope")
}


def build_variants(shape: Shape, encodings: list[str], seed: int = 0) -> dict[str, GPT2LMHeadModel]:
    """The original GPT-2 and one converted copy per encoding or variant (`twin`: an unconverted copy); all share the
    original's parameters."""
    torch.manual_seed(seed)
    original = GPT2LMHeadModel(shape.config("sdpa")).eval()
    variants = {ORIGINAL: original}
    for encoding in encodings:
        if encoding == CONTROL:
            twin = copy.deepcopy(original)
            share_parameters(twin, original)
            variants[CONTROL] = twin.eval()
            continue
        name, options = VARIANTS.get(encoding, (encoding, lambda shape: {}))
        converted = hf_posenc.convert(copy.deepcopy(original), name, **options(shape))
        share_parameters(converted, original)
        variants[encoding] = converted.eval()
    return variants


def share_parameters(model: nn.Module, source: nn.Module) -> None:
    """Point every parameter of `model` that `source` has under the same name at `source`'s tensor."""
    shared = dict(source.named_parameters(remove_duplicate=False))
    for name, _ in list(model.named_parameters(remove_duplicate=False)):
        if name in shared:
            owner_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner_name), attr, shared[name])


def set_backend(variants: dict[str, nn.Module], backend: str) -> dict[str, str]:
    """Switch every variant to `backend`; returns {variant: why it cannot run} for those that cannot."""
    skipped = {}
    for name, model in variants.items():
        try:
            model.set_attn_implementation(backend)
        except (ValueError, ImportError) as err:
            skipped[name] = str(err).split("\n")[0][:200]
    return skipped
