"""The model card (README.md) of a converted checkpoint: Hub metadata, how it was made, what to expect of it (inside
and past the trained window, the encoding's own limits), whether it was fine-tuned after the swap, how to load it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..modeling.posenc_base import get_encoding_class

HEADS = {  # head class name suffix: (Hub pipeline_tag or None, the Auto class that loads it)
    "LMHeadModel": ("text-generation", "AutoModelForCausalLM"),
    "ForCausalLM": ("text-generation", "AutoModelForCausalLM"),
    "ForConditionalGeneration": ("text2text-generation", "AutoModelForSeq2SeqLM"),
    "CLIPModel": ("zero-shot-image-classification", "AutoModel"),
    "ForMaskedLM": ("fill-mask", "AutoModelForMaskedLM"),
    "ForPreTraining": ("fill-mask", "AutoModelForPreTraining"),
    "ForSequenceClassification": ("text-classification", "AutoModelForSequenceClassification"),
    "ForTokenClassification": ("token-classification", "AutoModelForTokenClassification"),
    "ForQuestionAnswering": ("question-answering", "AutoModelForQuestionAnswering"),
    "ForMultipleChoice": (None, "AutoModelForMultipleChoice"),
    "ForNextSentencePrediction": (None, "AutoModelForNextSentencePrediction"),
}
BARE = ("feature-extraction", "AutoModel")
EVALUATION_DIR = "evaluation"
PLACEHOLDER = "path/to/this/checkpoint"  # the name a card loads from when it was saved without a repo id
UNNAMED = "Converted model"  # ... and its title
TRAINING_FIELDS = {  # keys of a `training` record: the row label in the card
    "data": "data",
    "steps": "optimizer steps",
    "tokens": "tokens trained on",
    "block_size": "sequence length (tokens)",
    "trainable": "parameters trained",
    "learning_rate": "peak learning rate",
    "recovery": "conversion-aware fine-tuning",
    "eval_loss": "held-out loss after fine-tuning",
    "finished": "finished",
}


def _head(architectures: list[str] | None) -> tuple[str | None, str]:
    name = (architectures or [""])[0]
    return next((head for suffix, head in HEADS.items() if name.endswith(suffix)), BARE)


def pipeline_tag_for(architectures: list[str] | None) -> str | None:
    """The Hub `pipeline_tag` of a head class name (bare models: feature-extraction; None where the Hub has none)."""
    return _head(architectures)[0]


def auto_class_for(architectures: list[str] | None) -> str:
    """The transformers Auto class that loads the saved head."""
    return _head(architectures)[1]


def base_license(source: str | None) -> str | None:
    """The licence in the base model's card (a local folder's README.md, or the Hub's when reachable), else None."""
    if not source:
        return None
    try:
        if Path(source).expanduser().exists():
            path = Path(source).expanduser() / "README.md"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "README.md"))
        license = ModelCard.load(path).data.license
    except Exception:  # no card, no network, or not a Hub id: the licence stays unknown
        return None
    return license if isinstance(license, str) else None


def build_model_card(
    config: Any,
    *,
    base_model: str | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    evaluation_dir: str | Path | None = None,
    training: bool | dict[str, Any] | str | Path | None = None,
    max_length_source: str | None = None,
) -> ModelCard:
    """A card for a converted model. `evaluation_dir` is the checkpoint's own `evaluation/` folder, if any:
    its `results.md` table and PNG plots are shown (paths relative to the checkpoint). `training` says whether the
    model was fine-tuned after the swap (see `training_record`). `base_model` goes into the metadata only when it is a
    Hub id; a local folder is named by its last part, never by its path. `max_length_source` says how the declared
    maximum length was chosen (`save_converted` passes it)."""
    encoding = config.position_encoding
    options = config.position_encoding_options or {}
    tag, auto = _head(getattr(config, "architectures", None))
    data = ModelCardData(
        base_model=base_model if _is_hub_id(base_model) else None,
        library_name="transformers",
        license=license,
        pipeline_tag=tag,
        tags=["hf_posenc", "position-encoding", encoding, config.model_type],
    )
    record = training_record(training)
    body = "\n".join(
        _body(config, encoding, options, auto, base_model, repo_id, evaluation_dir, record, max_length_source)
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def training_record(training: bool | dict[str, Any] | str | os.PathLike | None) -> dict[str, Any] | None:
    """What a card says about fine-tuning after the swap, from the `training` argument of `save_converted`,
    `push_to_hub` and `build_model_card`:

    - None: not recorded (`save_converted` itself passes False for a model converted in this process whose weights
      have not changed since);
    - False: not fine-tuned after the swap; True: fine-tuned, nothing more known;
    - a dict: fine-tuned, described by any of `TRAINING_FIELDS` (`data`, `steps`, `tokens`, `block_size`,
      `trainable`, `learning_rate`, `eval_loss`); other keys are shown as given;
    - a folder: the `output_dir` of an hf_posenc training run (the recipes; see `read_training_run`).

    Returns None or a dict with `fine_tuned` (bool) and the details."""
    if training is None:
        return None
    if isinstance(training, bool):
        return {"fine_tuned": training}
    if isinstance(training, (str, os.PathLike)):
        return {"fine_tuned": True, **read_training_run(training)}
    if isinstance(training, dict):
        return {"fine_tuned": True, **training}
    raise TypeError(f"training must be None, a bool, a dict or a training run's folder, got {type(training).__name__}.")


def read_training_run(folder: str | os.PathLike) -> dict[str, Any]:
    """The `training` record of an hf_posenc training run (`hf_posenc.training.train`, the recipes) from the
    `train_config.json` and `metrics.jsonl` it writes to its output_dir. Data files are named by file name only."""
    folder = Path(folder)
    config_path = folder / "train_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no train_config.json: not the output_dir of an hf_posenc training run.")
    cfg = json.loads(config_path.read_text())
    record: dict[str, Any] = {}
    if cfg.get("dataset_name"):
        record["data"] = " ".join(x for x in (cfg["dataset_name"], cfg.get("dataset_config")) if x)
    elif cfg.get("train_files"):
        names = [Path(str(f)).name for f in cfg["train_files"]]
        record["data"] = ", ".join(names[:3]) + (f" and {len(names) - 3} more files" if len(names) > 3 else "")
    metrics = folder / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    events = [json.loads(line) for line in lines if line.strip()]
    steps, per_step, start = 0, None, 0
    for event in events:
        if event.get("event") == "start":
            start = event.get("step", 0)
        elif event.get("event") in ("train", "end", "stopped"):
            steps = max(steps, event.get("step", 0))
        if event.get("event") == "train" and per_step is None and event.get("step", 0) > start:
            per_step = event["tokens"] / (event["step"] - start)  # tokens per optimizer step (a resumed run recounts)
    if steps:
        record["steps"] = steps
        if per_step:
            record["tokens"] = round(per_step * steps)
    record["block_size"] = cfg.get("block_size")
    trainable = cfg.get("trainable")
    record["trainable"] = f"lora (r={cfg.get('lora_r')})" if trainable == "lora" else trainable
    record["learning_rate"] = cfg.get("learning_rate")
    if any(key in cfg for key in ("distill_weight", "attention_transfer_weight", "gradual_swap_steps")):
        from ..training.recovery.settings import describe_recovery

        record["recovery"] = describe_recovery(cfg)
    losses = [event["eval_loss"] for event in events if event.get("eval_loss") is not None]
    if losses:
        record["eval_loss"] = losses[-1]
    if events and not any(event.get("event") == "end" for event in events):
        record["finished"] = "no (stopped early)"
    return {key: value for key, value in record.items() if value is not None}


def card_for_repo(text: str, repo_id: str) -> str:
    """A saved card's text made to name `repo_id`: the name its load snippets use (`PLACEHOLDER` when it was saved
    without a repo id, or another repo's) and its title. Everything else is left as it is."""
    found = re.search(r'from_pretrained\("([^"]+)"', text)
    if not found or found.group(1) == repo_id:
        return text
    old = found.group(1)
    text = text.replace(f'from_pretrained("{old}"', f'from_pretrained("{repo_id}"')
    old_title = UNNAMED if old == PLACEHOLDER else old.split("/")[-1]
    return text.replace(f"\n# {old_title}: ", f"\n# {repo_id.split('/')[-1]}: ", 1)


def _is_hub_id(name: str | None) -> bool:
    if not name:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def stack_directions(config: Any) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Each stack of a converted `config` by name ("" for a model with one stack): whether it is causal, and the
    options its encoding was built with (the shared ones, updated by the stack's own)."""
    from ..families import FAMILIES

    family = next((f for f in FAMILIES.values() if f.config_class.model_type == config.model_type), None)
    shared = dict(config.position_encoding_options or {})
    if family is None:
        return {"": (True, shared)}
    own = getattr(config, "stack_position_encoding_options", None) or {}
    stacks = family.stack_layout(config)
    return {name: (stack.causal, {**shared, **own.get(name, {})}) for name, stack in stacks.items()}


def _limits(config: Any, encoding: str) -> list[str]:
    """The encoding's own limits, described for each stack's direction: one line when every stack reads the same."""
    encoding_cls = get_encoding_class(encoding)
    stacks = stack_directions(config)
    lines = {name: encoding_cls.describe_limits(options, causal) for name, (causal, options) in stacks.items()}
    if len(set(lines.values())) == 1:
        return [f"- **Limits of `{encoding}`**: {next(iter(lines.values()))}"]
    return [f"- **Limits of `{encoding}`**, stack by stack:"] + [
        f"  - the {name} ({_direction(stacks[name][0])}): {line}" for name, line in lines.items()
    ]


def _direction(causal: bool) -> str:
    return "causal" if causal else "bidirectional"


def _body(config, encoding, options, auto, base_model, repo_id, evaluation_dir, training, length_source) -> list[str]:
    name = repo_id or PLACEHOLDER
    encoding_cls = get_encoding_class(encoding)
    window = config.trained_context_length
    swapped = (
        f"its learned absolute position embeddings replaced by the **{encoding}** position encoding using "
        "`hf_posenc` (`pip install hf_posenc`)"
    )
    if _is_hub_id(base_model):
        intro = f"This model is [`{base_model}`](https://huggingface.co/{base_model}) with {swapped}."
    elif base_model:  # a local folder: its name only, never the path on the machine that saved it
        intro = f"This model is `{Path(base_model).name}` with {swapped}."
    else:
        intro = f"This `{config.model_type}` model had {swapped}. Its base model was not recorded."
    if encoding_cls.keeps_trained_window(options) and options.get("method") == "anchor":
        stride = options["max_positions"] // window
        in_window = (
            f"unchanged by the conversion for inputs that fit it: the base model's {window} position rows sit at "
            f"every {stride}th row of the new table, and an input of at most {window} tokens reads exactly those, so "
            "it computes what the base model did. A longer input reads every row, its first tokens included."
        )
    elif encoding_cls.keeps_trained_window(options):
        in_window = (
            f"unchanged by the conversion: the first {window} rows of the position table are the base model's, so "
            f"up to {window} tokens the converted model computes exactly what the base model did."
        )
    else:
        signal = "no position signal at all" if encoding_cls.kind == "none" else "a different position signal"
        in_window = (
            f"changed by the conversion. The weights were trained with learned absolute positions and `{encoding}` "
            f"gives them {signal}, so short inputs lose quality too: the trained window is where the swap costs "
            "first, and what fine-tuning after the swap has to recover."
        )
    lines = [
        f"# {repo_id.split('/')[-1] if repo_id else UNNAMED}: {encoding} position encoding",
        "",
        intro,
        "",
        "## How it was converted",
        "",
        "```python",
        "import hf_posenc",
        f"hf_posenc.convert(model, {encoding!r}{''.join(f', {k}={v!r}' for k, v in options.items())})",
        "```",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| model type | `{config.model_type}` ({', '.join(config.architectures or [])}) |",
        f"| position encoding | `{encoding}` |",
        f"| options | `{json.dumps(options, sort_keys=True)}` |",
        f"| trained context length | {config.trained_context_length} tokens |",
        *_stacks_row(config),
        f"| declared maximum length | {config.max_position_embeddings} tokens (`max_position_embeddings`) |",
        *([f"| how that length was chosen | {_value(length_source)} |"] if length_source else []),
        "",
        "## What to expect",
        "",
        f"- **Inside the trained window** ({window} tokens): {in_window}",
        *_limits(config, encoding),
        "",
        *_training_section(training),
        "",
        "## How to load it",
        "",
        "With plain transformers (the modeling code ships in this repository):",
        "",
        "```python",
        f"from transformers import {auto}",
        f'model = {auto}.from_pretrained("{name}", trust_remote_code=True)',
        "```",
        "",
        "With hf_posenc installed, no remote code is needed:",
        "",
        "```python",
        "import hf_posenc  # registers the converted model types",
        f"from transformers import {auto}",
        f'model = {auto}.from_pretrained("{name}")',
        "```",
    ]
    evaluation = _evaluation_section(Path(evaluation_dir)) if evaluation_dir else []
    lines += evaluation or ["", "## Evaluation", "", "No evaluation was attached to this checkpoint when it was saved."]
    return lines + [""]


def _stacks_row(config: Any) -> list[str]:
    """A table row naming each stack and its direction, for a model with several (an encoder-decoder)."""
    stacks = stack_directions(config)
    if len(stacks) < 2:
        return []
    named = ", ".join(f"`{name}` ({_direction(causal)})" for name, (causal, _) in stacks.items())
    return [f"| stacks, each with its own `{config.position_encoding}` encoding | {named} |"]


def _training_section(training: dict[str, Any] | None) -> list[str]:
    lines = ["## Fine-tuning after the swap", ""]
    if training is None:
        return lines + [
            "Not recorded: nothing says whether this checkpoint was fine-tuned after the swap. A checkpoint saved "
            "right after conversion has not learned its new encoding yet."
        ]
    if not training.get("fine_tuned"):
        return lines + [
            "**None.** These are the base model's weights with the new encoding, as `hf_posenc.convert` left them: "
            "the model has not learned its new encoding yet. Fine-tune it before you judge it."
        ]
    details = {key: value for key, value in training.items() if key != "fine_tuned" and value is not None}
    lines.append("**Yes**" + (":" if details else "; no details were recorded."))
    if details:
        lines += ["", "| | |", "| --- | --- |"]
        ordered = [key for key in TRAINING_FIELDS if key in details] + [k for k in details if k not in TRAINING_FIELDS]
        lines += [f"| {TRAINING_FIELDS.get(key, key)} | {_value(details[key])} |" for key in ordered]
    return lines


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _evaluation_section(folder: Path) -> list[str]:
    table = folder / "results.md"
    plots = sorted(folder.glob("*.png"))
    if not table.is_file() and not plots:
        if (folder / "results.json").is_file():  # e.g. evaluated without matplotlib: no table or plots drawn
            return [
                "",
                "## Evaluation",
                "",
                f"The results are in [`{EVALUATION_DIR}/results.json`]({EVALUATION_DIR}/results.json).",
            ]
        return []
    lines = ["", "## Evaluation", ""]
    if table.is_file():  # the Markdown table(s) of the report; its own headings and image links are left out
        rows = [line for line in table.read_text().splitlines() if line.startswith("|")]
        lines += [*rows, ""] if rows else []
    lines += [f"![{plot.stem}]({EVALUATION_DIR}/{plot.name})" for plot in plots]
    return lines
