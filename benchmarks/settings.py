"""What one benchmark run measures: shape, workloads, encodings, backends, rounds and the issue's targets."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .models import CONTROL, QUICK, REFERENCE, VARIANTS, Shape
from .workloads import Case

ENCODINGS = ("rope", "t5_bias", "alibi", "sinusoidal", "learned", "nope")
ALL_ENCODINGS = (*ENCODINGS, *VARIANTS, CONTROL)  # plus rope with each scaling type, and the A/A control
FULL_CASES = (
    Case("forward", 128),
    Case("forward", 512),
    Case("forward", 1024),
    Case("train", 512),
    Case("prefill", 1024),
    Case("decode", 32),
    Case("decode", 1024),
)
QUICK_CASES = (Case("forward", 128), Case("train", 64), Case("prefill", 128), Case("decode", 128))

# CPU, sdpa, converted / original (the issues' tables): throughput floors, decode-latency and memory ceilings.
# Decode: per generated token, at batch 1 and 4, at short and long context.
TARGETS = {
    "rope": {"forward": 0.98, "train": 0.97, "decode": 1.03, "memory": 1.03},
    "t5_bias": {"forward": 0.97, "train": 0.95, "decode": 1.05, "memory": 1.05},
    "alibi": {"forward": 0.97, "train": 0.95, "decode": 1.03, "memory": 1.05},
}
TARGET_BACKEND = "sdpa"
SCALING_DECODE_TARGET = 1.05  # decode latency of rope with a scaling type / plain rope


@dataclass
class Settings:
    shape: Shape
    cases: tuple[Case, ...]
    encodings: tuple[str, ...]
    backends: tuple[str, ...]
    rounds: int
    min_run_time: float
    threads: int
    device: str
    dtype: torch.dtype
    quick: bool = False
    clock: str = "wall"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def default(cls, quick: bool, device: str | None = None) -> Settings:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = device == "cuda"
        backends = ("sdpa", "flash_attention_2", "flex_attention", "eager") if on_gpu else ("sdpa", "eager")
        shape = QUICK if quick else (Shape(12, 768, 12, 50257, batch=8) if on_gpu else REFERENCE)
        return cls(
            shape=shape,
            cases=QUICK_CASES if quick else FULL_CASES,
            encodings=ENCODINGS,
            backends=backends,
            rounds=2 if quick else 3,
            min_run_time=0.02 if quick else 0.5,
            threads=1 if quick else torch.get_num_threads(),  # tiny shapes gain nothing from intra-op threads
            device=device,
            dtype=torch.bfloat16 if on_gpu else torch.float32,
            quick=quick,
        )
