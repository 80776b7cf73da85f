"""Conversion-aware fine-tuning in a swap study: each method arm against plain fine-tuning of the same encoding.

A method arm is an arm whose `finetune` turns on a recovery setting (`hf_posenc.training.recovery`); its plain arm
has the same encoding and options and none. For each method: the share of the swap's gap it closes along the run,
its difference from plain fine-tuning at equal tokens (paired by seed and window) and at equal compute (plain's
curve read at the tokens the method's CPU time would have bought), and what a token costs it. `targets` tests the
conversion-methods targets on the best method of each encoding.
"""

from __future__ import annotations

import math
from typing import Any

from ..training.recovery.settings import FIELDS
from .statistics import gap_closed

RECOVERY_KEYS = tuple(k for k in FIELDS if k != "teacher_name_or_path")  # the settings that make an arm a method arm
OFF = {"lm_weight": 1.0, "distill_temperature": 2.0, "gradual_swap_schedule": "linear"}  # values that turn nothing on
IN_WINDOW = 0.02  # target: in-window perplexity within 2% of the base at the full budget, as a test
PASSKEY = 0.90  # target: passkey at the window at least 90% at the full budget
EARLY_SHARE = 0.003  # the early budget: 0.3% of the base's pretraining tokens...
GAP_AIM = 0.95  # ...where a method should close 95% of the swap's gap
EXTRAPOLATION = {"rope": 1.05, "t5_bias": 1.0, "alibi": 1.0}  # perplexity at 8x over 1x, at most


def _spec(settings: dict[str, Any], arm: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    spec = (settings.get("encodings") or {}).get(arm) or {}
    return spec.get("encoding", arm), dict(spec.get("options") or {}), dict(spec.get("finetune") or {})


def method_settings(finetune: dict[str, Any]) -> dict[str, Any]:
    """The recovery settings an arm's `finetune` turns on (those at their off value left out)."""
    return {
        k: v
        for k, v in finetune.items()
        if k in RECOVERY_KEYS and (v != OFF[k] if k in OFF else v not in (None, False, 0, ""))
    }


def method_arms(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{method arm: {"encoding", "plain" (its plain arm), "method" (its recovery settings), "also" (other finetune
    settings that differ from the plain arm's)}} for every arm with a plain arm beside it."""
    arms = list((settings.get("encodings") or {}).keys())
    out = {}
    for arm in arms:
        encoding, options, finetune = _spec(settings, arm)
        method = method_settings(finetune)
        if not method:
            continue
        plain = [
            other
            for other in arms
            if _spec(settings, other)[:2] == (encoding, options) and not method_settings(_spec(settings, other)[2])
        ]
        if not plain:
            continue
        best = min(plain, key=lambda other: len(_differs(finetune, _spec(settings, other)[2])))
        also = _differs(finetune, _spec(settings, best)[2])
        out[arm] = {"encoding": encoding, "plain": best, "method": method, "also": also}
    return out


def _differs(finetune: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    keys = (set(finetune) | set(plain)) - set(RECOVERY_KEYS)
    return {k: finetune.get(k) for k in sorted(keys) if finetune.get(k) != plain.get(k)}


def cpu_per_token(record: dict[str, Any], arm: str) -> float | None:
    """Mean over seeds of the training CPU seconds per token (probes left out), if the runs recorded it."""
    values = [run["training"].get("cpu_seconds_per_token") for run in record["runs"][arm].values()]
    return sum(values) / len(values) if values and all(v for v in values) else None


def at_tokens(points: list[dict[str, Any]], tokens: float) -> float | None:
    """A curve's mean log(perplexity / base) at `tokens`, linear in log tokens between its probes after step 0;
    None outside them (past its budget, or before its first probe after step 0)."""
    known = [(p["tokens"], p["vs_base"]["mean"]) for p in points if p["tokens"] > 0]
    for (t0, v0), (t1, v1) in zip(known, known[1:]):
        if t0 <= tokens <= t1:
            share = math.log(tokens / t0) / math.log(t1 / t0)
            return v0 + share * (v1 - v0)
    return known[-1][1] if known and math.isclose(tokens, known[-1][0]) else None


def gap_interval(swap: float, vs_base: dict[str, Any]) -> dict[str, float]:
    """The share of a swap's gap (its log-perplexity jump `swap`) closed, from a log-ratio interval against the base:
    mean, and the ends from the interval's (its high end closes the least)."""
    return {key: gap_closed(swap, vs_base[end]) for key, end in (("mean", "mean"), ("low", "high"), ("high", "low"))}


def methods(record: dict[str, Any], curve_by_arm: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method arm, per probe: the share of the swap's gap closed (with the interval's ends), the difference
    from plain fine-tuning at equal tokens, at equal compute plain's log ratio at the tokens the method's CPU time
    buys ("plain_equal_compute") and the method's own at the tokens plain's buys ("method_equal_compute"),
    passkey; and the method's cost."""
    from .study import in_window_difference, probe_hits, proportion_difference

    settings, runs = record.get("settings") or {}, record["runs"]
    prompts = int((settings.get("curve") or {}).get("passkey_trials") or 0) * len(
        (settings.get("eval") or {}).get("passkey_depths") or []
    )
    out = []
    for arm, info in method_arms(settings).items():
        plain = info["plain"]
        if arm not in curve_by_arm or plain not in curve_by_arm or set(runs[arm]) != set(runs[plain]):
            continue
        seeds = sorted(runs[arm], key=int)
        mine, theirs = curve_by_arm[arm]["points"], curve_by_arm[plain]["points"]
        cost_mine, cost_plain = cpu_per_token(record, arm), cpu_per_token(record, plain)
        cost = cost_mine / cost_plain if cost_mine and cost_plain else None
        swap = theirs[0]["vs_base"]["mean"]  # the swap's shock: plain's first probe, before any step
        points = []
        for index, point in enumerate(mine):
            if index >= len(theirs) or theirs[index]["tokens"] != point["tokens"]:
                break
            probes = [runs[arm][s]["training"]["probes"][index] for s in seeds]
            plain_probes = [runs[plain][s]["training"]["probes"][index] for s in seeds]
            vs = point["vs_base"]
            entry = {
                "tokens": point["tokens"],
                "vs_base": vs,
                "gap_closed": gap_interval(swap, vs),
                "vs_plain": in_window_difference(probes, plain_probes).as_dict(),
                "plain_vs_base": theirs[index]["vs_base"],
            }  # fmt: skip
            if cost and point["tokens"]:
                entry["plain_equal_compute"] = at_tokens(theirs, point["tokens"] * cost)  # plain, same CPU time
                entry["method_equal_compute"] = at_tokens(mine, point["tokens"] / cost)  # the method, plain's CPU
            hits = [probe_hits(p, "hits", prompts) for p in probes]
            plain_hits = [probe_hits(p, "hits", prompts) for p in plain_probes]
            if "passkey" in point and all(hits) and all(plain_hits):
                entry["passkey"] = point["passkey"]
                entry["passkey_vs_plain"] = proportion_difference(hits, plain_hits).as_dict()
            points.append(entry)
        out.append({"arm": arm, **info, "cost": cost, "cpu_seconds_per_token": cost_mine, "points": points})
    return out


def _verdict(low: float, high: float, limit: float, below: bool = True) -> str:
    """'met' when the interval lies on the target's side of `limit`, 'missed' when it lies beyond, else 'not
    separated'."""
    if below:
        return "met" if high <= limit else "missed" if low > limit else "not separated"
    return "met" if low >= limit else "missed" if high < limit else "not separated"


def targets(
    record: dict[str, Any], found: list[dict[str, Any]], extrapolated: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The conversion-methods targets, each with its interval and verdict: for the best method (lowest in-window
    perplexity at the full budget) of each encoding with method arms, in-window within IN_WINDOW of the base and
    passkey at the window at least PASSKEY; the share of the gap each method closes at EARLY_SHARE of the
    pretraining tokens; the best method's perplexity at the longest length over the window against EXTRAPOLATION."""
    by_encoding: dict[str, list[dict[str, Any]]] = {}
    for entry in found:
        if entry["points"]:
            by_encoding.setdefault(entry["encoding"], []).append(entry)
    pretraining = record.get("base_pretraining_tokens")
    longest = str(max(record["lengths"]))
    out: dict[str, Any] = {"best": {}, "early": [], "early_tokens": None}
    for encoding, entries in by_encoding.items():
        best = min(entries, key=lambda e: e["points"][-1]["vs_base"]["mean"])
        last = best["points"][-1]
        row: dict[str, Any] = {"arm": best["arm"], "tokens": last["tokens"], "vs_base": last["vs_base"]}
        row["in_window"] = _verdict(last["vs_base"]["low"], last["vs_base"]["high"], math.log1p(IN_WINDOW))
        if "passkey" in last:
            row["passkey"] = last["passkey"]
            row["passkey_verdict"] = _verdict(last["passkey"]["low"], last["passkey"]["high"], PASSKEY, below=False)
        cell = (extrapolated.get(best["arm"]) or {}).get(longest)
        if cell and encoding in EXTRAPOLATION:
            limit = math.log(EXTRAPOLATION[encoding])
            row["extrapolation"] = {**cell, "length": int(longest), "limit": EXTRAPOLATION[encoding],
                                    "verdict": _verdict(cell["low"], cell["high"], limit)}  # fmt: skip
        out["best"][encoding] = row
    if pretraining:
        goal = EARLY_SHARE * pretraining
        for entry in found:
            if not entry["points"]:
                continue
            point = min(entry["points"], key=lambda p: abs(math.log(max(p["tokens"], 1) / goal)))
            gap = point["gap_closed"]
            out["early"].append({"arm": entry["arm"], "tokens": point["tokens"], "gap_closed": gap,
                                 "verdict": _verdict(gap["low"], gap["high"], GAP_AIM, below=False)})  # fmt: skip
            out["early_tokens"] = point["tokens"]
    return out


__all__ = ["EXTRAPOLATION", "GAP_AIM", "IN_WINDOW", "PASSKEY", "gap_interval", "method_arms", "methods", "targets"]
