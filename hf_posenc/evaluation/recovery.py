"""Recovery curves: where to probe a fine-tuning run, and mean +- std over seeds of what the probes measured.

A run is probed along the way (`hf_posenc.training.train(..., probe=..., probe_steps=...)`) instead of being rerun
once per budget; each probe record holds "step", "tokens" and the measured values (e.g. "perplexity").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def log_spaced_steps(max_steps: int, points: int) -> list[int]:
    """0 and `points` distinct optimizer steps up to `max_steps`, log-spaced back from the end by a ratio of
    min(2, max_steps ** (1 / (points - 1))): e.g. (147, 6) -> [0, 5, 9, 18, 37, 74, 147]. With the ratio capped at 2,
    the points cover max_steps / 2 ** (points - 1) to max_steps. A step already taken moves to the nearest free one
    below, else above."""
    if max_steps < 1 or points < 1:
        raise ValueError(f"max_steps and points must be >= 1, got {max_steps} and {points}.")
    if points > max_steps:
        raise ValueError(f"{points} distinct probe steps do not fit in {max_steps} steps.")
    ratio = min(2.0, max_steps ** (1 / (points - 1))) if points > 1 else 1.0
    steps = {max_steps}
    value = float(max_steps)
    while len(steps) < points:
        value /= ratio
        wanted = max(1, round(value))
        below = (s for s in range(wanted, 0, -1) if s not in steps)
        above = (s for s in range(wanted + 1, max_steps + 1) if s not in steps)
        steps.add(next(below, None) or next(above))
    return [0, *sorted(steps)]


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that are not None (std 0.0 for one value, None for none)."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else 0.0


def curve_summary(runs: Sequence[Sequence[dict[str, Any]]], key: str = "perplexity") -> list[dict[str, Any]]:
    """The probes of several seeds' runs (one list of probe records per seed, probed at the same steps), as
    [{"step", "tokens", "mean", "std", "values"}] per step. Runs probed at different steps are refused."""
    if not runs:
        return []
    steps = [[p["step"] for p in run] for run in runs]
    if any(s != steps[0] for s in steps):
        raise ValueError(f"The runs were probed at different steps: {steps}.")
    summary = []
    for index, probe in enumerate(runs[0]):
        values = [run[index].get(key) for run in runs]
        mean, std = mean_std(values)
        summary.append({"step": probe["step"], "tokens": probe["tokens"], "mean": mean, "std": std, "values": values})
    return summary


def tokens_to_recover(summary: Sequence[dict[str, Any]], reference: float, tolerance: float = 0.02) -> int | None:
    """The fewest probed fine-tuning tokens at which the mean is within `tolerance` of `reference` (mean <=
    reference x (1 + tolerance), for a lower-is-better value such as perplexity), or None: not within the budget."""
    for point in summary:
        if point["mean"] is not None and point["mean"] <= reference * (1 + tolerance):
            return int(point["tokens"])
    return None
