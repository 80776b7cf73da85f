"""Pretrain the swap study's base: a small GPT-2 with a learned absolute position table, a 4k byte-level BPE
trained on the training books, and fixed fractions of passkey retrieval blocks and repeated-random-token (copying)
blocks mixed into the text blocks.

    python recipes/pretrain_study_base.py --config recipes/configs/study_base.yaml --output_dir outputs/study_base
    # interrupted? the same command plus --resume_from_checkpoint latest
    # report for a checkpoint: --evaluate_only outputs/study_base/checkpoints/step_0000500

At the end it writes output_dir/base_report.json: held-out in-window bpc and perplexity, the unigram baseline,
perplexity with the position table zeroed, and passkey accuracy at the window. Held-out books are only evaluated.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from hf_posenc.training import (
    CausalCollator,
    TrainConfig,
    build_parser,
    load_documents,
    parse_config,
    run_cli,
    tokenize_and_pack,
    train,
)
from hf_posenc.training.errors import RecipeError

DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
TARGETS = {"bpc_vs_unigram": 0.75, "bpc": 1.95, "zeroed_table_ratio": 1.3, "passkey": 0.9}


def build_study_parser():
    defaults = {
        "learning_rate": 1e-3,
        "warmup_steps": 100,
        "block_size": 256,
        "batch_size": 16,
        "output_dir": "outputs/study_base",
    }
    parser = build_parser(__doc__, defaults)
    parser.add_argument("--n_layer", type=int, default=4, help="Transformer blocks.")
    parser.add_argument("--n_embd", type=int, default=256, help="Hidden size.")
    parser.add_argument("--n_head", type=int, default=4, help="Attention heads.")
    parser.add_argument("--vocab_size", type=int, default=4096, help="Byte-level BPE vocabulary size.")
    parser.add_argument("--retrieval_fraction", type=float, default=0.1, help="Fraction of blocks that are passkeys.")
    parser.add_argument("--retrieval_seed", type=int, default=1234, help="Seed of the training passkeys.")
    parser.add_argument(
        "--copy_fraction", type=float, default=0.0, help="Fraction of blocks that repeat a random token sequence."
    )
    parser.add_argument(
        "--retrieval_packed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Fill each retrieval block with further passkey prompts (after an EOS) while one fits.",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    parser.add_argument("--report_windows", type=int, default=64, help="Held-out windows per book in the report.")
    parser.add_argument("--passkey_trials", type=int, default=8, help="Passkey trials per depth in the report.")
    parser.add_argument(
        "--evaluate_only",
        default=None,
        help="Only write base_report.json for this model folder "
        "(a finished run's output_dir, or one of its checkpoints/step_N).",
    )
    return parser


def evaluate_base(model: Any, tokenizer: Any, window: int, windows_per_book: int, trials: int) -> dict[str, Any]:
    """Held-out in-window bpc/perplexity, the unigram baseline, the zeroed-table ratio and passkey accuracy."""
    import torch

    from hf_posenc.data import texts
    from hf_posenc.evaluation import heldout_bpc, passkey_retrieval, unigram_bpc

    held_out = texts("eval")
    model.eval()
    scored = heldout_bpc(model, tokenizer, held_out, window, windows_per_book)
    unigram = unigram_bpc(tokenizer, texts("train"), held_out)
    wpe = model.transformer.wpe.weight
    saved = wpe.detach().clone()
    with torch.no_grad():
        wpe.zero_()
    zeroed = heldout_bpc(model, tokenizer, held_out, window, windows_per_book)
    with torch.no_grad():
        wpe.copy_(saved)
    passkey = passkey_retrieval(model, tokenizer, [window], DEPTHS, trials=trials)
    report = {
        "heldout": scored,
        "unigram": unigram,
        "bpc": scored["bpc"],
        "perplexity": scored["perplexity"],
        "unigram_bpc": unigram["bpc"],
        "bpc_vs_unigram": scored["bpc"] / unigram["bpc"],
        "zeroed_table": zeroed,
        "zeroed_table_ratio": zeroed["perplexity"] / scored["perplexity"],
        "passkey": passkey,
        "passkey_accuracy": passkey["accuracy_by_length"][0],
    }
    report["targets"] = {
        "bpc_vs_unigram <= 0.75": report["bpc_vs_unigram"] <= TARGETS["bpc_vs_unigram"],
        "bpc <= 1.95": report["bpc"] <= TARGETS["bpc"],
        "zeroed_table_ratio >= 1.3": report["zeroed_table_ratio"] >= TARGETS["zeroed_table_ratio"],
        "passkey >= 0.9": (report["passkey_accuracy"] or 0.0) >= TARGETS["passkey"],
    }
    return report


def load_for_report(folder: Path) -> tuple[Any, Any, int | None, Path]:
    """(model, tokenizer, tokens trained or None, run folder) for a finished run or one of its checkpoints."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if (folder / "config.json").is_file() and not (folder / "progress.json").is_file():
        run = folder
        model = GPT2LMHeadModel.from_pretrained(str(folder))
        tokens = None
    elif (folder / "progress.json").is_file():
        run = folder.parent.parent
        model = GPT2LMHeadModel(GPT2Config.from_pretrained(str(run)))
        missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        if unexpected or any(key != "lm_head.weight" for key in missing):
            raise RecipeError(f"{folder} does not hold this run's model: missing {missing}, unexpected {unexpected}.")
        model.tie_weights()
        cfg = json.loads((run / "train_config.json").read_text())
        step = json.loads((folder / "progress.json").read_text())["step"]
        tokens = step * cfg["batch_size"] * cfg["gradient_accumulation_steps"] * cfg["block_size"]
    else:
        raise RecipeError(f"{folder} is neither a finished run (config.json) nor a checkpoint (progress.json).")
    return model, AutoTokenizer.from_pretrained(str(run)), tokens, run


def evaluate_only(folder: str, windows_per_book: int, trials: int) -> dict[str, Any]:
    """Write folder/base_report.json for a finished run or an intermediate checkpoint."""
    path = Path(folder)
    model, tokenizer, tokens, _ = load_for_report(path)
    start = time.perf_counter()
    report = evaluate_base(model, tokenizer, model.config.n_positions, windows_per_book, trials)
    report.update(tokens_trained=tokens, evaluated=str(path), eval_seconds=time.perf_counter() - start)
    report["command"] = shlex.join(["python", *sys.argv])
    (path / "base_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def study_tokenizer(out: Path, vocab_size: int, resuming: bool) -> Any:
    """Train the BPE (training books only) and save it to `out`; a resumed run reloads the saved one."""
    from transformers import AutoTokenizer

    from hf_posenc.data.bpe import train_bpe_tokenizer

    if resuming and (out / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(out))
    tokenizer = train_bpe_tokenizer(vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return tokenizer


def pretrain_study_base(cfg: TrainConfig, extras: dict[str, Any]) -> dict[str, Any]:
    """Tokenizer, data (text + retrieval blocks), a fresh GPT-2, the project's training loop, then the report."""
    import torch

    from hf_posenc.training.model import check_gpt2_shape, fresh_gpt2
    from hf_posenc.training.retrieval_mix import mix_retrieval

    n_layer, n_embd, n_head = extras["n_layer"], extras["n_embd"], extras["n_head"]
    check_gpt2_shape(n_layer, n_embd, n_head)
    wall = time.perf_counter()
    out = Path(cfg.output_dir)
    tokenizer = study_tokenizer(out, extras["vocab_size"], bool(cfg.resume_from_checkpoint))
    data = tokenize_and_pack(load_documents(), tokenizer, cfg.block_size, max_eval_blocks=cfg.max_eval_blocks)
    train_set, mix = mix_retrieval(
        data.train,
        tokenizer,
        cfg.block_size,
        extras["retrieval_fraction"],
        extras["retrieval_seed"],
        packed=extras["retrieval_packed"],
        copy_fraction=extras["copy_fraction"],
    )
    torch.manual_seed(cfg.seed)
    model = fresh_gpt2(tokenizer, cfg.block_size, n_layer, n_embd, n_head, pad_token_id=tokenizer.eos_token_id)
    model.config.save_pretrained(str(out))
    command = shlex.join(["python", *sys.argv])
    study_file = out / "study_base_config.json"
    if cfg.resume_from_checkpoint and study_file.is_file():  # keep the original command; record the resumption
        study = json.loads(study_file.read_text())
        study.setdefault("resumed_with", []).append(command)
    else:
        study = {
            "command": command,
            "seed": cfg.seed,
            "vocab_size": len(tokenizer),
            "n_layer": n_layer,
            "n_embd": n_embd,
            "n_head": n_head,
            "threads": extras["threads"],
            "mixture": mix,
        }
    study_file.write_text(json.dumps(study, indent=2) + "\n")
    result = train(model, train_set, data.eval, cfg, CausalCollator(), tokenizer, project_name="study_base")
    model = result.pop("model", None)
    if not result["finished"]:
        return result
    report = evaluate_base(model, tokenizer, cfg.block_size, extras["report_windows"], extras["passkey_trials"])
    report.update(
        tokens_trained=result["steps"] * cfg.batch_size * cfg.gradient_accumulation_steps * cfg.block_size,
        tokens_this_session=result["tokens"],
        train_seconds_this_session=result["seconds"],
        tokens_per_second=result["tokens_per_second"],
        wall_seconds_this_session=time.perf_counter() - wall,
        resumed_from=cfg.resume_from_checkpoint,
        final_eval_loss=result["eval_loss"],
        final_eval_perplexity=math.exp(min(result["eval_loss"], 50)),
        command=command,
        mixture=mix,
    )
    (out / "base_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return {
        **result,
        "report": {
            k: report[k]
            for k in (
                "bpc",
                "unigram_bpc",
                "bpc_vs_unigram",
                "perplexity",
                "zeroed_table_ratio",
                "passkey_accuracy",
                "targets",
            )
        },
    }


def main(argv: list[str] | None = None) -> None:
    import torch

    cfg, extras = parse_config(build_study_parser(), argv)
    torch.set_num_threads(extras["threads"])
    if extras["evaluate_only"]:
        result = evaluate_only(extras["evaluate_only"], extras["report_windows"], extras["passkey_trials"])
    else:
        result = pretrain_study_base(cfg, extras)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    run_cli(main)
