"""Training data: documents from the shipped books, local text files or a Hub dataset, tokenised with
`datasets.map` (cached) and packed into fixed-length blocks; held-out documents stay whole for evaluation."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import RecipeError


@dataclass
class TextData:
    """Training blocks, evaluation blocks, and the raw held-out documents (for long-context evaluation)."""

    train: Any  # datasets.Dataset with "input_ids" (and "block" index) of block_size tokens
    eval: Any
    eval_texts: list[str]


def shipped_files(split: str) -> list[str]:
    """Paths of the shipped books of the default split ("train" or "eval")."""
    from .. import data

    root = resources.files(data.__name__).joinpath("text")
    return [str(root.joinpath(f"{book}.txt.gz")) for book in data.default_split()[split]]


def validation_split(books: list[str]) -> tuple[list[str], list[str]]:
    """(train files, validation files): the shipped training books with `books` taken out as the validation split."""
    from .. import data

    train = data.default_split()["train"]
    unknown = sorted(set(books) - set(train))
    if unknown:
        raise RecipeError(f"validation_books: {unknown} are not shipped training books; those are {list(train)}.")
    if set(train) <= set(books):
        raise RecipeError("validation_books takes every training book: leave at least one to train on.")
    files = dict(zip(train, shipped_files("train"), strict=True))
    return [files[b] for b in train if b not in books], [files[b] for b in train if b in books]


ARTICLE_HEADING = re.compile(r"^ ?= [^=].* = ?$")  # wikitext's top-level title row: " = Title = "


def is_paragraph_split(rows: list[str]) -> bool:
    """True when rows look like wikitext's: paragraphs and blank rows under " = Title = " heading rows."""
    return any(ARTICLE_HEADING.match(row.rstrip("\n")) for row in rows)


def group_articles(rows: list[str]) -> list[str]:
    """Join paragraph rows into whole articles, each starting at a top-level heading row (wikitext's layout)."""
    articles: list[list[str]] = []
    for row in rows:
        if ARTICLE_HEADING.match(row.rstrip("\n")) or not articles:
            articles.append([])
        articles[-1].append(row)
    return [text for text in ("".join(parts) for parts in articles) if text.strip()]


def load_documents(
    train_files: list[str] | None = None,
    eval_files: list[str] | None = None,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    text_column: str = "text",
    validation_books: list[str] | None = None,
) -> Any:
    """A DatasetDict {"train", "eval"} with one row per document in column "text".

    Local files: one document per file. A Hub dataset (or a local dataset folder): its train split, and its
    validation (or test) split; rows that are paragraphs under wikitext-style " = Title = " headings are joined into
    whole articles, so that long-context evaluation finds long documents.
    Neither: the shipped books (train: tiny-shakespeare + four Austen novels; eval: two other novels).
    `validation_books` (names of shipped training books): those books are the eval split and the others the train
    split, a validation split for choosing settings that leaves the held-out books unread.
    """
    import datasets

    if validation_books:
        if train_files or eval_files or dataset_name:
            raise RecipeError("validation_books splits the shipped training books: give no files or dataset with it.")
        train_files, eval_files = validation_split(validation_books)
    if dataset_name:
        try:
            raw = datasets.load_dataset(dataset_name, dataset_config)
        except Exception as err:  # noqa: BLE001 - datasets raises many types; one message is enough
            raise RecipeError(f"Could not load dataset {dataset_name!r} ({dataset_config}): {err}") from None
        held_out = next((s for s in ("validation", "test") if s in raw), None)
        if "train" not in raw or held_out is None:
            raise RecipeError(f"Dataset {dataset_name!r} needs a train split and a validation or test split.")
        raw = datasets.DatasetDict({"train": raw["train"], "eval": raw[held_out]})
        if text_column not in raw["train"].column_names:
            raise RecipeError(f"Dataset {dataset_name!r} has no column {text_column!r}: {raw['train'].column_names}.")
        raw = raw.select_columns(text_column)
        raw = raw.rename_column(text_column, "text") if text_column != "text" else raw
        if is_paragraph_split(raw["train"][:1000]["text"]):  # one row per paragraph: documents are the articles
            with main_process_first():  # datasets caches the grouping, as it caches tokenisation
                raw = raw.map(
                    lambda rows: {"text": group_articles(rows["text"])},
                    batched=True,
                    batch_size=None,
                    remove_columns=["text"],
                )
        return raw
    if bool(train_files) != bool(eval_files):
        raise RecipeError("Give both --train_files and --eval_files (held-out documents), or neither.")
    files = {"train": train_files or shipped_files("train"), "eval": eval_files or shipped_files("eval")}
    for path in (p for paths in files.values() for p in paths):
        if not Path(path).is_file():
            raise RecipeError(f"File not found: {path}")
    raw = datasets.load_dataset("text", data_files=files, sample_by="document")
    for split in ("train", "eval"):
        if not any(text.strip() for text in raw[split]["text"]):
            raise RecipeError(f"The {split} data is empty: {', '.join(files[split])}.")
    return raw


def tokenize_and_pack(
    raw: Any, tokenizer: Any, block_size: int, num_proc: int | None = None, max_eval_blocks: int | None = 64
) -> TextData:
    """Tokenise every document (cached by datasets), then cut the concatenated stream into `block_size` blocks.

    Documents are joined (with EOS between them), so a block may span several documents. Raises RecipeError when
    the training data cannot fill one block.
    """
    if block_size < 2:
        raise RecipeError(f"Block size must be at least 2, got {block_size}.")
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    saved_max = tokenizer.model_max_length
    tokenizer.model_max_length = int(1e12)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [seq + [eos] if eos is not None else seq for seq in ids], "length": [len(s) for s in ids]}

    def pack(batch: dict[str, list]) -> dict[str, list]:
        stream = [token for seq in batch["input_ids"] for token in seq]
        usable = (len(stream) // block_size) * block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

    with main_process_first():
        try:
            tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names, num_proc=num_proc)
        finally:
            tokenizer.model_max_length = saved_max
        # packing joins documents, so a block may be longer than any one document
        packed = tokenized.remove_columns("length").map(pack, batched=True, batch_size=1000)
    if max(tokenized["train"]["length"], default=0) == 0:
        raise RecipeError("The training data has no tokens.")
    if len(packed["train"]) == 0:
        total = sum(tokenized["train"]["length"])
        raise RecipeError(
            f"No training block of {block_size} tokens could be built: the training data has only {total} tokens. "
            "Use a smaller --block_size or more data."
        )
    train = packed["train"].add_column("block", list(range(len(packed["train"]))))
    evaluation = packed["eval"]
    if max_eval_blocks is not None and len(evaluation) > max_eval_blocks:
        step = len(evaluation) // max_eval_blocks
        evaluation = evaluation.select(range(0, step * max_eval_blocks, step))
    return TextData(
        train=train.with_format("torch"), eval=evaluation.with_format("torch"), eval_texts=list(raw["eval"]["text"])
    )


def main_process_first() -> contextlib.AbstractContextManager:
    """Under several processes, the main process fills the datasets cache first and the others then read it instead
    of racing to write it. Accelerate's process state must exist already (the recipes create it from --cpu while
    parsing flags, as an Accelerator would); without one this is a single process and nothing waits."""
    from accelerate import PartialState

    if not PartialState._shared_state:
        return contextlib.nullcontext()
    return PartialState().main_process_first()


class CausalCollator:
    """Stack blocks into input_ids with labels = input_ids (the model shifts them) and the attention mask of packed
    blocks, all ones: no token is padding, also where EOS (often the pad token too) starts or ends a block."""

    causal = True  # labels are predicted one position later

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = torch.stack([row["input_ids"] for row in rows])
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        if "block" in rows[0]:
            batch["block"] = torch.stack([torch.as_tensor(row["block"]) for row in rows])
        return batch


class MaskedCollator:
    """Wrap each block in [CLS] ... [SEP] and mask tokens with transformers' DataCollatorForLanguageModeling."""

    causal = False  # labels are predicted in place

    def __init__(self, tokenizer: Any, probability: float = 0.15):
        from transformers import DataCollatorForLanguageModeling

        self.tokenizer = tokenizer
        self.inner = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=probability)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        examples = [{"input_ids": [cls_id, *row["input_ids"].tolist(), sep_id]} for row in rows]
        batch = dict(self.inner(examples))
        if "block" in rows[0]:
            batch["block"] = torch.stack([torch.as_tensor(row["block"]) for row in rows])
        return batch


class DenoisingCollator:
    """BART's token-masking objective: each token of a block is replaced by `mask_id` with `probability`, and the
    labels are the whole original block, which the decoder reconstructs from `decoder_input_ids`: the labels shifted
    right after `decoder_start_token_id` (what the model would make from the labels, given here so that an evaluation
    that holds the labels back reads the same inputs). Masks are drawn from torch's global RNG, so a seeded
    evaluation (`evaluate_loss` forks and seeds it) is fixed."""

    causal = False  # labels are predicted in place: the decoder's logit at i reconstructs token i

    def __init__(self, mask_id: int, decoder_start_token_id: int, probability: float = 0.3):
        if not 0.0 < probability < 1.0:
            raise ValueError(f"The masking probability must be in (0, 1), got {probability}.")
        self.mask_id, self.start, self.probability = mask_id, decoder_start_token_id, probability

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = torch.stack([torch.as_tensor(row["input_ids"]) for row in rows])
        noise = torch.rand(ids.shape) < self.probability
        start = torch.full_like(ids[:, :1], self.start)
        batch = {
            "input_ids": ids.masked_fill(noise, self.mask_id),
            "decoder_input_ids": torch.cat((start, ids[:, :-1]), dim=1),
            "labels": ids.clone(),
        }
        if "block" in rows[0]:
            batch["block"] = torch.stack([torch.as_tensor(row["block"]) for row in rows])
        return batch
