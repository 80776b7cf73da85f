"""Benchmark hf_posenc-converted GPT-2 against the same model unconverted, and write the ratio tables.

    python -m benchmarks.run            # reference: GPT-2 small shape (12 x 768), writes benchmarks/RESULTS.md
    python -m benchmarks.run --quick    # tiny shape, a couple of minutes, writes benchmarks/quick/

Every converted variant shares the original's weight tensors; all run the same inputs on the same backend
and thread count, interleaved round by round.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .models import Shape
from .report import load_average, machine, plot, print_summary, write_json, write_markdown
from .settings import ALL_ENCODINGS, Settings
from .workloads import Case

HERE = Path(__file__).parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Converted vs original GPT-2: forward, train step, prefill, decode.")
    parser.add_argument("--quick", action="store_true", help="tiny model and lengths, 2 rounds (a smoke run)")
    parser.add_argument("--encodings", help=f"comma-separated subset of {','.join(ALL_ENCODINGS)}")
    parser.add_argument("--backends", help="comma-separated attention backends (default: sdpa,eager on CPU)")
    parser.add_argument(
        "--cases", help="comma-separated kind:T or kind:T:batch (default: the shape's batch), e.g. decode:32:1"
    )
    parser.add_argument("--shape", help="layers,hidden,heads,vocab,batch (default 12,768,12,50257,4)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 3; quick 2)")
    parser.add_argument("--min-run-time", type=float, help="seconds per blocked_autorange measurement")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock (default) or process CPU time (for a CPU shared with other jobs; use with --threads 1)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: fp32 CPU, bf16 CUDA")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/, quick: benchmarks/quick/)")
    parser.add_argument("--note", action="append", default=[], help="a line added to RESULTS.md (repeatable)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.default(args.quick, args.device)
    if args.encodings:
        settings.encodings = tuple(e.strip() for e in args.encodings.split(",") if e.strip())
        unknown = sorted(set(settings.encodings) - set(ALL_ENCODINGS))
        if unknown:
            sys.exit(f"error: unknown encoding(s) {unknown}; choose from {', '.join(ALL_ENCODINGS)}")
    if args.backends:
        settings.backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if args.cases:
        settings.cases = tuple(parse_case(item) for item in args.cases.split(","))
    if args.shape:
        try:
            layers, hidden, heads, vocab, batch = (int(v) for v in args.shape.split(","))
        except ValueError:
            sys.exit(f"error: --shape wants five integers layers,hidden,heads,vocab,batch, got {args.shape!r}")
        longest = max(case.seq_len for case in settings.cases)
        settings.shape = Shape(layers, hidden, heads, vocab, batch, max_positions=max(1024, longest))
    if args.rounds:
        settings.rounds = args.rounds
    if args.min_run_time is not None:
        settings.min_run_time = args.min_run_time
    if args.threads:
        settings.threads = args.threads
    if args.dtype:
        settings.dtype = getattr(torch, args.dtype)
    settings.notes = list(args.note)
    if args.clock == "cpu" and settings.device != "cpu":
        sys.exit("error: --clock cpu times CPU work only; use the wall clock on a GPU")
    settings.clock = args.clock
    too_long = [case.label for case in settings.cases if case.seq_len > settings.shape.max_positions]
    if too_long:
        sys.exit(f"error: {too_long} exceed the model's {settings.shape.max_positions} positions")
    return settings


def parse_case(item: str) -> Case:
    kind, *numbers = item.strip().split(":")
    if kind not in ("forward", "train", "prefill", "decode") or len(numbers) not in (1, 2):
        numbers = []
    if not numbers or not all(n.isdigit() and int(n) > 0 for n in numbers):
        sys.exit(f"error: a case is kind:T or kind:T:batch with kind forward, train, prefill or decode, got {item!r}")
    return Case(kind, int(numbers[0]), batch=int(numbers[1]) if len(numbers) == 2 else None)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings = settings_from(args)
    out = args.out or (HERE / "quick" if settings.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.threads)
    meta = machine()
    json_path, md_path, png_path = out / "results.json", out / "RESULTS.md", out / "results.png"

    from .measure import measure

    rows = measure(settings, on_rows=lambda partial: write_json(json_path, meta, settings, partial))
    meta["load_average_end"] = load_average()
    write_json(json_path, meta, settings, rows)
    plot(png_path, rows, settings)
    write_markdown(md_path, meta, settings, rows, png_path.name)
    print_summary(rows, settings)
    print(f"\nWrote {md_path}, {json_path} and {png_path}")
    return {"rows": rows, "paths": (md_path, json_path, png_path)}


if __name__ == "__main__":
    main()
