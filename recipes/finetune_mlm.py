"""Fine-tune a BERT-family encoder with masked-LM after swapping its position encoding (Accelerate or `python`).

accelerate launch recipes/finetune_mlm.py --model_name_or_path bert-base-uncased --encoding rope --output_dir out/b
python recipes/finetune_mlm.py --config recipes/configs/finetune_mlm.yaml

After a swap (an --encoding other than learned) the model as it was before conversion teaches the converted one by
attention transfer (KL between their attention inside the old window; a second model in memory, eager attention)
unless --no-recovery or another method is set: --distill_weight (KL on the logits), --attention_transfer_weight,
--gradual_swap_steps (the old table fades out of the input over the first steps). See hf_posenc.training.recovery.
"""

from __future__ import annotations

import json
from typing import Any

from accelerate import PartialState

import hf_posenc
from hf_posenc.training import (
    MaskedCollator,
    TrainConfig,
    build_parser,
    check_block_size,
    load_documents,
    load_model,
    load_tokenizer,
    parse_config,
    run_cli,
    tokenize_and_pack,
    train,
)
from hf_posenc.training.errors import RecipeError
from hf_posenc.training.recovery import with_default_recovery


def finetune_mlm(cfg: TrainConfig, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Masked-LM fine-tuning at cfg.block_size tokens ([CLS] + block + [SEP]); returns the run summary."""
    from transformers import AutoModelForMaskedLM

    if tokenizer is None:
        tokenizer = load_tokenizer(cfg.model_name_or_path, cfg.tokenizer_name)
    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None:
        raise RecipeError("The tokenizer has no [MASK]/[CLS] token: masked-LM needs a BERT-style tokenizer.")
    model = model if model is not None else load_model(cfg, AutoModelForMaskedLM)
    check_block_size(model, cfg.block_size)
    cfg = with_default_recovery(cfg, model, cfg.block_size)  # after a swap: attention transfer unless --no-recovery
    trained = getattr(model.config, "trained_context_length", None)
    if cfg.encoding not in (None, "", "none", "original") and trained and cfg.block_size > trained:
        hf_posenc.declare_max_length(model, cfg.block_size)  # converted here and fine-tuned at block_size: declare it
    raw = load_documents(cfg.train_files, cfg.eval_files, cfg.dataset_name, cfg.dataset_config, cfg.text_column)
    data = tokenize_and_pack(raw, tokenizer, cfg.block_size - 2, max_eval_blocks=cfg.max_eval_blocks)
    collate = MaskedCollator(tokenizer, cfg.mlm_probability)
    return train(model, data.train, data.eval, cfg, collate, tokenizer, project_name="finetune_mlm")


def main(argv: list[str] | None = None) -> None:
    cfg, _ = parse_config(build_parser(__doc__, {"block_size": 512, "learning_rate": 1e-4}), argv)
    result = finetune_mlm(cfg)
    result.pop("model", None)
    if PartialState().is_main_process:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_cli(main)
