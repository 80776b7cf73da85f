"""The measured workloads: each returns a zero-argument callable that runs one unit of work on a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache


@dataclass(frozen=True)
class Case:
    """One workload: forward / train / prefill / decode at `seq_len` tokens of context, at its own `batch` size or
    (None) the shape's."""

    kind: str
    seq_len: int
    decode_steps: int = 8
    batch: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} T={self.seq_len}" + (f" B={self.batch}" if self.batch else "")

    @classmethod
    def from_label(cls, label: str) -> Case:
        kind, *fields = label.split()
        values = dict(field.split("=") for field in fields)
        return cls(kind, int(values["T"]), batch=int(values["B"]) if "B" in values else None)

    @property
    def higher_is_better(self) -> bool:
        """Forward, train and prefill report throughput; decode reports latency per token."""
        return self.kind != "decode"

    def tokens(self, batch: int) -> int:
        """Tokens processed by one call (decode: tokens generated)."""
        return batch * (self.decode_steps if self.kind == "decode" else self.seq_len)


def make_inputs(case: Case, batch: int, vocab: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, case.seq_len), generator=generator)


def workload(case: Case, model: nn.Module, input_ids: torch.Tensor, optimizer: torch.optim.Optimizer | None):
    """A callable running `case` once on `model` (a GPT-2 LM-head model, original or converted)."""
    if case.kind == "forward":
        return _forward(model, input_ids)
    if case.kind == "train":
        return _train_step(model, input_ids, optimizer)
    if case.kind == "prefill":
        return _prefill(model, input_ids)
    if case.kind == "decode":
        return _decode(model, input_ids, case.decode_steps)
    raise ValueError(f"Unknown benchmark case {case.kind!r}; expected forward, train, prefill or decode.")


def _forward(model: nn.Module, input_ids: torch.Tensor) -> Callable[[], None]:
    body = model.base_model  # the transformer without the LM head: where the position encoding lives

    def run() -> None:
        with torch.no_grad():
            body(input_ids, use_cache=False)

    return run


def _train_step(model: nn.Module, input_ids: torch.Tensor, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    def run() -> None:
        model.train()
        loss = model(input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.eval()

    return run


def _prefill(model: nn.Module, input_ids: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(input_ids, use_cache=True, logits_to_keep=1)

    return run


def _decode(model: nn.Module, input_ids: torch.Tensor, steps: int) -> Callable[[], None]:
    """Greedy-free decode: `steps` single-token forwards on a KV cache that ends at `seq_len` tokens (positions
    counted by the model, as `generate` leaves them to the bias encodings)."""
    prompt, next_tokens = input_ids[:, :-steps], input_ids[:, -steps:]
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(prompt, cache=cache, use_cache=True, logits_to_keep=1)
    prompt_length = prompt.shape[1]

    def run() -> None:
        cache.crop(prompt_length - cache.get_seq_length())  # back to the prompt: a negative count removes
        with torch.no_grad():
            for i in range(steps):
                model(next_tokens[:, i : i + 1], cache=cache, use_cache=True)

    return run


def shared_optimizer(variants: dict[str, nn.Module]) -> torch.optim.Optimizer:
    """One AdamW over every distinct parameter of every variant (they share most tensors); parameters
    without a gradient are skipped by AdamW, so each step costs what a step of that model alone costs."""
    seen: dict[int, nn.Parameter] = {}
    for model in variants.values():
        for parameter in model.parameters():
            seen.setdefault(id(parameter), parameter)
    return torch.optim.AdamW(list(seen.values()), lr=1e-5)
