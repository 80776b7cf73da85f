"""The measuring loop: every variant of every workload, interleaved round by round, with peak memory."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import torch
from tqdm import tqdm

from .models import ORIGINAL, build_variants, set_backend
from .settings import Settings
from .timing import peak_memory, summarize, time_once
from .workloads import Case, make_inputs, shared_optimizer, workload


def measure(settings: Settings, on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """One row per (backend, workload, variant), with the ratios to the original measured in the same rounds."""
    shape = settings.shape
    variants = build_variants(shape, list(settings.encodings))
    for model in variants.values():
        model.to(device=settings.device, dtype=settings.dtype)
    needs_optimizer = any(case.kind == "train" for case in settings.cases)
    optimizer = shared_optimizer(variants) if needs_optimizer else None
    rows: list[dict] = []
    total = len(settings.backends) * len(settings.cases)
    with tqdm(total=total, desc="benchmarks", unit="workload") as progress:
        for backend in settings.backends:
            skipped = set_backend(variants, backend)
            baseline_backend = backend
            if ORIGINAL in skipped:  # e.g. GPT-2 has no flex_attention: compare with the original on sdpa
                baseline_backend = "sdpa"
                variants[ORIGINAL].set_attn_implementation("sdpa")
                del skipped[ORIGINAL]
            for case in settings.cases:
                progress.set_postfix_str(f"{backend} {case.label}")
                input_ids = make_inputs(case, case.batch or shape.batch, shape.vocab).to(settings.device)
                new_rows = measure_case(settings, case, variants, skipped, input_ids, optimizer)
                for row in new_rows:
                    row["backend"] = backend
                    row["baseline_backend"] = baseline_backend
                rows.extend(new_rows)
                if on_rows is not None:
                    on_rows(rows)
                progress.update()
    return rows


def measure_case(
    settings: Settings,
    case: Case,
    variants: dict[str, torch.nn.Module],
    skipped: dict[str, str],
    input_ids: torch.Tensor,
    optimizer: torch.optim.Optimizer | None,
) -> list[dict]:
    errors = dict(skipped)
    runs = {}
    for name, model in variants.items():
        if name in errors:
            continue
        try:
            runs[name] = workload(case, model, input_ids, optimizer)
            runs[name]()  # warm-up: first-call allocations, lazy initialisation, compilation
        except Exception as err:  # noqa: BLE001 - a variant that cannot run is reported, not fatal
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for round_index in range(settings.rounds):
        shift = round_index % len(order) if order else 0
        for name in order[shift:] + order[:shift]:  # rotate the order so no variant always runs first
            if name in errors:
                continue
            try:
                times[name].append(time_once(runs[name], settings.threads, settings.min_run_time, settings.clock))
            except Exception as err:  # noqa: BLE001
                errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    memory = {name: peak_memory(runs[name]) for name in runs if name not in errors}
    return make_rows(settings, case, times, memory, errors)


def make_rows(
    settings: Settings, case: Case, times: dict[str, list[float]], memory: dict[str, int], errors: dict[str, str]
) -> list[dict]:
    batch = case.batch or settings.shape.batch
    base = {"case": case.kind, "seq_len": case.seq_len, "batch": batch, "label": case.label}
    rows = []
    original = summarize(times[ORIGINAL]) if ORIGINAL in memory else None
    for name in [ORIGINAL, *settings.encodings]:
        row = {**base, "encoding": name}
        if name in errors:
            rows.append({**row, "error": errors[name]})
            continue
        stats = summarize(times[name])
        stats["min_s"] = min(times[name])
        row.update(stats, peak_bytes=memory[name], times_s=times[name])
        row["tokens_per_s" if case.higher_is_better else "s_per_token"] = (
            case.tokens(batch) / stats["median_s"] if case.higher_is_better else stats["median_s"] / case.decode_steps
        )
        if original is not None:
            row.update(ratios(case, stats, original, min(times[ORIGINAL]), memory[name], memory[ORIGINAL]))
            row.update(round_spread(case, times[name], times[ORIGINAL]))
        rows.append(row)
    return rows


def ratios(case: Case, stats: dict, original: dict, original_min: float, peak: int, original_peak: int) -> dict:
    """Converted / original: throughput for forward, train and prefill; latency for decode; peak memory."""
    if case.higher_is_better:
        ratio, best = original["median_s"] / stats["median_s"], original_min / stats["min_s"]
    else:
        ratio, best = stats["median_s"] / original["median_s"], stats["min_s"] / original_min
    return {
        "ratio_kind": "throughput" if case.higher_is_better else "latency",
        "ratio": ratio,
        "ratio_best": best,
        "memory_ratio": peak / original_peak if original_peak else None,
    }


def round_spread(case: Case, times: list[float], original_times: list[float]) -> dict:
    """The ratio in each interleaved round (both measured in the same round), its range over the rounds, and its
    median with a 95 % interval (paired: a slow drift of the machine's speed cancels within a round)."""
    per_round = [
        (o / t if case.higher_is_better else t / o) for t, o in zip(times, original_times, strict=True) if t and o
    ]
    if not per_round:
        return {}
    return {
        "round_ratios": per_round,
        "ratio_low": min(per_round),
        "ratio_high": max(per_round),
        "round_ratio_median": statistics.median(per_round),
        "round_ratio_interval": median_interval(per_round),
    }


def median_interval(values: list[float], confidence: float = 0.95) -> list[float]:
    """A distribution-free interval for the median: the order statistics x_(k) and x_(n+1-k), with k the largest
    rank for which a Binomial(n, 1/2) falls below k with probability at most (1 - confidence) / 2."""
    n, ordered = len(values), sorted(values)
    k, below = 0, 0.0
    while k < n // 2 and below + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        below += math.comb(n, k) / 2**n
        k += 1
    return [ordered[max(k - 1, 0)], ordered[n - max(k, 1)]]
