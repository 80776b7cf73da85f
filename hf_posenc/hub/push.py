"""Publish a converted checkpoint: one commit with every file of the saved folder (weights, config, code, card).

Tokens come from huggingface_hub's usual places (`HF_TOKEN`, `hf auth login`); they are never printed or stored here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi

from .card import card_for_repo
from .save import save_converted


class UploadError(RuntimeError):
    """The upload failed; the local checkpoint folder is complete and can be pushed again."""

    def __init__(self, folder: Path, repo_id: str, reason: str):
        self.folder = folder
        self.repo_id = repo_id
        super().__init__(
            f"Upload to {repo_id!r} failed: {reason}. The checkpoint is intact in {folder}; "
            f"retry with: hf-posenc push {folder} {repo_id}"
        )


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload every file under `folder` in one commit. Returns the commit URL.

    The uploaded model card names `repo_id` in its title and load snippets, also when the folder was saved without
    a repo id or for another one (the local README.md is left as it is)."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a saved checkpoint.")
    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=p) for p in files]
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        named = card_for_repo(text, repo_id)
        if named != text:
            index = next(i for i, op in enumerate(operations) if op.path_in_repo == "README.md")
            operations[index] = CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=named.encode("utf-8"))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id, operations=operations, commit_message=commit_message or "Upload model converted with hf_posenc"
        )
    except Exception as error:
        raise UploadError(folder, repo_id, _reason(error)) from error
    return str(getattr(info, "commit_url", info))


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    out_dir: str | Path | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    base_model: str | None = None,
    license: str | None = None,
    evaluation_dir: str | Path | None = None,
    private: bool | None = None,
    token: str | None = None,
    overwrite: bool = False,
    training: bool | dict[str, Any] | str | Path | None = None,
) -> str:
    """Save `model` with its model card to `out_dir` (default: `./<repo name>`), then upload that folder.

    `training`: whether and how the model was fine-tuned after the swap, for the card (see `save_converted`).

    If the upload fails, the saved folder stays and `UploadError` says how to retry.
    """
    folder = save_converted(
        model,
        out_dir or Path(repo_id.split("/")[-1]),
        tokenizer=tokenizer,
        max_length=max_length,
        base_model=base_model,
        license=license,
        evaluation_dir=evaluation_dir,
        repo_id=repo_id,
        overwrite=overwrite,
        training=training,
    )
    return push_folder(folder, repo_id, private=private, token=token)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts) or "__pycache__" in relative.parts


def _reason(error: Exception) -> str:
    """One line that names the failure without echoing request headers (and so never a token)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
