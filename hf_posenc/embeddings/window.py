"""How close a converted arm keeps in-window embeddings to the original's, as tests on a run's record.

The record's `fidelity` holds, per converted arm, the cosine between its and the original's embedding of each
in-window passage (`cosines`). The mean gets a bootstrap interval over the passages; two arms of one family (the same
encoding) are compared passage by passage (`paired_difference`). An arm named after its encoding is the family's
reference (trained as the setting trains it); the others change one training setting (more steps also read more
examples). Each arm is one training run: the intervals count which passages were sampled, not another seed.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from ..evaluation.statistics import Interval, bootstrap_se, combined_interval, paired_difference
from .targets import EPSILON, MEAN_COSINE, MIN_COSINE, converted


def cosines(record: dict[str, Any], name: str) -> list[float]:
    """The arm's per-passage cosines to the original; ValueError for a record made before they were kept."""
    values = (record.get("fidelity") or {}).get(name, {}).get("cosines")
    if not values:
        raise ValueError(f"The record keeps no per-passage cosines for {name!r}: rerun it with this version.")
    return [float(v) for v in values]


def mean_cosine(record: dict[str, Any], name: str) -> Interval:
    """The mean in-window cosine with its 95% interval (bootstrap over the passages)."""
    values = cosines(record, name)
    interval = combined_interval([statistics.fmean(values)], bootstrap_se([values]), len(values))
    return dataclasses.replace(interval, high=min(interval.high, 1.0))  # a cosine is at most 1


def cosine_gain(record: dict[str, Any], name: str, reference: str) -> Interval:
    """Mean over the passages of the arm's cosine minus the reference's (paired), with its 95% interval."""
    return paired_difference([cosines(record, name)], [cosines(record, reference)])


def encoding_of(record: dict[str, Any], name: str) -> str:
    return (record["settings"]["encodings"].get(name) or {}).get("encoding", name)


def families(record: dict[str, Any]) -> dict[str, list[str]]:
    """{encoding: its converted arms, the reference (the arm named after it) first}."""
    out: dict[str, list[str]] = {}
    for name in converted(record):
        out.setdefault(encoding_of(record, name), []).append(name)
    return {family: sorted(names, key=lambda n: n != family) for family, names in out.items()}


def meets_cosine_targets(record: dict[str, Any], name: str) -> bool:
    """The in-window targets on cosine alone (mean at least 0.99, lowest at least 0.97; quote retrieval, the third
    in-window target, is `targets.window_checks`'s)."""
    values = cosines(record, name)
    return statistics.fmean(values) >= MEAN_COSINE - EPSILON and min(values) >= MIN_COSINE - EPSILON


def signed(interval: Interval, digits: int = 4) -> str:
    """'+0.0123 [+0.0100, +0.0146]'."""
    return f"{interval.mean:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]"


def verdict(record: dict[str, Any], family: str, names: list[str]) -> str:
    """One sentence per family: the arms that meet the cosine targets (mean >= 0.99, lowest >= 0.97), or the closest
    one; and which changes moved the mean cosine from the reference's on these passages, up or down, by the paired
    test (one run per arm, each comparison on its own: no correction for several)."""
    reference = family if family in names else None
    meeting = [name for name in names if meets_cosine_targets(record, name)]
    targets = f"mean cosine {MEAN_COSINE}, lowest {MIN_COSINE}"
    if meeting:
        head = f"{', '.join(meeting)} meet{'s' if len(meeting) == 1 else ''} the cosine targets ({targets})"
    else:
        best = max(names, key=lambda n: statistics.fmean(cosines(record, n)))
        head = f"no arm meets the cosine targets ({targets}); the closest is {best}: {_mean_and_min(record, best)}"
    if reference is None:
        return head + " (no reference arm to compare with)."
    moves = []  # the mean cosine's paired difference from the reference's
    for name in names:
        if name == reference:
            continue
        gain = cosine_gain(record, name, reference)
        word = "is above" if gain.low > 0 else "is below" if gain.high < 0 else "does not separate from"
        moves.append(f"{name} {word} {reference} ({signed(gain)})")
    return head + ("; " + "; ".join(moves) if moves else "") + "."


def _mean_and_min(record: dict[str, Any], name: str) -> str:
    interval = mean_cosine(record, name)
    return (f"mean {interval.mean:.4f} [{interval.low:.4f}, {interval.high:.4f}], lowest "
            f"{min(cosines(record, name)):.4f}")  # fmt: skip
