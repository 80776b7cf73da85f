"""What a training step of each conversion-aware method costs on the shipped study base, against plain fine-tuning.

    python -m benchmarks.recovery_cost           # 12 steps of 4 x 256 tokens, 3 repeats: results/recovery_cost/
    python -m benchmarks.recovery_cost --quick   # 3 steps, 1 repeat, benchmarks/quick/recovery_cost.json: a smoke run

The base (4 layers, 256 wide, 256 positions) is converted to RoPE once per method and repeat and trained on blocks of
its window from a shipped book: forward, backward and AdamW step, the methods taking turns step by step. On one
thread the CPU time of a step (`time.process_time`) is its cost, whatever else the machine runs; per repeat, the
median over the steps after the first, and its ratio to plain fine-tuning's. results.json keeps every step's time;
results.md (and the README's sentence, `readme_block`) state the mean ratio over the repeats and how far apart the
repeats were.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from .report import machine
from .timing import one_thread

HERE = Path(__file__).parent
COMMITTED = HERE.parent / "results" / "recovery_cost" / "results.json"
PLAIN = "plain"
METHODS = {
    PLAIN: {},
    "distillation": {"distill_weight": 1.0},
    "attention transfer": {"attention_transfer_weight": 1.0},
    "distillation + attention transfer": {"distill_weight": 1.0, "attention_transfer_weight": 1.0},
    "gradual swap": {"gradual_swap_steps": 0.5},
}
SAID = {"distillation + attention transfer": "both", "gradual swap": "the gradual swap"}
FULL = {"steps": 12, "batch_size": 4, "repeats": 3}
QUICK = {"steps": 3, "batch_size": 2, "repeats": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 steps of 2 blocks, 1 repeat (a smoke run)")
    parser.add_argument("--steps", type=int, help=f"timed steps per method and repeat (default {FULL['steps']})")
    parser.add_argument("--batch_size", type=int, help=f"blocks of the window per step (default {FULL['batch_size']})")
    parser.add_argument(
        "--repeats", type=int, help=f"fresh models per method, one after another (default {FULL['repeats']})"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON path (default results/recovery_cost/results.json; quick: benchmarks/quick/)"
    )
    return parser.parse_args(argv)


def measure(steps: int, batch_size: int) -> tuple[int, dict[str, list[float]]]:
    """The study base's window and, per method, the CPU seconds of each of `steps` training steps."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_posenc
    from hf_posenc import data
    from hf_posenc.training import TrainConfig
    from hf_posenc.training.recovery import Recovery

    torch.manual_seed(0)
    base = data.study_base_dir()
    window = AutoModelForCausalLM.from_pretrained(base).config.n_positions
    ids = AutoTokenizer.from_pretrained(base)(data.text("austen_emma")[: 8 * window * batch_size * steps])["input_ids"]
    blocks = torch.tensor([ids[i : i + window] for i in range(0, len(ids) - window, window)])
    if len(blocks) < steps * batch_size:
        raise ValueError(
            f"{steps} steps of {batch_size} blocks need {steps * batch_size} blocks; the book gives {len(blocks)}"
        )
    runs = {}
    for name, settings in METHODS.items():
        model = hf_posenc.convert(AutoModelForCausalLM.from_pretrained(base), "rope").train()
        recovery = Recovery.setup(TrainConfig(**settings).check(), model)
        recovery.attach(model, steps)
        runs[name] = (model, recovery, torch.optim.AdamW(model.parameters(), lr=1e-4), [])
    for step in range(steps):
        batch = blocks[step * batch_size : (step + 1) * batch_size]
        for model, recovery, optimizer, seconds in runs.values():
            began = time.process_time()
            recovery.training_loss(model, {"input_ids": batch, "labels": batch}).backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.process_time() - began)
    return window, {name: run[3] for name, run in runs.items()}


def summarize(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per method: the median step after the first (the first pays for warm-up) and its ratio to plain's."""
    median = {name: statistics.median(times[1:] or times) for name, times in seconds.items()}
    return {name: {"median_s": value, "ratio": value / median[PLAIN]} for name, value in median.items()}


def ratios(record: dict) -> dict[str, list[float]]:
    """Each method's ratio to plain fine-tuning, one per repeat."""
    return {name: [repeat["methods"][name]["ratio"] for repeat in record["repeats"]] for name in METHODS}


def render_markdown(record: dict) -> str:
    s, meta = record["settings"], record["machine"]
    lines = [
        "# What a recovery method costs per training step",
        "",
        f"`{meta['command']}` on {meta['date_utc'][:10]} ({meta['cpu']}, torch {meta['torch']}, load average "
        f"{meta['load_average_start']} at the start): the study base converted to RoPE, {s['steps']} steps of "
        f"{s['batch_size']} x {s['window']} tokens per method, {s['threads']} thread, CPU time; median step after "
        f"the first, {s['repeats']} repeat{'s' if s['repeats'] > 1 else ''}.",
        "",
        "| method | CPU seconds per step | x plain | repeats' ratios |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in ratios(record).items():
        seconds = statistics.mean(repeat["methods"][name]["median_s"] for repeat in record["repeats"])
        each = ", ".join(f"{value:.2f}" for value in values)
        lines.append(f"| {name} | {seconds:.3f} | {statistics.mean(values):.2f} | {each} |")
    return "\n".join(lines) + "\n"


def readme_block(record: dict) -> str:
    """The README's sentence on what the methods cost, from the committed record."""
    s = record["settings"]
    found = {name: values for name, values in ratios(record).items() if name != PLAIN}
    spread = max(max(values) - min(values) for values in found.values())
    said = ", ".join(f"{SAID.get(name, name)} x{statistics.mean(values):.2f}" for name, values in found.items())
    agreed = f" ({s['repeats']} repeats agreed within {spread:.2f})" if s["repeats"] > 1 else ""
    return (
        f"The CPU time of a training step on the study base (batch {s['batch_size']} x {s['window']} tokens, "
        f"{s['threads']} thread, `python -m benchmarks.recovery_cost`, `results/recovery_cost/`), against plain "
        f"fine-tuning: {said}{agreed}."
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    chosen = {key: getattr(args, key) or (QUICK if args.quick else FULL)[key] for key in FULL}
    out = args.out or (HERE / "quick" / "recovery_cost.json" if args.quick else COMMITTED)
    with one_thread():
        meta = machine()
        meta["command"] = shlex.join(
            ["python", "-m", "benchmarks.recovery_cost", *(sys.argv[1:] if argv is None else argv)]
        )
        repeats = []
        for _ in range(chosen["repeats"]):
            window, seconds = measure(chosen["steps"], chosen["batch_size"])
            repeats.append({"seconds": seconds, "methods": summarize(seconds)})
    record = {
        "machine": meta,
        "settings": {**chosen, "window": window, "threads": 1, "clock": "cpu", "encoding": "rope"},
        "repeats": repeats,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    (out.parent / ("results.md" if out.name == "results.json" else out.stem + ".md")).write_text(
        render_markdown(record)
    )
    print(render_markdown(record))
    return record


if __name__ == "__main__":
    main()
