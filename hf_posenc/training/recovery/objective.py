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
from .distill import logit_kl, target_mask, teacher_inputs, window_mask
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
    seq2seq: bool = False  # an encoder-decoder: the decoder's logits, every stack's attention
    window: int = 0  # the original's positions: what the teacher reads and the losses compare
    heads: dict[int, list[int] | None] | None = None  # attention transfer's layers and heads (None: off)
    swap: GradualSwap | None = None
    anchors: list[int] = field(default_factory=list)  # rows of a learned table kept frozen (none: off)
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
        seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        if seq2seq and cfg.attention_transfer_heads:
            raise RecipeError(
                "--attention_transfer_heads picks layers of one stack; an encoder-decoder transfers every head of its "
                "encoder, decoder and cross-attention: leave it unset."
            )
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
        anchors = kept_rows(model) if cfg.freeze_trained_positions else []
        causal = is_causal_lm(model) and not seq2seq
        return cls(cfg, teacher, causal, seq2seq, trained_context_length(model), heads, swap, anchors)

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

    @contextlib.contextmanager
    def as_saved(self) -> Any:
        """Meanwhile the model is what a run stopped here would save: a gradual swap's old table is out (its scale
        0), so that probes along a run score the converted model, not the model with the table still fading."""
        if self.swap is None or not self.swap.hooked:
            yield
            return
        scale, self.swap.scale = self.swap.scale, 0.0
        try:
            yield
        finally:
            self.swap.scale = scale

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
        if self.seq2seq and "decoder_input_ids" not in batch and batch.get("labels") is not None:
            shift = unwrapped(model).prepare_decoder_input_ids_from_labels  # student and teacher decode the same
            batch = {**batch, "decoder_input_ids": shift(labels=batch["labels"])}
        outputs = model(**(batch if cfg.lm_weight else {k: v for k, v in batch.items() if k != "labels"}), **attentions)
        loss = outputs.loss * cfg.lm_weight if cfg.lm_weight else 0.0
        if self.teacher is not None and self.seq2seq:
            return self.seq2seq_loss(batch, outputs, loss, return_outputs)
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

    def seq2seq_loss(self, batch: dict[str, Any], outputs: Any, loss: Any, return_outputs: bool) -> Any:
        """An encoder-decoder's recovery terms: KL on the decoder's logits at its labelled positions, and attention
        transfer averaged over the encoder's self-attention, the decoder's and the cross-attention. The teacher reads
        the same encoder and decoder inputs, which must fit its window (the encoder is bidirectional)."""
        cfg = self.cfg
        inputs = {k: v for k, v in batch.items() if k != "labels"}  # decoder_input_ids: given, or made in training_loss
        longest = max(inputs["input_ids"].shape[1], inputs["decoder_input_ids"].shape[1])
        if longest > self.window:
            raise RecipeError(
                f"An encoder-decoder's teacher must see the whole input, and {longest} tokens are past its "
                f"{self.window} positions: train at most at the original window."
            )
        attentions = {"output_attentions": True} if self.heads is not None else {}
        with torch.no_grad(), self.autocast():
            expected = self.teacher(**inputs, **attentions)
        decoder_rows = target_mask(batch, inputs["decoder_input_ids"])
        if cfg.distill_weight:
            loss = loss + cfg.distill_weight * logit_kl(
                outputs.logits, expected.logits, decoder_rows, cfg.distill_temperature
            )
        if self.heads is not None:
            source = inputs.get("attention_mask")
            encoder_rows = torch.ones_like(inputs["input_ids"], dtype=torch.bool) if source is None else source.bool()
            terms = [
                attention_kl(mine, theirs, rows, dict.fromkeys(range(len(mine))), cut_keys=cut)
                for mine, theirs, rows, cut in (
                    (outputs.encoder_attentions, expected.encoder_attentions, encoder_rows, True),
                    (outputs.decoder_attentions, expected.decoder_attentions, decoder_rows, True),
                    (outputs.cross_attentions, expected.cross_attentions, decoder_rows, False),  # encoder keys
                )
            ]
            loss = loss + cfg.attention_transfer_weight * sum(terms) / len(terms)
        return (loss, outputs) if return_outputs else loss

    def close(self) -> None:
        """The run is over: what was put on the model for it is taken off (the teacher stays until released)."""
        while self.restores:
            self.restores.pop()()
        if self.swap is not None:
            self.swap.remove()
        while self.handles:
            self.handles.pop().remove()
