"""Save a converted model atomically: everything is written to a temporary sibling folder, then moved into place."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..convert import (
    check_max_length,
    declared_max_length,
    default_max_length,
    position_limit,
    unchanged_since_conversion,
)
from ..modeling.posenc_base import PositionEncodingError
from .card import EVALUATION_DIR, build_model_card

EVALUATION_FILES = ("results.json", "results.md", "*.png")


def save_converted(
    model: Any,
    out_dir: str | Path,
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
    base_model: str | None = None,
    license: str | None = None,
    evaluation_dir: str | Path | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
    training: bool | dict[str, Any] | str | Path | None = None,
) -> Path:
    """Write weights, config, remote code, tokenizer, evaluation files and a model card (README.md) to `out_dir`.

    `training` tells the card whether the model was fine-tuned after the swap: False (not), True, a dict (`data`,
    `steps`, `tokens`, `block_size`, `trainable`, `learning_rate`, `eval_loss`, ...) or the output folder of an
    hf_posenc training run (its train_config.json and metrics.jsonl are read); see `hf_posenc.hub.training_record`.
    Without it, a model converted in this process whose weights have not changed since is recorded as not
    fine-tuned, and any other model as not recorded.

    The declared maximum length (`saved_max_length`) goes into the saved config's position limit and the saved
    tokenizer's `model_max_length`; `model` and `tokenizer` themselves are left as they were.
    A failed save leaves no half-written checkpoint: `out_dir` is either the complete new checkpoint or untouched.
    """
    config = getattr(model, "config", None)
    if not str(getattr(config, "model_type", "")).startswith("posenc_"):
        raise PositionEncodingError("Only converted models can be saved this way: call hf_posenc.convert(...) first.")
    declared = saved_max_length(config, max_length, evaluation_dir)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose another folder or overwrite it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if training is None and unchanged_since_conversion(model):
        training = False
    staging = _new_folder(out.parent, f".{out.name}.partial-")
    try:
        with _temporarily(config, "max_position_embeddings", declared):
            model.save_pretrained(staging)
            if tokenizer is not None:
                save_tokenizer(tokenizer, staging, declared)
            evaluation = _copy_evaluation(Path(evaluation_dir), staging / EVALUATION_DIR) if evaluation_dir else None
            card = build_model_card(
                config,
                base_model=base_model,
                license=license,
                repo_id=repo_id,
                evaluation_dir=evaluation,
                training=training,
            )
        card.save(staging / "README.md")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def saved_max_length(config: Any, max_length: int | None = None, evaluation_dir: str | Path | None = None) -> int:
    """The maximum length a saved checkpoint declares: `max_length` when given; otherwise the longest of the
    length declared on the config (unless it is only conversion's default of 4x the trained window) and the
    longest length past the trained window that `evaluation_dir/results.json` reports as evaluated successfully;
    with neither, the config's declared length. Never past the `learned` table."""
    encoding, options = config.position_encoding, config.position_encoding_options or {}
    if max_length is not None:
        return check_max_length(max_length, encoding, options)
    current = declared_max_length(config)
    trained = int(config.trained_context_length)
    known = [] if current == default_max_length(encoding, options, trained) else [current]
    evaluated = longest_evaluated_length(Path(evaluation_dir)) if evaluation_dir else None
    if evaluated is not None and evaluated > trained:
        limit = position_limit(encoding, options)
        known.append(evaluated if limit is None else min(evaluated, limit))
    return max(known) if known else current


def longest_evaluated_length(folder: Path) -> int | None:
    """The longest length with status "ok" in an evaluation folder's results.json (`write_report`'s layout, or one
    `evaluate_long_context` result), or None when there is none."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    models = results.get("models") if isinstance(results, dict) else None
    evaluations = list(models.values()) if isinstance(models, dict) else [results]
    lengths = [
        int(record["length"])
        for evaluation in evaluations
        if isinstance(evaluation, dict)
        for record in evaluation.get("perplexity") or []
        if isinstance(record, dict) and record.get("status") == "ok" and isinstance(record.get("length"), int)
    ]
    return max(lengths, default=None)


def save_tokenizer(tokenizer: Any, folder: str | Path, max_length: int | None) -> None:
    """`tokenizer.save_pretrained(folder)` with `model_max_length = max_length` (None: as it is); the tokenizer
    object keeps its own value."""
    if max_length is None:
        tokenizer.save_pretrained(str(folder))
        return
    with _temporarily(tokenizer, "model_max_length", int(max_length)):
        tokenizer.save_pretrained(str(folder))


@contextlib.contextmanager
def _temporarily(target: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder made like `save_pretrained` makes its own (mode 0777 less the umask: usually
    0755), unlike `tempfile.mkdtemp` (0700), since it becomes the checkpoint folder."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def _copy_evaluation(source: Path, target: Path) -> Path:
    if not source.is_dir():
        raise FileNotFoundError(f"Evaluation folder {source} does not exist.")
    target.mkdir()
    for pattern in EVALUATION_FILES:
        for path in sorted(source.glob(pattern)):
            shutil.copy2(path, target / path.name)
    return target


def _move_into_place(staging: Path, out: Path) -> None:
    """Replace `out` by `staging` (same filesystem, so each rename is atomic)."""
    if not out.exists():
        os.replace(staging, out)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent))
    os.replace(out, previous / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(previous / out.name, out)
        raise
    shutil.rmtree(previous, ignore_errors=True)
