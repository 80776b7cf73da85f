"""The recipes' settings: one dataclass, exposed as command-line flags and as YAML config keys."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RecipeError

TRAINABLE = ("all", "attention", "lora")


@dataclass
class TrainConfig:
    """Everything a fine-tuning or pretraining run needs. Flags override keys of a --config YAML file."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Hub id or local folder of the model."})
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer Hub id or folder (default: the model's own); hf_posenc:gpt2 is the GPT-2 tokenizer "
            "shipped with hf_posenc (pretrain_clm's default without --model_name_or_path)."
        },
    )
    encoding: str | None = field(default=None, metadata={"help": "Position encoding to convert to (none: keep)."})
    encoding_options: str | None = field(default=None, metadata={"help": "JSON options, e.g. '{\"theta\": 10000}'."})
    output_dir: str = field(default="outputs/run", metadata={"help": "Where the model, logs and checkpoints go."})
    train_files: list[str] | None = field(default=None, metadata={"help": "Local text files (one document each)."})
    eval_files: list[str] | None = field(default=None, metadata={"help": "Held-out local text files."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. wikitext."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config, e.g. wikitext-103-raw-v1."})
    text_column: str = field(default="text", metadata={"help": "Text column of the Hub dataset."})
    block_size: int = field(default=128, metadata={"help": "Training length in tokens."})
    batch_size: int = field(default=8, metadata={"help": "Blocks per device per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    position_lr_multiplier: float = field(
        default=1.0, metadata={"help": "Learning-rate factor for the new position parameters (e.g. T5 bias)."}
    )
    attention_lr_multiplier: float = field(
        default=1.0,
        metadata={"help": "Learning-rate factor for the attention modules' parameters (those transformers records "
                  "attentions from: GPT-2's q, k, v and output; BERT's q, k, v), e.g. to relearn where to look after "
                  "a swap faster than the rest changes."},
    )  # fmt: skip
    lr_scheduler: str = field(default="cosine", metadata={"help": "transformers scheduler name (linear, cosine...)."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps."})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps (default: one epoch)."})
    token_budget: int | None = field(default=None, metadata={"help": "Training tokens (overrides max_steps)."})
    trainable: str = field(default="all", metadata={"help": f"Which parameters train: {', '.join(TRAINABLE)}."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (trainable=lora)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (trainable=lora)."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (Accelerate)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Masked-LM masking rate (finetune_mlm)."})
    # conversion-aware fine-tuning (hf_posenc.training.recovery); the teacher is the model before conversion
    recovery: bool = field(
        default=True,
        metadata={"help": "After the swap --encoding makes, with no method below set, the fine-tuning recipes train "
                  "with attention transfer from the original (weight 1) where it can run (else they warn and train "
                  "plainly); --no-recovery: the LM loss alone. Methods set below always apply."},
    )  # fmt: skip
    lm_weight: float = field(default=1.0, metadata={"help": "Weight of the LM loss (0: distillation alone)."})
    distill_weight: float = field(
        default=0.0, metadata={"help": "Weight of KL(original || converted) on the logits inside the window (0: off)."}
    )
    distill_temperature: float = field(default=2.0, metadata={"help": "Distillation temperature (loss x T^2)."})
    attention_transfer_weight: float = field(
        default=0.0, metadata={"help": "Weight of the KL between the original's and the model's attention (0: off)."}
    )
    attention_transfer_heads: str | None = field(
        default=None, metadata={"help": "Heads for attention transfer: 'L' or 'L:H', comma-separated (default: all)."}
    )
    gradual_swap_steps: float = field(
        default=0, metadata={"help": "Steps (or fraction of the run if < 1) the old table fades out over (0: off)."}
    )
    gradual_swap_schedule: str = field(default="linear", metadata={"help": "Gradual swap fade: linear or cosine."})
    freeze_trained_positions: bool = field(
        default=False, metadata={"help": "learned only: the pretrained rows stay frozen, the new ones train."}
    )
    teacher_name_or_path: str | None = field(
        default=None, metadata={"help": "The unconverted original (default: the model as it was before conversion)."}
    )
    log_every: int = field(default=10, metadata={"help": "Log loss and tokens/s every N steps."})
    eval_every: int = field(default=0, metadata={"help": "Evaluate every N steps (0: only at the end)."})
    max_eval_blocks: int = field(default=64, metadata={"help": "Held-out blocks used by periodic evaluation."})
    save_every: int = field(default=0, metadata={"help": "accelerator.save_state every N steps (0: never)."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "Checkpoint folder, or 'latest'."})
    stop_after_steps: int | None = field(default=None, metadata={"help": "Stop early after N steps (then resume)."})
    record_batches: bool = field(default=False, metadata={"help": "Write the block ids each process trained on."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is present."})
    progress: bool = field(
        default=True, metadata={"help": "Show progress bars (--no-progress also hides transformers' and datasets')."}
    )
    report_to: str = field(
        default="none",
        metadata={
            "help": "Experiment trackers (Accelerate's): none, all (every one installed), or names, e.g. tensorboard "
            "or tensorboard,wandb (also aim, clearml, comet_ml, dvclive, mlflow, swanlab, trackio)."
        },
    )

    def options(self) -> dict[str, Any]:
        """The parsed --encoding_options."""
        if not self.encoding_options:
            return {}
        if isinstance(self.encoding_options, dict):
            return dict(self.encoding_options)
        try:
            value = json.loads(self.encoding_options)
        except json.JSONDecodeError as err:
            raise RecipeError(f"--encoding_options is not valid JSON ({err.msg}): {self.encoding_options!r}") from None
        if not isinstance(value, dict):
            raise RecipeError(f"--encoding_options must be a JSON object, got {self.encoding_options!r}.")
        return value

    def check(self) -> TrainConfig:
        if self.trainable not in TRAINABLE:
            raise RecipeError(f"--trainable must be one of {', '.join(TRAINABLE)}, got {self.trainable!r}.")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise RecipeError(f"--mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}.")
        for name in ("block_size", "batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise RecipeError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise RecipeError(f"--learning_rate must be positive, got {self.learning_rate}.")
        for name in ("position_lr_multiplier", "attention_lr_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise RecipeError(f"--{name} must be a number >= 0, got {value!r}.")
        self.options()
        trackers(self.report_to)
        from .recovery.settings import check_recovery

        check_recovery(self)
        return self


def trackers(report_to: str | None) -> list[str]:
    """The experiment trackers `--report_to` names: [] for "none"; for "all", every tracker Accelerate supports that
    is installed; else the comma-separated names. A name Accelerate does not know, or a tracker that is not installed
    (which Accelerate would skip without a word), is a RecipeError, raised before anything runs."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    names = list(dict.fromkeys(name.strip() for name in (report_to or "none").split(",") if name.strip()))
    if names in ([], ["none"]):
        return []
    installed = [str(tracker) for tracker in get_available_trackers()]
    known = ["all", *sorted(LOGGER_TYPE_TO_CLASS)]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise RecipeError(f"--report_to: unknown tracker(s) {unknown}; use none, or one or more of {known}.")
    missing = [name for name in names if name not in installed and name != "all"]
    if missing:
        raise RecipeError(f"--report_to {','.join(missing)}: not installed (pip install {' '.join(missing)}).")
    if "all" in names and not installed:
        raise RecipeError("--report_to all: no tracker is installed (e.g. pip install tensorboard).")
    return installed if "all" in names else names


def build_parser(description: str, defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field, plus --config for a YAML file of the same keys."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file whose keys are these flags' names (flags override it).")
    defaults = defaults or {}
    for f in dataclasses.fields(TrainConfig):
        default = defaults.get(f.name, f.default)
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif "list" in str(f.type):
            parser.add_argument(f"--{f.name}", nargs="+", default=default, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            parser.add_argument(f"--{f.name}", type=kind, default=default, help=help_text)
    return parser


def silence_progress_bars() -> None:
    """Hide transformers' progress bars (loading, downloads) and datasets' (load_dataset, map) for this process:
    what --no-progress asks for, beyond the recipes' own training bar."""
    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def parse_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[TrainConfig, dict[str, Any]]:
    """Parse flags; keys of --config fill in whatever the command line did not set.

    Returns the TrainConfig and a dict of the recipe's own extra flags (those that are not TrainConfig fields).
    """
    import yaml

    first, _ = parser.parse_known_args(argv)
    if first.config:
        path = Path(first.config)
        if not path.is_file():
            raise RecipeError(f"Config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise RecipeError(f"{path} is not valid YAML: {err}") from None
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecipeError(f"Unknown key(s) in {path}: {unknown}. Known keys are the flags of --help.")
        parser.set_defaults(**values)
    args = vars(parser.parse_args(argv))
    args.pop("config", None)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extras = {key: value for key, value in args.items() if key not in fields}
    cfg = TrainConfig(**{key: value for key, value in args.items() if key in fields}).check()
    if not cfg.progress:
        silence_progress_bars()
    from accelerate import PartialState

    PartialState(cpu=cfg.cpu)  # the process state, before data preparation waits on it (see data.main_process_first)
    return cfg, extras


def load_settings(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe's nested settings: a YAML file, then `key.sub=value` overrides (values parsed as YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"Config file not found: {path}")
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {err}") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise RecipeError(f"--set expects key=value (e.g. train.learning_rate=1e-3), got {item!r}.")
        target = settings
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                raise RecipeError(f"--set {key}: {part!r} is not a section of the settings.")
            target = target[part]
        target[leaf] = yaml.safe_load(value)
    return settings
