"""What a swap study's record says: per-arm means over seeds, recovery curves against the base and the no-swap
control, perplexity past the window and passkey accuracy, each with an interval for seed and text-sampling error
(`hf_posenc.evaluation.statistics`), and the literature's claims checked as tests.

The record is what `recipes/swap_study.py` writes to results.json: "runs" {arm: {seed: {"training": {"probes": [...]},
"long_context": evaluate_long_context result}}}, "base_result" (the base's probe and evaluation), "scaling"
{kind: {seed: {length: result}}}, "window", "lengths" and "settings". Records written before per-window losses,
per-span losses and per-prompt passkey hits were kept still summarise: their intervals then count the seed spread
alone (and say so: "text_error": false).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .methods import methods, targets
from .recovery import mean_std
from .report import measurement
from .statistics import Interval, combined_interval, gap_closed, paired_difference, proportion_interval, within

BASE = "original (no fine-tuning)"
CONTROL = "learned"  # the no-swap arm: the base's own table, fine-tuned the same way
TOLERANCE = 0.02  # "recovered": in-window perplexity within 2% of the reference, as a test


# ---------------- means over seeds (tables and plots) ----------------
def cell_means(grids: list[list[list[float | None]]]) -> list[list[float | None]]:
    """The mean of each cell over several same-shaped grids (None where no grid has a value)."""
    return [[mean_std([g[i][j] for g in grids])[0] for j in range(len(row))] for i, row in enumerate(grids[0])]


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' `evaluate_long_context` results as one in the same shape: each perplexity record holds the
    mean perplexity and loss over the seeds (status "ok" only where every seed ran) with "std" and "values"; passkey
    accuracy is the mean per cell, and the by-length and by-depth means are taken from it."""
    first = results[0]
    records = []
    for record in first["perplexity"]:
        length, mode = record["length"], record["mode"]
        found = [measurement(r, length, mode) for r in results]
        values = [m["perplexity"] if m and m["status"] == "ok" else None for m in found]
        ok = all(v is not None for v in values)
        mean, std = mean_std(values)
        loss = mean_std([m["loss"] for m in found])[0] if ok else None
        records.append({**record, "status": "ok" if ok else record["status"], "values": values,
                        "perplexity": mean if ok else None, "std": std if ok else None, "loss": loss})  # fmt: skip
    passkey = None
    if first.get("passkey"):
        accuracy = cell_means([r["passkey"]["accuracy"] for r in results])
        passkey = {
            **first["passkey"],
            "accuracy": accuracy,
            "accuracy_by_length": [mean_std(row)[0] for row in accuracy],
            "accuracy_by_depth": [mean_std(column)[0] for column in zip(*accuracy)],
            "seeds": len(results),
        }
    return {**first, "perplexity": records, "passkey": passkey, "seeds": len(results)}


def merge_lengths(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's results at single lengths (e.g. one RoPE scaling factor per length) as one result."""
    merged = {**results[0], "perplexity": [r for res in results for r in res["perplexity"]]}
    merged["lengths"] = [n for res in results for n in res["lengths"]]
    keyed = [res["passkey"] for res in results if res.get("passkey")]  # passkey may be left out at some lengths
    merged["passkey"] = None
    if keyed:
        keys = [k for k in ("accuracy", "hits", "first_key_token", "token_accuracy") if k in keyed[0]]
        merged["passkey"] = {**keyed[0], "lengths": [n for found in keyed for n in found["lengths"]]} | {
            key: [row for found in keyed for row in found[key]] for key in keys
        }
        if "accuracy" in keys:  # the first length's summaries would be stale: recomputed over every merged row
            accuracy = merged["passkey"]["accuracy"]
            merged["passkey"]["accuracy_by_length"] = [mean_std(row)[0] for row in accuracy]
            merged["passkey"]["accuracy_by_depth"] = [mean_std(column)[0] for column in zip(*accuracy)]
    return merged


def scaled_seeds(record: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The rope + `kind` results per seed, each length (its own scaling factor) merged into one result."""
    per_seed = (record.get("scaling") or {}).get(kind) or {}
    return {seed: merge_lengths([by_length[n] for n in sorted(by_length, key=int)]) for seed, by_length in
            sorted(per_seed.items(), key=lambda item: int(item[0]))}  # fmt: skip


def seed_results(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {seed: long-context result}} for every arm and RoPE scaling kind (not the base)."""
    out = {arm: {s: seeds[s]["long_context"] for s in sorted(seeds, key=int)} for arm, seeds in record["runs"].items()}
    for kind in (record.get("settings") or {}).get("scaling") or []:
        scaled = scaled_seeds(record, kind)
        if scaled:
            out[scaled_name(kind)] = scaled
    return out


def scaled_name(kind: str) -> str:
    return f"rope + {kind} (inference)"


# ---------------- in-window: recovery against the base and the control ----------------
def _window_losses(probe: dict[str, Any]) -> list[float] | None:
    return probe.get("window_losses")


def in_window_difference(runs: list[dict[str, Any]], references: list[dict[str, Any]]) -> Interval:
    """log(perplexity / reference perplexity) of probes (one per seed) against reference probes (one, the base, or
    one per seed, the control), paired over the same windows; seed spread alone when windows were not kept."""
    if all(_window_losses(p) for p in runs + references):
        return paired_difference([p["window_losses"] for p in runs], [p["window_losses"] for p in references])
    ref = references * len(runs) if len(references) == 1 else references
    return combined_interval([math.log(p["perplexity"] / r["perplexity"]) for p, r in zip(runs, ref)])


def probe_hits(probe: dict[str, Any], key: str, prompts: int) -> list[int]:
    """A probe's per-prompt passkey hits; from its accuracy and the number of prompts in records that kept none."""
    if f"passkey_{key}" in probe:
        return list(probe[f"passkey_{key}"])
    if key != "hits" or probe.get("passkey") is None:
        return []
    found = round(probe["passkey"] * prompts)
    return [1] * found + [0] * (prompts - found)


def curves(record: dict[str, Any]) -> dict[str, Any]:
    """Per arm, per probe: perplexity mean and std over seeds, and as intervals of log(perplexity ratio) against the
    base ("vs_base") and against the control at the same budget ("vs_control"), passkey at the window and its first
    key token as proportion intervals; "recovered": the fewest tokens at which the arm is within TOLERANCE of each
    reference as a test (the interval's upper end at most +2%)."""
    runs, base = record["runs"], record["base_result"]
    prompts = _probe_prompts(record)
    control = runs.get(CONTROL)
    out = {}
    for arm, seeds in runs.items():
        order = sorted(seeds, key=int)
        probes = [seeds[s]["training"]["probes"] for s in order]
        points = []
        for index, first in enumerate(probes[0]):
            at = [run[index] for run in probes]
            mean, std = mean_std([p["perplexity"] for p in at])
            point = {"step": first["step"], "tokens": first["tokens"], "mean": mean, "std": std,
                     "values": [p["perplexity"] for p in at],
                     "vs_base": in_window_difference(at, [base]).as_dict()}  # fmt: skip
            if control and arm != CONTROL and set(control) == set(seeds):
                reference = [control[s]["training"]["probes"][index] for s in order]
                point["vs_control"] = in_window_difference(at, reference).as_dict()
            for key, name in (("hits", "passkey"), ("first_key_token", "first_key_token")):
                hits = [probe_hits(p, key, prompts) for p in at]
                if all(hits):
                    point[name] = proportion_interval(hits).as_dict()
            points.append(point)
        recovered = {ref: _first_within(points, f"vs_{ref}") for ref in ("base", "control")}
        out[arm] = {"points": points, "recovered": recovered}
    return out


def _probe_prompts(record: dict[str, Any]) -> int:
    settings = record.get("settings") or {}
    return int((settings.get("curve") or {}).get("passkey_trials") or 0) * len(
        (settings.get("eval") or {}).get("passkey_depths") or []
    )


def _first_within(points: list[dict[str, Any]], key: str) -> int | None:
    for point in points:
        interval = point.get(key)
        if interval and interval["high"] <= math.log1p(TOLERANCE):
            return int(point["tokens"])
    return None


# ---------------- past the window ----------------
def span_losses(result: dict[str, Any], length: int) -> list[float] | None:
    """The per-span (document) losses of a result's chunked perplexity at `length`, if it kept them."""
    m = measurement(result, length, "chunked")
    if not m or m["status"] != "ok" or not m.get("document_losses"):
        return None
    return m["document_losses"]


def rise(results: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]], window: int, length: int):
    """log(chunked perplexity at `length` / at the window) per seed, with an interval: `results` score `length`,
    `references` (the same seeds' models, usually the same results) score the window; paired over the spans."""
    outside = [span_losses(r, length) for r in results]
    inside = [span_losses(r, window) for r in references]
    if all(outside) and all(inside):
        return paired_difference(outside, inside)
    pairs = [
        (measurement(r, length, "chunked"), measurement(q, window, "chunked")) for r, q in zip(results, references)
    ]
    if any(not a or not b or a["status"] != "ok" or b["status"] != "ok" for a, b in pairs):
        return None
    return combined_interval([math.log(a["perplexity"] / b["perplexity"]) for a, b in pairs])


def extrapolation(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{model: {length: interval of log(perplexity at length / perplexity at the window)}} past the window; the
    RoPE scaling rows against plain rope's in-window perplexity of the same seed."""
    window, lengths = record["window"], record["lengths"]
    by_model = seed_results(record)
    out: dict[str, dict[str, Any]] = {}
    for name, seeds in by_model.items():
        results = list(seeds.values())
        references = list(by_model["rope"].values()) if name.startswith("rope + ") else results
        cells = {}
        for n in (n for n in lengths if n > window):
            interval = rise(results, references, window, n)
            if interval is not None:
                cells[str(n)] = interval.as_dict()
        out[name] = cells
    return out


def passkey_by_length(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{model: {length: proportion interval}} of the final evaluation's passkey, every depth pooled, per seed."""
    models = {BASE: {"0": record["base_result"]["long_context"]}} if record["base_result"].get("long_context") else {}
    out = {}
    for name, seeds in {**models, **seed_results(record)}.items():
        if not all(result.get("passkey") for result in seeds.values()):
            continue
        cells = {}
        for index, length in enumerate(next(iter(seeds.values()))["passkey"]["lengths"]):
            hits = [_eval_hits(result["passkey"], index) for result in seeds.values()]
            if all(h is not None for h in hits):
                cells[str(length)] = proportion_interval(hits).as_dict()
        out[name] = cells
    return out


def _eval_hits(passkey: dict[str, Any], index: int) -> list[int] | None:
    if passkey.get("hits"):
        row = passkey["hits"][index]
        return None if any(cell is None for cell in row) else [hit for cell in row for hit in cell]
    row = passkey["accuracy"][index]
    if any(a is None for a in row):
        return None
    trials = passkey["trials"]
    return [hit for a in row for hit in [1] * round(a * trials) + [0] * (trials - round(a * trials))]


# ---------------- the literature's claims, as tests ----------------
def verdict(interval: dict[str, Any] | None, claim_rises: bool) -> str:
    """ "yes" / "no" / "not separated" for a claim that a log-ratio rises (claim_rises) or does not."""
    if interval is None:
        return "n/a"
    if not interval["separated"]:
        return "not separated"
    rises = interval["low"] > 0
    return "yes" if rises == claim_rises else "no"


def literature(record: dict[str, Any], extrapolated: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Press et al. (2022) past the window, point by point: learned, sinusoidal and rope degrade (their interval at
    the longest length lies above 0), alibi and t5_bias hold (`holds`), nope sits between the holders and the
    degraders at the longest length (each difference paired by seed and span)."""
    longest = str(max(record["lengths"]))
    out = []

    def add(claim: str, result: str, name: str) -> None:
        out.append({"claim": claim, "reproduces": result, "evidence": extrapolated.get(name, {})})

    for name in ("learned", "sinusoidal", "rope"):
        if name in extrapolated:
            add(f"{name} degrades past the window", verdict(extrapolated[name].get(longest), True), name)
    for name in ("alibi", "t5_bias"):
        if name in extrapolated:
            add(f"{name} holds past the window", holds(list(extrapolated[name].values())), name)
    if "nope" in record["runs"]:
        below = [between(record, "nope", other, longest) for other in ("rope", "sinusoidal", "learned")]
        above = [between(record, other, "nope", longest) for other in ("alibi", "t5_bias")]
        tests = [t for t in below + above if t is not None]
        result = ("no" if any(t["high"] < 0 for t in tests) else "yes" if all(t["low"] > 0 for t in tests)
                  else "not separated") if tests else "n/a"  # fmt: skip
        out.append({"claim": "nope sits between them (at the longest length)", "reproduces": result,
                    "evidence": {"comparisons": tests}})  # fmt: skip
    return out


def holds(cells: list[dict[str, Any]]) -> str:
    """ "yes" when every length's interval of the log-ratio lies below log(1 + TOLERANCE) (no rise of more than 2%,
    as a test), "no" when one lies wholly above 0, "not separated" otherwise."""
    if not cells:
        return "n/a"
    if any(c["low"] > 0 for c in cells):
        return "no"
    return "yes" if all(c["high"] <= math.log1p(TOLERANCE) for c in cells) else "not separated"


def between(record: dict[str, Any], higher: str, lower: str, length: str) -> dict[str, Any] | None:
    """Interval of (rise of `higher`) - (rise of `lower`) at `length`, paired by seed and span: > 0 when `higher`
    degrades more."""
    runs, window = record["runs"], record["window"]
    if higher not in runs or lower not in runs or set(runs[higher]) != set(runs[lower]):
        return None
    order = sorted(runs[higher], key=int)
    rises = []
    for name in (higher, lower):
        results = [runs[name][s]["long_context"] for s in order]
        outside = [span_losses(r, int(length)) for r in results]
        inside = [span_losses(r, window) for r in results]
        if all(outside) and all(inside):
            rises.append([[a - b for a, b in zip(o, i)] for o, i in zip(outside, inside)])
            continue
        pairs = [(measurement(r, int(length), "chunked"), measurement(r, window, "chunked")) for r in results]
        if any(not a or not b or a["status"] != "ok" or b["status"] != "ok" for a, b in pairs):
            return None
        rises.append([[math.log(a["perplexity"] / b["perplexity"])] for a, b in pairs])  # no spans kept: per seed
    if len(rises[0][0]) != len(rises[1][0]):
        return None
    interval = paired_difference(rises[0], rises[1]).as_dict()
    return {**interval, "higher": higher, "lower": lower}


def drope(record: dict[str, Any], curve_by_arm: dict[str, Any], arm: str = "nope") -> dict[str, Any] | None:
    """DroPE (Gelberg et al. 2025) drops a model's positions (RoPE -> NoPE) and recalibrates with under 1% of the
    pretraining tokens. Here the matching arm is nope (learned -> NoPE), or `arm`, a nope arm with a recovery method:
    the share of the swap's gap in log-perplexity against the base that it closed at the last probe within 1% of the
    pretraining tokens, with the interval of the probe's log ratio (the swap's own gap is the same for every seed)."""
    pretraining = record.get("base_pretraining_tokens")
    if arm not in curve_by_arm or not pretraining:
        return None
    points = curve_by_arm[arm]["points"]
    inside = [p for p in points if 0 < p["tokens"] <= 0.01 * pretraining]
    if not inside:
        return None
    at = inside[-1]
    swap = points[0]["vs_base"]["mean"]
    now = at["vs_base"]
    return {"arm": arm, "tokens": at["tokens"], "share_of_pretraining": at["tokens"] / pretraining,
            "gap_closed": gap_closed(swap, now["mean"]), "gap_closed_low": gap_closed(swap, now["high"]),
            "gap_closed_high": gap_closed(swap, now["low"]), "claim": 0.95,
            "reproduces": "yes" if gap_closed(swap, now["high"]) >= 0.95 else
            "no" if gap_closed(swap, now["low"]) < 0.95 else "not separated"}  # fmt: skip


def comparisons(record: dict[str, Any], curve_by_arm: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings' `comparisons` ([arm a, arm b, what differs]) at the last probe: in-window log-perplexity and
    passkey at the window of a minus b, paired by seed, with intervals."""
    out = []
    for a, b, differs in (record.get("settings") or {}).get("comparisons") or []:
        runs = record["runs"]
        if a not in runs or b not in runs or set(runs[a]) != set(runs[b]):
            continue
        order = sorted(runs[a], key=int)
        last_a = [runs[a][s]["training"]["probes"][-1] for s in order]
        last_b = [runs[b][s]["training"]["probes"][-1] for s in order]
        prompts = _probe_prompts(record)
        hits_a = [probe_hits(p, "hits", prompts) for p in last_a]
        hits_b = [probe_hits(p, "hits", prompts) for p in last_b]
        entry = {"a": a, "b": b, "differs": differs, "perplexity": in_window_difference(last_a, last_b).as_dict()}
        if all(hits_a) and all(hits_b):
            entry["passkey"] = proportion_difference(hits_a, hits_b).as_dict()
        out.append(entry)
    return out


def proportion_difference(hits_a: list[list[int]], hits_b: list[list[int]]) -> Interval:
    """Accuracy of a minus accuracy of b, paired by seed, with both arms' binomial error."""
    a, b = proportion_interval(hits_a), proportion_interval(hits_b)
    rates = [sum(x) / len(x) - sum(y) / len(y) for x, y in zip(hits_a, hits_b)]
    return combined_interval(rates, math.hypot(a.se_text, b.se_text), min(len(h) for h in hits_a + hits_b))


# ---------------- the whole summary ----------------
def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The derived part of a study record: means over seeds per model (tables, plots), recovery curves with their
    tests, perplexity past the window and passkey with intervals, the literature's claims and DroPE's, the settings'
    arm comparisons, and whether text-sampling error was measured."""
    window, lengths = record["window"], record["lengths"]
    models: dict[str, Any] = {}
    if record["base_result"].get("long_context"):
        models[BASE] = record["base_result"]["long_context"]
    for name, seeds in seed_results(record).items():
        models[name] = aggregate(list(seeds.values()))
    curve_by_arm = curves(record)
    extrapolated = extrapolation(record)
    found = methods(record, curve_by_arm)
    first_run = next(iter(next(iter(record["runs"].values()), {}).values()), {})  # whichever seed finished first
    first_probe = first_run.get("training", {}).get("probes", [{}])
    return {
        "window": window,
        "lengths": lengths,
        "models": models,
        "curves": curve_by_arm,
        "extrapolation": extrapolated,
        "passkey": passkey_by_length(record),
        "verdicts": literature(record, extrapolated),
        "drope": drope(record, curve_by_arm),
        "drope_methods": [d for e in found if e["encoding"] == "nope" and (d := drope(record, curve_by_arm, e["arm"]))],
        "comparisons": comparisons(record, curve_by_arm),
        "methods": found,
        "targets": targets(record, found, extrapolated) if found else None,
        "text_error": bool(first_probe and first_probe[0].get("window_losses")),
        "tolerance": TOLERANCE,
    }


def log_ratio_percent(interval: dict[str, Any]) -> tuple[float, float, float]:
    """A log-ratio interval as percentages of change: (mean, low, high)."""
    return tuple(100 * math.expm1(interval[key]) for key in ("mean", "low", "high"))  # type: ignore[return-value]


__all__ = [
    "BASE",
    "CONTROL",
    "TOLERANCE",
    "aggregate",
    "comparisons",
    "curves",
    "drope",
    "extrapolation",
    "in_window_difference",
    "literature",
    "log_ratio_percent",
    "passkey_by_length",
    "proportion_difference",
    "rise",
    "summarize",
    "within",
]
