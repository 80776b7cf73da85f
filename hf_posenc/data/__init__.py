"""The default text (public-domain books) and GPT-2 tokenizer shipped with hf_posenc; see PROVENANCE.md."""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path
from typing import Any

BOOKS = (
    "tinyshakespeare",
    "austen_emma",
    "austen_mansfieldpark",
    "austen_prideprejudice",
    "austen_sensesensibility",
    "austen_persuasion",
    "austen_northangerabbey",
)
HELD_OUT = ("austen_persuasion", "austen_northangerabbey")
TITLES = {
    "tinyshakespeare": "tiny-shakespeare",
    "austen_emma": "Emma",
    "austen_mansfieldpark": "Mansfield Park",
    "austen_prideprejudice": "Pride and Prejudice",
    "austen_sensesensibility": "Sense and Sensibility",
    "austen_persuasion": "Persuasion",
    "austen_northangerabbey": "Northanger Abbey",
}


def default_split() -> dict[str, tuple[str, ...]]:
    """{"train": books, "eval": books}: held-out books are whole documents never seen in training."""
    return {"train": tuple(b for b in BOOKS if b not in HELD_OUT), "eval": HELD_OUT}


def text(book: str) -> str:
    """The full text of one shipped book."""
    if book not in BOOKS:
        raise ValueError(f"Unknown book {book!r}. Shipped books: {', '.join(BOOKS)}.")
    data = resources.files(__package__).joinpath("text", f"{book}.txt.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8")


def texts(split: str = "eval") -> list[str]:
    """The books of the default split ("train" or "eval"), one string per book."""
    return [text(book) for book in default_split()[split]]


def tokenizer_dir() -> Path:
    """Folder with the GPT-2 tokenizer files (vocab.json, merges.txt)."""
    return Path(str(resources.files(__package__).joinpath("tokenizer")))


def study_base_dir() -> Path:
    """Folder of the shipped study base: a GPT-2 (4 x 256, 256 learned positions, 4k byte-level BPE) pretrained on
    the training books by `recipes/pretrain_study_base.py`; `from_pretrained` loads it. Its README gives the command,
    the log and the measured quality."""
    return Path(str(resources.files(__package__).joinpath("study_base")))


def cache_dir() -> Path:
    """Where hf_posenc caches derived files (converted tokenizer, pretrained study base): $HF_POSENC_CACHE or
    ~/.cache/hf_posenc."""
    return Path(os.environ.get("HF_POSENC_CACHE") or Path.home() / ".cache" / "hf_posenc")


def gpt2_tokenizer() -> Any:
    """GPT-2's byte-level BPE tokenizer, from the shipped files (no Hub access), with the pad token set to EOS.

    Building the fast tokenizer from vocab.json + merges.txt takes seconds; the result is cached as tokenizer.json.
    """
    from transformers import GPT2TokenizerFast

    cached = cache_dir() / "gpt2_tokenizer"
    if (cached / "tokenizer.json").is_file():
        tokenizer = GPT2TokenizerFast.from_pretrained(str(cached))
    else:
        tokenizer = GPT2TokenizerFast.from_pretrained(str(tokenizer_dir()))
        try:
            tokenizer.save_pretrained(str(cached))
        except OSError:
            pass  # a read-only cache only costs the conversion time
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
