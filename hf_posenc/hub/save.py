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

    The declared maximum length (`saved_max_length`: `max_length`, a length declared on the model, or the longest
    length this model's evaluation in `evaluation_dir` validates) goes into the saved config's position limit and the
    saved tokenizer's `model_max_length`, and the card says how it was chosen; `model` and `tokenizer` themselves are
    left as they were.
    A failed save leaves no half-written checkpoint: `out_dir` is either the complete new checkpoint or untouched.
    """
    config = getattr(model, "config", None)
    if not str(getattr(config, "model_type", "")).startswith("posenc_"):
        raise PositionEncodingError("Only converted models can be saved this way: call hf_posenc.convert(...) first.")
    out = Path(out_dir).expanduser().resolve()
    names = (out.name, repo_id.split("/")[-1]) if repo_id else (out.name,)
    declared, how = saved_max_length(config, max_length, evaluation_dir, names)
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
                max_length_source=how,
            )
        card.save(staging / "README.md")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# A length past the trained window counts as validated by an evaluation when the model's perplexity there is at most
# this many times its in-window perplexity (the same mode: chunks, sliding window or masked-LM).
VALIDATED_PERPLEXITY_FACTOR = 1.5


def saved_max_length(
    config: Any,
    max_length: int | None = None,
    evaluation_dir: str | Path | None = None,
    names: tuple[str, ...] = (),
) -> tuple[int, str]:
    """The maximum length a saved checkpoint declares, and how it was chosen (a sentence for the model card).

    `max_length` when given; otherwise the longer of the length declared on the config (unless it is only
    conversion's default) and the length `evaluation_dir/results.json` validates for this model (see
    `validated_length`; `names` are the names the model may have there); with neither, conversion's default
    (4x the trained window; `learned`: its table size). Never past the `learned` table."""
    encoding, options = config.position_encoding, config.position_encoding_options or {}
    if max_length is not None:
        return check_max_length(max_length, encoding, options), "given when the checkpoint was saved."
    current = declared_max_length(config)
    trained = int(config.trained_context_length)
    default = default_max_length(encoding, options, trained)
    known = [] if current == default else [(current, "declared on the model before saving (`declare_max_length`).")]
    why_not = ""
    if evaluation_dir:
        evaluated, how = validated_length(Path(evaluation_dir), config, names)
        if evaluated is None:
            why_not = f" {how}"
        else:
            limit = position_limit(encoding, options)
            known.append((evaluated if limit is None else min(evaluated, limit), how))
    if known:
        return max(known, key=lambda item: item[0])
    if encoding == "learned":
        return current, f"the size of the learned position table, not validated by an evaluation.{why_not}"
    return current, f"conversion's default, 4x the trained window, not validated by an evaluation.{why_not}"


def validated_length(folder: Path, config: Any, names: tuple[str, ...] = ()) -> tuple[int | None, str]:
    """The longest length past the trained window that this model's evaluation in `folder/results.json` validates:
    at it and at every evaluated length between it and the window, every mode scored there ran and has a perplexity
    of at most `VALIDATED_PERPLEXITY_FACTOR` times that mode's in-window perplexity (at the longest evaluated length
    within the window). Returns (that length or None, a sentence saying how it was found or why there is none).

    The model's evaluation is the result whose model description (`evaluate_long_context`'s `model`: type, encoding,
    options and trained window) matches `config`; when several do, the one of those named in `names`; when that still
    leaves several, PositionEncodingError (pass `max_length` to say which length to declare)."""
    path = folder / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, "The evaluation folder has no readable results.json."
    name, result = own_evaluation(results, config, names)
    if result is None:
        return None, "results.json has no evaluation of this model (its type, encoding, options and trained window)."
    window = int(config.trained_context_length)
    records = [r for r in result.get("perplexity") or [] if isinstance(r, dict) and isinstance(r.get("length"), int)]
    scored = [r for r in records if _scored(r)]
    reference: dict[Any, tuple[int, float]] = {}  # mode: (length, perplexity) of the longest in-window measurement
    for record in scored:
        if record["length"] <= window and record["length"] >= reference.get(record.get("mode"), (0, 0.0))[0]:
            reference[record.get("mode")] = (record["length"], float(record["perplexity"]))
    if not reference:
        return None, "Its evaluation has no perplexity within the trained window to compare longer lengths with."
    validated = None
    for length in sorted({r["length"] for r in records if r["length"] > window}):
        at_length = [r for r in records if r["length"] == length]
        if not all(
            _scored(r)
            and r.get("mode") in reference
            and r["perplexity"] <= VALIDATED_PERPLEXITY_FACTOR * reference[r.get("mode")][1]
            for r in at_length
        ):
            break
        validated = length
    source = f"`{EVALUATION_DIR}/results.json`{f', model `{name}`' if name else ''}"
    criterion = f"perplexity within {VALIDATED_PERPLEXITY_FACTOR:g}x of the in-window perplexity"
    if validated is None:
        return None, f"No evaluated length past the trained window kept its {criterion} ({source})."
    return validated, f"the longest evaluated length up to which every length kept its {criterion} ({source})."


def _scored(record: dict[str, Any]) -> bool:
    return record.get("status") == "ok" and isinstance(record.get("perplexity"), (int, float))


def own_evaluation(results: Any, config: Any, names: tuple[str, ...] = ()) -> tuple[str, dict[str, Any] | None]:
    """(name, result) of the model `config` describes in a results.json (`write_report`'s `{"models": {name:
    result}}`, or one `evaluate_long_context` result), matched by its model description; ("", None) when none
    matches; PositionEncodingError when several match and `names` does not single one out."""
    models = results.get("models") if isinstance(results, dict) else None
    if isinstance(models, dict):
        evaluations = {str(key): value for key, value in models.items() if isinstance(value, dict)}
    else:
        evaluations = {"": results} if isinstance(results, dict) else {}
    matches = {key: value for key, value in evaluations.items() if describes(value.get("model"), config)}
    if len(matches) > 1:
        named = {key: value for key, value in matches.items() if key in names}
        if len(named) != 1:
            raise PositionEncodingError(
                f"The evaluation's results.json holds several models like this one ({', '.join(sorted(matches))}) "
                "and none is named after the checkpoint; pass max_length (--max-length) to declare a length."
            )
        matches = named
    return next(iter(matches.items()), ("", None))


def describes(description: Any, config: Any) -> bool:
    """True when an evaluation's model description (`hf_posenc.evaluation.describe`) fits the converted `config`."""
    if not isinstance(description, dict):
        return False
    options = json.loads(json.dumps(config.position_encoding_options or {}, default=str))
    return (
        description.get("model_type") == config.model_type
        and description.get("position_encoding") == config.position_encoding
        and description.get("position_encoding_options") == options
        and description.get("trained_context_length") == int(config.trained_context_length)
    )


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
