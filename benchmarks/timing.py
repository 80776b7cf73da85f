"""Timing with torch.utils.benchmark and peak memory of one call (CUDA allocator, or torch's CPU allocations)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block (CPU time is then the work's own), as many as before after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_once(fn: Callable[[], None], threads: int, min_run_time: float, clock: str = "wall") -> float:
    """Median seconds per call of one `blocked_autorange` block set (its block-size estimate is the warm-up).

    `clock="cpu"` times with the process's CPU time instead of the wall clock: on a machine shared with other
    jobs it leaves out the time the scheduler gave to them (exact with one thread; CPU only).
    """
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def run() -> None:
        fn()
        synchronize()

    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=threads, timer=CLOCKS[clock])
    return timer.blocked_autorange(min_run_time=min_run_time).median


def summarize(times: list[float]) -> dict[str, float]:
    """Median and interquartile range of per-round times."""
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "iqr_s": quartiles[2] - quartiles[0], "rounds": len(times)}


def peak_memory(fn: Callable[[], None]) -> int:
    """Peak bytes allocated by one call above what was allocated before it.

    On CUDA: `torch.cuda.max_memory_allocated`. On CPU: the running sum of torch's own allocation and free
    events recorded by `torch.profiler(profile_memory=True)`; unlike RSS it ignores allocator caching and
    other processes, so two models measured one after the other compare exactly.
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak
