"""Attention transfer: KL between the teacher's and the student's attention distributions inside the window, per
layer and head (MiniLM's self-attention distribution transfer, on every chosen layer instead of the last one).

The probabilities come from `output_attentions=True`, which only the eager backend returns (sdpa, flex and flash
attention never form them): while attention transfer is on, both models run on eager attention, and the student's
attention dropout is off (the probabilities it returns must be whole distributions); both are put back when the run
ends. Cost: the teacher's forward pass and eager attention in both, with the [batch, heads, tokens, tokens]
probabilities of every layer kept (the teacher's as well); `python -m benchmarks.recovery_cost` measures a step's CPU
time against plain fine-tuning (`results/recovery_cost/`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import RecipeError


def attention_kl(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    rows: torch.Tensor,
    heads: dict[int, list[int] | None],
    cut_keys: bool = True,
) -> torch.Tensor:
    """Mean over the chosen (layer, head) pairs and the `rows` (queries, [batch, window] bool) of
    KL(teacher's attention row || student's), each model's per-layer [batch, heads, queries, keys] probabilities cut
    to the window's queries and, with `cut_keys` (self-attention), keys; cross-attention keeps every key. Exactly 0
    where the distributions are equal; float32 inside."""
    window, tiny = rows.shape[1], torch.finfo(torch.float32).tiny
    weights = rows[:, None, :].float()
    total, count = 0.0, 0.0
    for layer, chosen in heads.items():
        keys = window if cut_keys else None
        s, t = (probs[layer][:, :, :window, :keys].float() for probs in (student, teacher))
        if chosen is not None:
            s, t = s[:, chosen], t[:, chosen]
        kl = (t * (t.clamp(min=tiny).log() - s.clamp(min=tiny).log())).sum(-1)  # [batch, heads, queries]
        total = total + (kl * weights).sum()
        count = count + weights.sum() * kl.shape[1]
    return total / max(float(count), 1.0)


def resolve_heads(selection: dict[int, list[int] | None] | None, config: object) -> dict[int, list[int] | None]:
    """{layer: heads or None (all)} for the model: every layer when `selection` is None; RecipeError past it."""
    layers, per_layer = config.num_hidden_layers, config.num_attention_heads
    if selection is None:
        return dict.fromkeys(range(layers))
    for layer, chosen in selection.items():
        if layer >= layers or any(head >= per_layer for head in chosen or ()):
            raise RecipeError(
                f"--attention_transfer_heads names layer {layer} or a head of it, and the model has {layers} layers "
                f"of {per_layer} heads (numbered from 0)."
            )
    return dict(selection)


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose second output transformers records as attentions (`_can_record_outputs` of the model or,
    in an encoder-decoder, of its encoder and decoder; cross-attention included)."""
    from transformers.utils.output_capturing import OutputRecorder

    specs = []
    for owner in model.modules():
        recorded = getattr(owner, "_can_record_outputs", None) or {}
        for key in ("attentions", "cross_attentions"):
            spec = recorded.get(key)
            specs += spec if isinstance(spec, list) else [spec]
    classes = tuple({s.target_class if isinstance(s, OutputRecorder) else s for s in specs if s is not None})
    found = [module for module in model.modules() if classes and isinstance(module, classes)]
    if not found:
        raise RecipeError(f"Cannot find the attention layers of {type(model).__name__} (transformers records none).")
    return found


def eager_attention(model: nn.Module, dropout_off: bool) -> Callable[[], None]:
    """Switch `model` to eager attention (and, if asked, its attention dropout off); returns what puts them back."""
    backend = model.config._attn_implementation
    model.set_attn_implementation("eager")
    changed: list[tuple[object, str, float]] = []
    for module in attention_layers(model) if dropout_off else ():
        for name in ("attn_dropout", "dropout"):  # GPT-2's nn.Dropout; BERT's nn.Dropout, BART's float
            value = getattr(module, name, None)
            owner, attribute = (value, "p") if isinstance(value, nn.Dropout) else (module, name)
            if isinstance(value, (nn.Dropout, float)):
                changed.append((owner, attribute, getattr(owner, attribute)))
                setattr(owner, attribute, 0.0)
                break

    def restore() -> None:
        for owner, attribute, value in changed:
            setattr(owner, attribute, value)
        model.set_attn_implementation(backend)

    return restore
