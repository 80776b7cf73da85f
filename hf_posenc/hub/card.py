"""The model card (README.md) of a converted checkpoint: Hub metadata plus how it was made and how to load it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

HEADS = {  # head class name suffix: (Hub pipeline_tag or None, the Auto class that loads it)
    "LMHeadModel": ("text-generation", "AutoModelForCausalLM"),
    "ForCausalLM": ("text-generation", "AutoModelForCausalLM"),
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
) -> ModelCard:
    """A card for a converted model. `evaluation_dir` is the checkpoint's own `evaluation/` folder, if any:
    its `results.md` table and PNG plots are shown (paths relative to the checkpoint)."""
    encoding = config.position_encoding
    options = config.position_encoding_options or {}
    tag, auto = _head(getattr(config, "architectures", None))
    data = ModelCardData(
        base_model=base_model,
        library_name="transformers",
        license=license,
        pipeline_tag=tag,
        tags=["hf_posenc", "position-encoding", encoding, config.model_type],
    )
    body = "\n".join(_body(config, encoding, options, auto, base_model, repo_id, evaluation_dir))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _body(config, encoding, options, auto, base_model, repo_id, evaluation_dir) -> list[str]:
    name = repo_id or "path/to/this/checkpoint"
    source = f"[`{base_model}`](https://huggingface.co/{base_model})" if base_model else "a local checkpoint"
    lines = [
        f"# {repo_id.split('/')[-1] if repo_id else 'Converted model'}: {encoding} position encoding",
        "",
        f"This model is {source} with its learned absolute position embeddings replaced by the "
        f"**{encoding}** position encoding using `hf_posenc` (`pip install hf_posenc`).",
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
        f"| declared maximum length | {config.max_position_embeddings} tokens (`max_position_embeddings`) |",
        "",
        f"The weights were trained with {config.trained_context_length}-token contexts. Relative encodings run on "
        "longer inputs, but quality past the trained length depends on fine-tuning after the swap.",
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
    lines += _evaluation_section(Path(evaluation_dir)) if evaluation_dir else []
    return lines + [""]


def _evaluation_section(folder: Path) -> list[str]:
    table = folder / "results.md"
    plots = sorted(folder.glob("*.png"))
    if not table.is_file() and not plots:
        return []
    lines = ["", "## Evaluation", ""]
    if table.is_file():  # the Markdown table(s) of the report; its own headings and image links are left out
        rows = [line for line in table.read_text().splitlines() if line.startswith("|")]
        lines += [*rows, ""] if rows else []
    lines += [f"![{plot.stem}]({EVALUATION_DIR}/{plot.name})" for plot in plots]
    return lines
