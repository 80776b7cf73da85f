"""The recovery settings of a TrainConfig: which methods are on, and the checks that need no model."""

from __future__ import annotations

import math
from typing import Any

from ..errors import RecipeError

WEIGHTS = ("lm_weight", "distill_weight")
TEACHER_USERS = "--distill_weight"


def uses_teacher(cfg: Any) -> bool:
    """Whether a method compares the model with its unconverted original."""
    return cfg.distill_weight > 0


def is_active(cfg: Any) -> bool:
    """Whether any conversion-aware method is on (off: the model's own loss, exactly as without them)."""
    return uses_teacher(cfg) or cfg.lm_weight != 1


def check_recovery(cfg: Any) -> None:
    """RecipeError for recovery settings that cannot work, whatever the model."""
    for name in (*WEIGHTS, "distill_temperature"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise RecipeError(f"--{name} must be a number >= 0, got {value!r}.")
    if not any(getattr(cfg, name) > 0 for name in WEIGHTS):
        raise RecipeError(f"--{' and --'.join(WEIGHTS)} are all 0: nothing to train on.")
    if cfg.distill_temperature <= 0:
        raise RecipeError(f"--distill_temperature must be positive, got {cfg.distill_temperature}.")
    if cfg.teacher_name_or_path and not uses_teacher(cfg):
        raise RecipeError(f"--teacher_name_or_path is only read by {TEACHER_USERS}, and none is on.")
