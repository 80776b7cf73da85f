"""Self-distillation: KL(teacher || student) on the logits at the positions inside the trained window."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def teacher_inputs(batch: dict[str, Any], window: int) -> dict[str, Any]:
    """The batch without its labels, cut to its first `window` tokens (a causal teacher's outputs there are the
    same as on the whole block)."""
    length = batch["input_ids"].shape[1]
    return {
        key: value[:, :window] if torch.is_tensor(value) and value.ndim >= 2 and value.shape[1] == length else value
        for key, value in batch.items()
        if key != "labels"
    }


def window_mask(batch: dict[str, Any], window: int, causal: bool) -> torch.Tensor:
    """[batch, window] bool: the positions that count. Causal LMs: every token that is not padding; masked LMs:
    the masked ones (labels != -100), as DistilBERT distils."""
    ids = batch["input_ids"][:, :window]
    attention_mask = batch.get("attention_mask")
    mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask[:, :window].bool()
    labels = batch.get("labels")
    if not causal and labels is not None:
        mask = mask & (labels[:, :window] != -100)
    return mask


def target_mask(batch: dict[str, Any], decoder_input_ids: torch.Tensor) -> torch.Tensor:
    """[batch, target length] bool: an encoder-decoder's decoder positions that count (labels != -100, else the
    decoder's attention mask, else every one)."""
    labels, mask = batch.get("labels"), batch.get("decoder_attention_mask")
    if labels is not None:
        return labels != -100
    return torch.ones_like(decoder_input_ids, dtype=torch.bool) if mask is None else mask.bool()


def logit_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the `mask`ed positions of KL(softmax(teacher / T) || softmax(student / T)), times T^2 (Hinton et
    al. 2015: keeps the gradients' scale as T changes). Exactly 0 where the logits are equal; float32 inside."""
    student_log = nn.functional.log_softmax(student.float() / temperature, dim=-1)
    teacher_log = nn.functional.log_softmax(teacher.float() / temperature, dim=-1)
    kl = nn.functional.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)
    weights = mask.to(kl.dtype)
    return (kl * weights).sum() / weights.sum().clamp(min=1) * temperature**2
