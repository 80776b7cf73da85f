"""`Recovery`: the training loss of one run with the conversion-aware methods a TrainConfig turns on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import RecipeError
from .anchors import freeze_rows, kept_rows
from .attention import attention_kl, eager_attention, resolve_heads
from .distill import logit_kl, teacher_inputs, window_mask
from .settings import is_active, parse_heads, uses_teacher
from .swap import GradualSwap, old_tables
from .teacher import load_teacher, resolve_teacher


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside DDP (`.module`) and PEFT (`get_base_model()`) wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass(eq=False)
class Recovery:
    """The loss of a converted model trained with the methods `cfg` turns on, and what they need during a run.

    `setup(cfg, model, teacher)` before the model is wrapped (PEFT) or moved (it may rebuild the teacher from the
    converted model), `attach(model, steps)` once it is ready to train, `training_loss(model, batch)` for each
    micro-batch, `at_step(step)` after each optimizer step, `close()` before saving. With every method off the loss
    is the model's own, computed as without this class.
    """

    cfg: Any
    teacher: nn.Module | None = None
    causal: bool = True
    window: int = 0  # the original's positions: what the teacher reads and the losses compare
    heads: dict[int, list[int] | None] | None = None  # attention transfer's layers and heads (None: off)
    swap: GradualSwap | None = None
    anchors: int = 0  # leading rows of a learned table kept frozen (0: off)
    autocast: Callable[[], Any] = contextlib.nullcontext
    restores: list[Callable[[], None]] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return is_active(self.cfg)

    @classmethod
    def setup(cls, cfg: Any, model: nn.Module, teacher: nn.Module | None = None) -> Recovery:
        """The run's Recovery; builds or loads the teacher when a method needs one (see `resolve_teacher`), and
        finds the table a gradual swap fades out (see `old_tables`)."""
        from ...convert import original_record
        from ...evaluation import is_causal_lm, trained_context_length

        if teacher is not None and not (uses_teacher(cfg) or cfg.gradual_swap_steps):
            raise RecipeError(
                "A teacher is given, but no method reads it: set distill_weight, attention_transfer_weight "
                "or gradual_swap_steps."
            )
        if not is_active(cfg):
            return cls(cfg)
        if getattr(model.config, "is_encoder_decoder", False):
            raise RecipeError("Conversion-aware fine-tuning supports causal and masked LMs, not encoder-decoders.")
        if uses_teacher(cfg):
            teacher = resolve_teacher(model, teacher, cfg.teacher_name_or_path)
        heads, swap = None, None
        if cfg.attention_transfer_weight:
            heads = resolve_heads(parse_heads(cfg.attention_transfer_heads), model.config)
        if cfg.gradual_swap_steps:
            source = teacher
            if source is None and original_record(model) is None and cfg.teacher_name_or_path:
                source = load_teacher(cfg.teacher_name_or_path, model)
            swap = GradualSwap(old_tables(model, source), cfg.gradual_swap_steps, cfg.gradual_swap_schedule)
        teacher = teacher if uses_teacher(cfg) else None
        anchors = kept_rows(model) if cfg.freeze_trained_positions else 0
        return cls(cfg, teacher, is_causal_lm(model), trained_context_length(model), heads, swap, anchors)

    def attach(self, model: nn.Module, steps: int, step: int = 0, autocast: Callable[[], Any] | None = None) -> None:
        """Ready to train `model` (wrapped and on its device) for `steps` optimizer steps from `step`: the teacher
        moves to the model's device and dtype and runs under `autocast` (the student's mixed precision); for
        attention transfer both run on eager attention, the student without attention dropout, until `close`."""
        if self.teacher is not None:
            reference = next(unwrapped(model).parameters())
            self.teacher.to(device=reference.device, dtype=reference.dtype)
        if self.heads is not None and not self.restores:
            self.restores = [eager_attention(unwrapped(model), dropout_off=True), eager_attention(self.teacher, False)]
        if self.swap is not None:
            self.swap.resolve(steps)
            self.swap.install(unwrapped(model))
        if self.anchors and not self.handles:
            self.handles = freeze_rows(unwrapped(model), self.anchors)
        self.autocast = autocast or contextlib.nullcontext
        self.at_step(step)

    def at_step(self, step: int) -> None:
        """The run is at optimizer step `step` (after resuming, and after each step): the gradual swap's scale."""
        if self.swap is not None:
            self.swap.at_step(step)

    def training_loss(self, model: nn.Module, batch: dict[str, Any], return_outputs: bool = False) -> Any:
        """lm_weight x the model's loss + distill_weight x the KL to the teacher's logits inside the window +
        attention_transfer_weight x the KL to its attention there."""
        if not self.active:
            outputs = model(**batch)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        cfg, attentions = self.cfg, {"output_attentions": True} if self.heads is not None else {}
        outputs = model(**(batch if cfg.lm_weight else {k: v for k, v in batch.items() if k != "labels"}), **attentions)
        loss = outputs.loss * cfg.lm_weight if cfg.lm_weight else 0.0
        if self.teacher is not None:
            length = batch["input_ids"].shape[1]
            window = min(length, self.window)
            if window < length and not self.causal:
                raise RecipeError(
                    f"A masked LM's teacher must see the whole block, and {length} tokens are past its {self.window} "
                    "positions: train at most at the original window."
                )
            with torch.no_grad(), self.autocast():
                expected = self.teacher(**teacher_inputs(batch, window), **attentions)
            if cfg.distill_weight:
                mask = window_mask(batch, window, self.causal)
                kl = logit_kl(outputs.logits[:, :window], expected.logits, mask, cfg.distill_temperature)
                loss = loss + cfg.distill_weight * kl
            if self.heads is not None:
                rows = window_mask(batch, window, causal=True)  # every query that is not padding
                kl = attention_kl(outputs.attentions, expected.attentions, rows, self.heads)
                loss = loss + cfg.attention_transfer_weight * kl
        return (loss, outputs) if return_outputs else loss

    def close(self) -> None:
        """The run is over: what was put on the model for it is taken off (the teacher stays until released)."""
        while self.restores:
            self.restores.pop()()
        if self.swap is not None:
            self.swap.remove()
        while self.handles:
            self.handles.pop().remove()
