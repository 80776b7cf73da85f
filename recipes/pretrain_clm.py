"""Pretrain a small GPT-2-architecture model from scratch, with learned absolute positions, on local text.

No registry ships pretrained GPT-2 weights offline, so this makes the "pretrained checkpoint" that the swap study
converts (users with a GPU and the Hub would start from `gpt2`). Defaults train on the shipped books.

    python recipes/pretrain_clm.py --output_dir out/base --n_layer 4 --n_embd 256 --block_size 128
"""

from __future__ import annotations

import json
from typing import Any

from accelerate import PartialState

from hf_posenc.training import (
    CausalCollator,
    TrainConfig,
    build_parser,
    load_documents,
    load_tokenizer,
    parse_config,
    run_cli,
    tokenize_and_pack,
    train,
)
from hf_posenc.training.model import check_gpt2_shape, fresh_gpt2


def build_parser_with_shape():
    parser = build_parser(__doc__, {"learning_rate": 1e-3, "warmup_steps": 50, "output_dir": "outputs/base"})
    parser.add_argument("--n_layer", type=int, default=4, help="Transformer blocks.")
    parser.add_argument("--n_embd", type=int, default=256, help="Hidden size.")
    parser.add_argument("--n_head", type=int, default=4, help="Attention heads.")
    return parser


def pretrain_clm(cfg: TrainConfig, n_layer: int = 4, n_embd: int = 256, n_head: int = 4) -> dict[str, Any]:
    """A fresh GPT-2 with n_positions = cfg.block_size, trained on cfg's data and saved to cfg.output_dir."""
    import torch

    check_gpt2_shape(n_layer, n_embd, n_head)
    tokenizer = load_tokenizer(cfg.model_name_or_path, cfg.tokenizer_name)
    raw = load_documents(cfg.train_files, cfg.eval_files, cfg.dataset_name, cfg.dataset_config, cfg.text_column)
    data = tokenize_and_pack(raw, tokenizer, cfg.block_size, max_eval_blocks=cfg.max_eval_blocks)
    torch.manual_seed(cfg.seed)
    model = fresh_gpt2(tokenizer, cfg.block_size, n_layer, n_embd, n_head)
    return train(model, data.train, data.eval, cfg, CausalCollator(), tokenizer, project_name="pretrain_clm")


def main(argv: list[str] | None = None) -> None:
    cfg, shape = parse_config(build_parser_with_shape(), argv)
    result = pretrain_clm(cfg, **shape)
    result.pop("model", None)
    if PartialState().is_main_process:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_cli(main)
