"""A small byte-level BPE tokenizer trained with 🤗 tokenizers on the training books only (never the held-out ones).

GPT-2's 50k-token softmax dominates a small model's compute on CPU; a few thousand tokens are enough for the
study base. Training is deterministic: the same texts and vocabulary size give the same tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

EOS = "<|endoftext|>"


def train_bpe_tokenizer(
    vocab_size: int = 4096, books: Sequence[str] | None = None, texts: Iterable[str] | None = None
) -> Any:
    """A byte-level BPE (`<|endoftext|>` as bos/eos/pad/unk, id 0) as a transformers `PreTrainedTokenizerFast`.

    Trained on `texts` when given (tests use small slices), else on the shipped `books` (default: the training
    split of `default_split()`). Held-out books are refused, so evaluation text never shapes the vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from . import HELD_OUT, default_split, text

    if texts is None:
        books = tuple(books) if books is not None else default_split()["train"]
        leaked = sorted(set(books) & set(HELD_OUT))
        if leaked:
            raise ValueError(f"Held-out books cannot train the tokenizer: {', '.join(leaked)}.")
        texts = [text(book) for book in books]
    texts = list(texts)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS, model_max_length=int(1e9)
    )
