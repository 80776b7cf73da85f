"""Profile one workload of the original and converted models with torch.profiler, and list what conversion adds.

    python -m benchmarks.profile [--encodings rope,t5_bias,alibi] [--case forward] [--seq-len 512] [--batch 4]
    python -m benchmarks.profile --case decode --seq-len 32 --batch 1 --calls 20   # one decode step at batch 1

Writes `benchmarks/profiles/<case>_T<T>[_B<batch>]_<backend>_<variant>.txt` (operator table sorted by self CPU time)
and `..._<backend>_added.md`: per converted variant, every operator whose calls or self CPU time differ from the
original's, per call of the workload (decode: per generated token), averaged over `--calls` profiled calls. Counts are
exact; times carry the machine's noise.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from .models import ORIGINAL, QUICK, Shape, build_variants, set_backend
from .workloads import Case, make_inputs, shared_optimizer, workload

PROFILE_DIR = Path(__file__).parent / "profiles"
SMALL = Shape(layers=6, hidden=512, heads=8, vocab=8192, batch=4)  # the shape of the CPU targets


def profile_case(fn, calls: int = 1, rows: int = 25) -> tuple[str, dict[str, tuple[float, float]]]:
    """Operator table of `calls` calls after one warm-up call, and {operator: (calls, self CPU us)} per call."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    averages = prof.key_averages()
    per_call = {event.key: (event.count / calls, event.self_cpu_time_total / calls) for event in averages}
    return averages.table(sort_by="self_cpu_time_total", row_limit=rows), per_call


def added_table(original: dict[str, tuple[float, float]], converted: dict[str, tuple[float, float]]) -> list[str]:
    """Markdown rows of the operators whose calls or self time differ, largest time difference first."""
    rows = []
    for name in set(original) | set(converted):
        (calls_0, us_0), (calls_1, us_1) = original.get(name, (0, 0)), converted.get(name, (0, 0))
        if calls_0 != calls_1 or abs(us_1 - us_0) >= 1:
            rows.append((calls_1 != calls_0, us_1 - us_0, name, calls_0, calls_1, us_0, us_1))
    rows.sort(key=lambda row: (not row[0], -row[1]))
    lines = ["| operator | calls, original → converted | self CPU us, original → converted |", "|---|---|---|"]
    lines += [f"| `{n}` | {c0:g} → {c1:g} | {u0:.1f} → {u1:.1f} ({d:+.1f}) |" for _, d, n, c0, c1, u0, u1 in rows]
    return lines


def summary(per_call: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return sum(c for c, _ in per_call.values()), sum(us for _, us in per_call.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encodings", default="rope,t5_bias,alibi")
    parser.add_argument("--case", default="forward", choices=["forward", "train", "prefill", "decode"])
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, help="batch size (default: the shape's, 4)")
    parser.add_argument("--calls", type=int, default=1, help="profiled calls to average over (default 1)")
    parser.add_argument("--backend", default="sdpa")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="a 2-layer, 128-wide model instead of 6 x 512")
    parser.add_argument("--out", type=Path, default=PROFILE_DIR)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    shape = QUICK if args.quick else SMALL
    if args.batch:
        shape = replace(shape, batch=args.batch)
    variants = build_variants(shape, [e for e in args.encodings.split(",") if e])
    skipped = set_backend(variants, args.backend)
    case = Case(args.case, args.seq_len)
    input_ids = make_inputs(case, shape.batch, shape.vocab)
    optimizer = shared_optimizer(variants) if case.kind == "train" else None
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{case.kind}_T{case.seq_len}" + (f"_B{args.batch}" if args.batch else "") + f"_{args.backend}"
    per_unit = case.decode_steps if case.kind == "decode" else 1
    operators = {}
    for name, model in tqdm(variants.items(), desc=f"profiling {case.label}"):
        if name in skipped:
            continue
        table, per_call = profile_case(workload(case, model, input_ids, optimizer), args.calls)
        operators[name] = {op: (calls / per_unit, us / per_unit) for op, (calls, us) in per_call.items()}
        (args.out / f"{stem}_{name}.txt").write_text(table + "\n")
    unit = "generated token" if case.kind == "decode" else "call"
    lines = [f"# What conversion adds: {case.label}, batch {shape.batch}, {args.backend}, per {unit}", ""]
    base = operators.get(ORIGINAL)
    for name, per_op in operators.items():
        calls, us = summary(per_op)
        ratio = f" ({us / summary(base)[1]:.3f} x original)" if base else ""
        print(f"{name:>12}: {calls:6.0f} operator calls, {us:9.1f} us self CPU per {unit}{ratio}")
        if base is None or name == ORIGINAL:
            continue
        base_calls, base_us = summary(base)
        lines += [f"## {name}: {base_calls:g} → {calls:g} operator calls, {base_us:.0f} → {us:.0f} us self CPU", ""]
        lines += [*added_table(base, per_op), ""]
    if base is not None:
        (args.out / f"{stem}_added.md").write_text("\n".join(lines))
    print(f"Operator tables written to {args.out}/")


if __name__ == "__main__":
    main()
