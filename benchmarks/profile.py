"""Profile one workload of the original and converted models with torch.profiler.

    python -m benchmarks.profile [--encodings rope,t5_bias,alibi] [--case forward] [--seq-len 512] [--quick]

Writes `benchmarks/profiles/<case>_<backend>_<variant>.txt` (operator table sorted by self CPU time, with
the rows that come from hf_posenc's own code marked by their record_function labels) and prints a summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from .models import ORIGINAL, QUICK, Shape, build_variants, set_backend
from .workloads import Case, make_inputs, shared_optimizer, workload

PROFILE_DIR = Path(__file__).parent / "profiles"
SMALL = Shape(layers=6, hidden=512, heads=8, vocab=8192, batch=4)  # the shape of the CPU targets


def profile_case(fn, rows: int = 25) -> tuple[str, float]:
    """Operator table of one call after one warm-up call, and the total self CPU time in ms."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    averages = prof.key_averages()
    total_ms = sum(event.self_cpu_time_total for event in averages) / 1000
    return averages.table(sort_by="self_cpu_time_total", row_limit=rows), total_ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encodings", default="rope,t5_bias,alibi")
    parser.add_argument("--case", default="forward", choices=["forward", "train", "prefill", "decode"])
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--backend", default="sdpa")
    parser.add_argument("--quick", action="store_true", help="a 2-layer, 128-wide model instead of 6 x 512")
    parser.add_argument("--out", type=Path, default=PROFILE_DIR)
    args = parser.parse_args(argv)

    shape = QUICK if args.quick else SMALL
    variants = build_variants(shape, [e for e in args.encodings.split(",") if e])
    skipped = set_backend(variants, args.backend)
    case = Case(args.case, args.seq_len)
    input_ids = make_inputs(case, shape.batch, shape.vocab)
    optimizer = shared_optimizer(variants) if case.kind == "train" else None
    args.out.mkdir(parents=True, exist_ok=True)
    totals = {}
    for name, model in tqdm(variants.items(), desc=f"profiling {case.label}"):
        if name in skipped:
            continue
        table, totals[name] = profile_case(workload(case, model, input_ids, optimizer))
        (args.out / f"{case.kind}_T{case.seq_len}_{args.backend}_{name}.txt").write_text(table + "\n")
    base = totals.get(ORIGINAL)
    for name, total in totals.items():
        ratio = f" ({total / base:.3f} x original)" if base else ""
        print(f"{name:>12}: {total:9.1f} ms self CPU{ratio}")
    print(f"Operator tables written to {args.out}/")


if __name__ == "__main__":
    main()
