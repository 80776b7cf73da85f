"""The recovery settings of a TrainConfig: which methods are on, and the checks that need no model."""

from __future__ import annotations

import math
from typing import Any

from ..errors import RecipeError

FIELDS = (
    "lm_weight",
    "distill_weight",
    "distill_temperature",
    "attention_transfer_weight",
    "attention_transfer_heads",
    "gradual_swap_steps",
    "gradual_swap_schedule",
    "freeze_trained_positions",
    "teacher_name_or_path",
)  # the TrainConfig fields of hf_posenc.training.recovery
WEIGHTS = ("lm_weight", "distill_weight", "attention_transfer_weight")
TEACHER_USERS = "--distill_weight, --attention_transfer_weight and --gradual_swap_steps"
SCHEDULES = ("linear", "cosine")
NO_CONVERSION = (None, "", "none", "original")  # --encoding values that keep the model as it is
DEFAULT_METHOD = {"attention_transfer_weight": 1.0}  # what the recipes add after a swap (see default.py)
LEARNED_SWAP = (
    "A gradual swap adds the old table back to the input, and the 'learned' encoding already starts from that "
    "table: it would count twice. Use --gradual_swap_steps 0 with --encoding learned."
)


def uses_teacher(cfg: Any) -> bool:
    """Whether a method compares the model with its unconverted original."""
    return cfg.distill_weight > 0 or cfg.attention_transfer_weight > 0


def is_active(cfg: Any) -> bool:
    """Whether any conversion-aware method is on (off: the model's own loss, exactly as without them)."""
    return uses_teacher(cfg) or cfg.gradual_swap_steps > 0 or cfg.freeze_trained_positions or cfg.lm_weight != 1


def default_method(cfg: Any) -> dict[str, Any]:
    """The settings a fine-tuning recipe may add after the swap it makes: `DEFAULT_METHOD` when `cfg.recovery` is on,
    `cfg.encoding` asks for a conversion and no method is set; else {}. Whether they apply depends on the converted
    model too (`default.with_default_recovery`)."""
    if not getattr(cfg, "recovery", False) or cfg.encoding in NO_CONVERSION or is_active(cfg):
        return {}
    return dict(DEFAULT_METHOD)


def check_recovery(cfg: Any) -> None:
    """RecipeError for recovery settings that cannot work, whatever the model."""
    for name in (*WEIGHTS, "distill_temperature", "gradual_swap_steps"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise RecipeError(f"--{name} must be a number >= 0, got {value!r}.")
    if not any(getattr(cfg, name) > 0 for name in WEIGHTS):
        raise RecipeError(f"--{' and --'.join(WEIGHTS)} are all 0: nothing to train on.")
    if cfg.distill_temperature <= 0:
        raise RecipeError(f"--distill_temperature must be positive, got {cfg.distill_temperature}.")
    if cfg.gradual_swap_schedule not in SCHEDULES:
        raise RecipeError(
            f"--gradual_swap_schedule must be one of {', '.join(SCHEDULES)}, got {cfg.gradual_swap_schedule!r}."
        )
    if cfg.gradual_swap_steps > 1 and cfg.gradual_swap_steps != int(cfg.gradual_swap_steps):
        raise RecipeError(
            f"--gradual_swap_steps is whole steps, or a fraction of the run below 1: got {cfg.gradual_swap_steps}."
        )
    if cfg.gradual_swap_steps > 0 and cfg.encoding == "learned":
        raise RecipeError(LEARNED_SWAP)
    if cfg.freeze_trained_positions and cfg.encoding not in (*NO_CONVERSION, "learned"):
        raise RecipeError(f"--freeze_trained_positions is for --encoding learned, not {cfg.encoding!r}.")
    parse_heads(cfg.attention_transfer_heads)
    if cfg.attention_transfer_heads and not cfg.attention_transfer_weight and not default_method(cfg):
        raise RecipeError("--attention_transfer_heads is given but --attention_transfer_weight is 0.")
    if cfg.teacher_name_or_path and not (uses_teacher(cfg) or cfg.gradual_swap_steps > 0 or default_method(cfg)):
        raise RecipeError(f"--teacher_name_or_path is only read by {TEACHER_USERS}, and none is on.")


def describe_recovery(cfg: dict[str, Any]) -> str:
    """The conversion-aware methods a training config (a TrainConfig's fields as a dict) turned on, in words: what a
    model card records; "none (plain fine-tuning)" when every one is off."""
    parts = []
    if cfg.get("gradual_swap_steps"):
        steps = cfg["gradual_swap_steps"]
        span = f"the first {steps:.0%} of the steps" if steps < 1 else f"the first {int(steps)} steps"
        schedule = cfg.get("gradual_swap_schedule", "linear")
        parts.append(f"gradual swap (the old table fades out over {span}, {schedule})")
    if cfg.get("distill_weight"):
        parts.append(
            f"distillation from the unconverted original (weight {cfg['distill_weight']:g}, temperature "
            f"{cfg.get('distill_temperature', 2.0):g})"
        )
    if cfg.get("attention_transfer_weight"):
        heads = cfg.get("attention_transfer_heads") or "every head"
        parts.append(f"attention transfer from the original (weight {cfg['attention_transfer_weight']:g}, {heads})")
    if cfg.get("freeze_trained_positions"):
        parts.append("the pretrained table rows frozen")
    if cfg.get("lm_weight", 1.0) != 1.0:
        parts.append(f"LM loss weight {cfg['lm_weight']:g}")
    return "; ".join(parts) if parts else "none (plain fine-tuning)"


def parse_heads(spec: str | None) -> dict[int, list[int] | None] | None:
    """`--attention_transfer_heads`: comma-separated `L` (every head of layer L) or `L:H` (head H of layer L), e.g.
    "0,3:1,3:5"; None or "" for every head of every layer. Returns {layer: sorted heads, or None for all}, or None."""
    if not spec:
        return None
    chosen: dict[int, list[int] | None] = {}
    for item in str(spec).split(","):
        layer, sep, head = item.strip().partition(":")
        try:
            layer_index, head_index = int(layer), int(head) if sep else None
        except ValueError:
            raise RecipeError(
                f"--attention_transfer_heads: {item.strip()!r} is not L or L:H (layer and head numbers), in {spec!r}."
            ) from None
        if layer_index < 0 or (head_index is not None and head_index < 0):
            raise RecipeError(f"--attention_transfer_heads: negative layer or head in {spec!r}.")
        if head_index is None or chosen.get(layer_index, []) is None:
            chosen[layer_index] = None
        else:
            chosen.setdefault(layer_index, []).append(head_index)
    return {layer: None if heads is None else sorted(set(heads)) for layer, heads in sorted(chosen.items())}
