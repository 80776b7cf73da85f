"""Save a converted model atomically: everything is written to a temporary sibling folder, then moved into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..modeling.posenc_base import PositionEncodingError
from .card import EVALUATION_DIR, build_model_card

EVALUATION_FILES = ("results.json", "results.md", "*.png")


def save_converted(
    model: Any,
    out_dir: str | Path,
    *,
    tokenizer: Any = None,
    base_model: str | None = None,
    license: str | None = None,
    evaluation_dir: str | Path | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write weights, config, remote code, tokenizer, evaluation files and a model card (README.md) to `out_dir`.

    A failed save leaves no half-written checkpoint: `out_dir` is either the complete new checkpoint or untouched.
    """
    config = getattr(model, "config", None)
    if not str(getattr(config, "model_type", "")).startswith("posenc_"):
        raise PositionEncodingError("Only converted models can be saved this way: call hf_posenc.convert(...) first.")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose another folder or overwrite it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        evaluation = _copy_evaluation(Path(evaluation_dir), staging / EVALUATION_DIR) if evaluation_dir else None
        card = build_model_card(
            model.config, base_model=base_model, license=license, repo_id=repo_id, evaluation_dir=evaluation
        )
        card.save(staging / "README.md")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


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
