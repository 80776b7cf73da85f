"""Time a training step of each conversion-aware method on the shipped study base, against plain fine-tuning:
`python tools/recovery_cost.py [--steps 12] [--batch_size 4]`.

The base (4 layers, 256 wide, 256 positions) is converted to RoPE once per method and trained on blocks of its
window from a shipped book: forward, backward and AdamW step, the methods taking turns step by step. On one thread
the CPU time of a step (`time.process_time`) is its cost, whatever else the machine runs; the median over the steps
after the first is printed per method, as a markdown table with the ratio to plain fine-tuning.
"""

from __future__ import annotations

import argparse
import statistics
import time

METHODS = {
    "plain": {},
    "distillation": {"distill_weight": 1.0},
    "attention transfer": {"attention_transfer_weight": 1.0},
    "distillation + attention transfer": {"distill_weight": 1.0, "attention_transfer_weight": 1.0},
    "gradual swap": {"gradual_swap_steps": 0.5},
}


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_posenc
    from hf_posenc import data
    from hf_posenc.training import TrainConfig
    from hf_posenc.training.recovery import Recovery

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = data.study_base_dir()
    ids = AutoTokenizer.from_pretrained(base)(data.text("austen_emma")[:200_000])["input_ids"]
    window = AutoModelForCausalLM.from_pretrained(base).config.n_positions
    blocks = torch.tensor([ids[i : i + window] for i in range(0, len(ids) - window, window)])
    runs = {}
    for name, settings in METHODS.items():
        model = hf_posenc.convert(AutoModelForCausalLM.from_pretrained(base), "rope").train()
        recovery = Recovery.setup(TrainConfig(**settings).check(), model)
        recovery.attach(model, args.steps)
        runs[name] = (model, recovery, torch.optim.AdamW(model.parameters(), lr=1e-4), [])
    for step in range(args.steps):
        batch = blocks[step * args.batch_size : (step + 1) * args.batch_size]
        for model, recovery, optimizer, seconds in runs.values():
            began = time.process_time()
            recovery.training_loss(model, {"input_ids": batch, "labels": batch}).backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.process_time() - began)
    median = {name: statistics.median(run[3][1:]) for name, run in runs.items()}
    print(f"| method ({args.batch_size} x {window} tokens, 1 thread) | CPU seconds per step | x plain |")
    print("| --- | --- | --- |")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} | {value / median['plain']:.2f} |")


if __name__ == "__main__":
    main()
