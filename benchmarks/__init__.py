"""Benchmarks of hf_posenc-converted models against the same models unconverted (`python -m benchmarks.run`)."""

import os

# torch.profiler (peak memory on CPU, benchmarks.profile) starts kineto, which prints a "USDT ... profiler_start" and a
# "profiler_stop" line to stderr on every use. Level 6 is above all of kineto's levels (USDT, the highest, is 5); it is
# read when the profiler first starts, so this must run before that. An explicit KINETO_LOG_LEVEL wins.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")
