"""Distillation that extends a converted sentence encoder, with the original model as the teacher.

Two kinds of training examples, cut from the training books:
- short: a span of at most one window (`chunk_length` tokens); the target is the teacher's own embedding of it, so
  embeddings inside the window stay where they were;
- long: a span of `long_length` tokens; the target is the teacher's chunk-and-mean-pool embedding of it (chunks of
  `chunk_length`), the best a windowed model does on a long text, now produced in one pass with full attention.

Each optimizer step takes one batch of each; the loss is 1 - cosine to the target, short plus `long_weight` x long.

With `contrastive_weight` > 0, a contrastive term teaches what a long document is about rather than to copy
chunking (after the inverse cloze task and E5's training, though here the query sentence stays in its document, so
word overlap helps): each long example also carries `queries_per_document` of its own sentences taken from random
depths, embedded by the teacher (so queries stay in the original's space, where an existing index's queries are),
and every query must find its own document among the batch's long documents (InfoNCE at `contrastive_temperature`,
the other documents of the batch as negatives).
Two more in-window terms compare the student with the original itself on each short batch (the teacher runs on it
as the student trains; an input that fits the window reads the same positions in both): `token_weight` x the mean
over its tokens of 1 - cosine between the student's and the teacher's last hidden state (token-level targets, a
denser signal than the pooled embedding), and `attention_transfer_weight` x the KL from the teacher's attention
distributions to the student's, every layer and head (the swap study's attention transfer, MiniLM's
self-attention distribution transfer; both models on eager attention for that pass).
Dropout stays off, as in the teacher that made the targets.
The teacher's targets are computed once, before any encoding trains, so every encoding sees the same examples.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .encode import chunk_mean, embed_ids, with_specials
from .sentence_model import SentenceEncoder

TRAINABLE = ("all", "new_positions")


@dataclass
class DistillConfig:
    steps: int = 60
    short_batch: int = 16
    long_batch: int = 2
    long_length: int = 1024
    chunk_length: int = 256
    min_short_tokens: int = 16
    learning_rate: float = 1e-4
    position_lr_multiplier: float = 1.0
    weight_decay: float = 0.01
    warmup_steps: int = 6
    long_weight: float = 1.0
    log_every: int = 10
    seed: int = 0
    cpu: bool = False
    trainable: str = "all"  # or "new_positions": only a `learned` table's rows that are not the pretrained ones
    contrastive_weight: float = 0.0  # weight of the query-to-document InfoNCE term on the long batch (0: off)
    contrastive_temperature: float = 0.05
    queries_per_document: int = 4  # sentences of each long example used as its queries
    token_weight: float = 0.0  # 1 - cosine to the teacher's last hidden state, per in-window token (0: off)
    attention_transfer_weight: float = 0.0  # KL to the teacher's in-window attention, every layer and head (0: off)

    def check(self) -> DistillConfig:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"train.trainable must be one of {', '.join(TRAINABLE)}, got {self.trainable!r}.")
        for name in ("steps", "short_batch", "long_batch", "long_length", "chunk_length", "min_short_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}.")
        if self.min_short_tokens > self.chunk_length - 2:
            raise ValueError(f"train.min_short_tokens ({self.min_short_tokens}) must fit in chunk_length - 2.")
        if self.learning_rate <= 0:
            raise ValueError(f"train.learning_rate must be positive, got {self.learning_rate}.")
        for name in ("long_weight", "contrastive_weight", "token_weight", "attention_transfer_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}.")
        if self.contrastive_weight > 0:
            if self.long_batch < 2:
                raise ValueError("train.contrastive_weight needs train.long_batch >= 2: a query's negatives are the "
                                 f"other long documents of its batch (long_batch is {self.long_batch}).")  # fmt: skip
            if self.contrastive_temperature <= 0 or self.queries_per_document < 1:
                raise ValueError("train.contrastive_temperature must be positive and train.queries_per_document at "
                                 "least 1.")  # fmt: skip
        return self

    @property
    def reads_teacher(self) -> bool:
        """Whether training runs the original alongside the student (the in-window token and attention terms)."""
        return self.token_weight > 0 or self.attention_transfer_weight > 0

    @property
    def data_key(self) -> tuple:
        """What `distillation_data` reads: configs with the same key share their examples."""
        queries = self.queries_per_document if self.contrastive_weight > 0 else 0
        return (self.steps, self.short_batch, self.long_batch, self.long_length, self.chunk_length,
                self.min_short_tokens, self.seed, queries)  # fmt: skip


def distillation_data(teacher: SentenceEncoder, texts: list[str], cfg: DistillConfig, progress: bool = False) -> dict:
    """The short and long examples with the teacher's targets: {"short"|"long": datasets.Dataset(input_ids,
    target)}, input_ids without special tokens."""
    from datasets import Dataset

    tokenizer = teacher.tokenizer
    books = [tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] for text in texts]
    books = [ids for ids in books if len(ids) > cfg.long_length]
    if not books:
        raise ValueError(f"No training text is longer than long_length ({cfg.long_length} tokens).")
    rng = random.Random(cfg.seed)
    specials = tokenizer.num_special_tokens_to_add(pair=False)

    def span(length: int) -> list[int]:
        ids = rng.choice(books)
        start = rng.randrange(0, len(ids) - length)
        return ids[start : start + length]

    short_room, long_room = cfg.chunk_length - specials, cfg.long_length - specials
    short = [span(rng.randint(cfg.min_short_tokens, short_room)) for _ in range(cfg.steps * cfg.short_batch)]
    long = [span(long_room) for _ in range(cfg.steps * cfg.long_batch)]
    short_targets = embed_ids(teacher, short, cfg.chunk_length, progress=progress, desc="teacher: short")
    long_targets = chunk_mean(teacher, long, cfg.chunk_length, progress=progress, desc="teacher: long")
    long_columns = {"input_ids": long, "target": long_targets.tolist()}
    if cfg.contrastive_weight > 0:
        full_stop = tokenizer(".", add_special_tokens=False)["input_ids"][-1]
        count = cfg.queries_per_document
        sentences = [s for ids in long for s in own_sentences(ids, full_stop, count, rng)]
        embedded = embed_ids(teacher, sentences, cfg.chunk_length, progress=progress, desc="teacher: queries")
        long_columns["queries"] = embedded.view(len(long), count, -1).tolist()
    return {
        "short": Dataset.from_dict({"input_ids": short, "target": short_targets.tolist()}),
        "long": Dataset.from_dict(long_columns),
    }


def own_sentences(ids: list[int], full_stop: int, count: int, rng: random.Random) -> list[list[int]]:
    """`count` sentences of `ids` (8 to 48 tokens between full stops) at random depths, distinct where it holds
    enough; where it holds none, 32-token spans at random places."""
    stops = [0, *(i + 1 for i, token in enumerate(ids) if token == full_stop)]
    sentences = [(a, b) for a, b in zip(stops, stops[1:]) if 8 <= b - a <= 48]
    if not sentences:
        starts = [rng.randrange(0, max(len(ids) - 32, 1)) for _ in range(count)]
        return [ids[a : a + 32] for a in starts]
    picks = rng.sample(sentences, count) if len(sentences) >= count else rng.choices(sentences, k=count)
    return [ids[a:b] for a, b in picks]


def contrastive_loss(queries: torch.Tensor, documents: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of each document's queries (B x Q x D) against the documents (B x D): query j of document i must rank
    document i first among the B documents by cosine / `temperature`."""
    batch, per_document, _ = queries.shape
    scores = (
        torch.nn.functional.normalize(queries.flatten(0, 1), dim=-1)
        @ torch.nn.functional.normalize(documents, dim=-1).T
    )
    labels = torch.arange(batch, device=documents.device).repeat_interleave(per_document)
    return torch.nn.functional.cross_entropy(scores / temperature, labels)


def collate(tokenizer: Any):
    """Pad [CLS] ids [SEP] sequences to the longest of the batch; targets as a float tensor."""

    def run(rows: list[dict]) -> dict[str, torch.Tensor]:
        inputs = with_specials(tokenizer, [row["input_ids"] for row in rows])
        longest = max(len(ids) for ids in inputs)
        ids = torch.full((len(rows), longest), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(inputs):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        batch = {"input_ids": ids, "attention_mask": mask, "target": torch.tensor([row["target"] for row in rows])}
        if "queries" in rows[0]:
            batch["queries"] = torch.tensor([row["queries"] for row in rows])
        return batch

    return run


def train_only_new_positions(model: torch.nn.Module) -> list[Any]:
    """Freeze every parameter of `model` but its `learned` position table, and in the table the rows that are the
    pretrained ones (`kept_rows`; with method 'anchor', every k-th); returns the gradient hooks' handles. Inputs that
    fit the old window then keep the original's embeddings exactly, however long the training ('anchor')."""
    from ..training.errors import RecipeError
    from ..training.recovery.anchors import freeze_rows, kept_rows

    try:
        rows = kept_rows(model)
    except RecipeError as err:
        raise ValueError(f"train.trainable new_positions: {err}") from None
    model.requires_grad_(False)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("position_encoding" in name)
    return freeze_rows(model, rows)


def token_cosine_loss(student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked tokens of 1 - cosine between the student's and the teacher's hidden states [B, T, H]."""
    cosine = torch.nn.functional.cosine_similarity(student.float(), teacher.float(), dim=-1)
    weights = attention_mask.to(cosine.dtype)
    return ((1 - cosine) * weights).sum() / weights.sum().clamp(min=1.0)


def in_window_terms(
    model: torch.nn.Module,
    teacher: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    cfg: DistillConfig,
    unwrapped: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The student's last hidden state on a short batch, and the token and attention terms against the teacher's
    pass on the same inputs (`cfg` says which). `model` runs the student (as prepared, e.g. a DDP wrapper),
    `unwrapped` is the model inside it (default: `model`); for the attention term both models run on eager attention
    for this pass and are put back on their own backend afterwards, also when the pass fails."""
    from ..training.recovery.attention import attention_kl, eager_attention

    attend = cfg.attention_transfer_weight > 0
    restores = []
    try:
        if attend:
            for module in (unwrapped or model, teacher):
                restores.append(eager_attention(module, dropout_off=False))
        with torch.no_grad():
            expected = teacher(**batch, output_attentions=attend)
        outputs = model(**batch, output_attentions=attend)
    finally:
        for restore in reversed(restores):
            restore()
    terms, mask = {}, batch["attention_mask"]
    if cfg.token_weight > 0:
        terms["token"] = token_cosine_loss(outputs.last_hidden_state, expected.last_hidden_state, mask)
    if attend:
        layers = dict.fromkeys(range(len(outputs.attentions)))
        terms["attention"] = attention_kl(outputs.attentions, expected.attentions, mask.bool(), layers)
    return outputs.last_hidden_state, terms


def distill(
    student: SentenceEncoder,
    data: dict,
    cfg: DistillConfig,
    log_path: Path | None = None,
    progress: bool = False,
    teacher: SentenceEncoder | None = None,
) -> dict[str, Any]:
    """Train `student.model` in place on `data` (from `distillation_data`) with Accelerate; returns the summary.
    `teacher` (the original) is read by the in-window token and attention terms, and required when they are on; its
    model is moved to the student's device and dtype, and not trained."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    from ..training import TrainConfig
    from ..training.loop import parameter_groups

    if cfg.reads_teacher and teacher is None:
        raise ValueError(
            "train.token_weight and train.attention_transfer_weight compare the student with the original: pass it as "
            "teacher=."
        )
    accelerator = Accelerator(cpu=cfg.cpu)
    set_seed(cfg.seed)
    handles = train_only_new_positions(student.model) if cfg.trainable == "new_positions" else []
    groups = parameter_groups(
        student.model,
        TrainConfig(
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            position_lr_multiplier=cfg.position_lr_multiplier,
        ),
    )
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    processes = accelerator.num_processes  # the prepared scheduler steps once per process (see training.loop.train)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=cfg.warmup_steps * processes, num_training_steps=cfg.steps * processes
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    loaders = {
        kind: DataLoader(
            data[kind], batch_size=batch, shuffle=True, collate_fn=collate(student.tokenizer), generator=generator
        )
        for kind, batch in (("short", cfg.short_batch), ("long", cfg.long_batch))
    }
    model, optimizer, scheduler, short_loader, long_loader = accelerator.prepare(
        student.model, optimizer, scheduler, loaders["short"], loaders["long"]
    )
    student.model = model
    unwrapped = accelerator.unwrap_model(model)
    teacher_model = None
    if cfg.reads_teacher:  # the original itself, moved to the student's device and dtype (no copy of it is made)
        reference = next(unwrapped.parameters())
        teacher_model = teacher.model.to(device=reference.device, dtype=reference.dtype).eval()
    model.eval()  # dropout off: the targets are the teacher's exact embeddings, and the budget is short
    log = []
    started = time.perf_counter()
    tokens = 0
    iterators = {"short": iter(short_loader), "long": iter(long_loader)}
    bar = tqdm(range(cfg.steps), desc="distill", disable=not (progress and accelerator.is_main_process))
    for step in bar:
        losses = {}
        for kind, loader in (("short", short_loader), ("long", long_loader)):
            try:
                batch = next(iterators[kind])
            except StopIteration:
                iterators[kind] = iter(loader)
                batch = next(iterators[kind])
            target, queries = batch.pop("target"), batch.pop("queries", None)
            if kind == "short" and cfg.reads_teacher:
                hidden, terms = in_window_terms(model, teacher_model, batch, cfg, unwrapped)
                losses.update(terms)
            else:
                hidden = model(**batch).last_hidden_state
            embedding = student.pool(hidden, batch["attention_mask"])
            losses[kind] = (1 - torch.nn.functional.cosine_similarity(embedding, target, dim=-1)).mean()
            if queries is not None and cfg.contrastive_weight > 0:
                losses["contrastive"] = contrastive_loss(queries, embedding, cfg.contrastive_temperature)
            tokens += int(batch["attention_mask"].sum()) * processes
        loss = losses["short"] + cfg.long_weight * losses["long"]
        for term, weight in (("contrastive", cfg.contrastive_weight), ("token", cfg.token_weight),
                             ("attention", cfg.attention_transfer_weight)):  # fmt: skip
            if term in losses:
                loss = loss + weight * losses[term]
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        record = {"step": step + 1, **{f"{k}_loss": float(v.detach()) for k, v in losses.items()}}
        log.append(record)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            bar.set_postfix(short=f"{record['short_loss']:.4f}", long=f"{record['long_loss']:.4f}")
            if log_path is not None and accelerator.is_main_process:
                with log_path.open("a") as handle:
                    handle.write(json.dumps({**record, "tokens": tokens}) + "\n")
    student.model = accelerator.unwrap_model(model).eval()
    for handle in handles:
        handle.remove()
    seconds = time.perf_counter() - started
    tail = log[-max(1, cfg.log_every) :]
    extra = {}
    for term in ("contrastive", "token", "attention"):
        if f"{term}_loss" in log[0]:
            extra[f"first_{term}_loss"] = log[0][f"{term}_loss"]
            extra[f"final_{term}_loss"] = sum(r[f"{term}_loss"] for r in tail) / len(tail)
    return {
        **extra,
        "steps": cfg.steps,
        "tokens": tokens,
        "seconds": seconds,
        "final_short_loss": sum(r["short_loss"] for r in tail) / len(tail),
        "final_long_loss": sum(r["long_loss"] for r in tail) / len(tail),
        "first_short_loss": log[0]["short_loss"],
        "first_long_loss": log[0]["long_loss"],
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "finite": all(math.isfinite(value) for r in log for key, value in r.items() if key.endswith("_loss")),
    }
