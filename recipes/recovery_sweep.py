"""What it takes for a converted model to recover the base model's in-window perplexity: fine-tune one encoding
from the swap study's base with several learning rates, budgets and trainable sets, and report in-window
perplexity against the base and against the original fine-tuned the same way.

    python recipes/recovery_sweep.py --encoding rope --learning_rates 3e-4 1e-3 --budgets 24576 98304
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from hf_posenc.training import RecipeError, run_cli

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModelForCausalLM

    from hf_posenc.evaluation import chunked_perplexity, tokenize_documents
    from hf_posenc.training import CausalCollator, load_documents, load_tokenizer, tokenize_and_pack, train
    from hf_posenc.training.model import convert_if_asked

    sys.path.insert(0, str(HERE))
    from swap_study import Study, load_settings, train_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="default", help="Swap-study setting whose base model is used.")
    parser.add_argument("--encoding", default="rope")
    parser.add_argument("--learning_rates", nargs="+", type=float, default=[3e-4, 1e-3])
    parser.add_argument("--budgets", nargs="+", type=int, default=[24576, 98304], help="Fine-tuning tokens.")
    parser.add_argument("--trainable", nargs="+", default=["all"], help="all / attention / lora.")
    parser.add_argument("--position_lr_multipliers", nargs="+", type=float, default=[1.0])
    parser.add_argument("--control", action="store_true", help="Also fine-tune the unconverted original.")
    parser.add_argument("--out", default="outputs/recovery_sweep.json")
    args = parser.parse_args(argv)
    settings = load_settings(args.setting, None, [])
    study = Study(settings, Path(args.out).parent, Path(args.out).parent / "sweep_models", progress=False)
    base_dir, _ = study.base_model()
    tokenizer = load_tokenizer(str(base_dir))
    window = AutoModelForCausalLM.from_pretrained(str(base_dir)).config.max_position_embeddings
    raw = load_documents(**(settings.get("data") or {}))
    data = tokenize_and_pack(raw, tokenizer, window, max_eval_blocks=32)
    docs = tokenize_documents(tokenizer, list(raw["eval"]["text"]))
    max_tokens = settings["eval"]["max_tokens"]

    def in_window(model) -> float:
        return chunked_perplexity(model.eval(), docs, window, max_tokens=max_tokens)["perplexity"]

    rows = [{"run": "base", "ppl": in_window(AutoModelForCausalLM.from_pretrained(str(base_dir)))}]
    encodings = [args.encoding] + (["original"] if args.control else [])
    multipliers = args.position_lr_multipliers
    for encoding in encodings:
        for trainable in args.trainable:
            for budget, lr, multiplier in itertools.product(args.budgets, args.learning_rates, multipliers):
                model = AutoModelForCausalLM.from_pretrained(str(base_dir))
                model = convert_if_asked(model, None if encoding == "original" else encoding, {})
                section = {**settings["finetune"], "learning_rate": lr, "token_budget": budget}
                section.update(trainable=trainable, block_size=window, position_lr_multiplier=multiplier)
                name = f"{encoding}-{trainable}-{budget}-{lr:g}-x{multiplier:g}"
                cfg = train_config(section, study.models_dir / name, progress=False)
                result = train(model, data.train, data.eval, cfg, CausalCollator())
                ppl = in_window(result["model"])
                rows.append({"run": name, "encoding": encoding, "trainable": trainable, "budget": budget,
                             "learning_rate": lr, "position_lr_multiplier": multiplier, "ppl": ppl,
                             "vs_base": ppl / rows[0]["ppl"] - 1})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    if len(rows) == 1:
        raise RecipeError("Nothing to run: give at least one learning rate and budget.")


if __name__ == "__main__":
    run_cli(main)
