"""A gradual swap: for the first K optimizer steps the old learned table still enters the input, added to the token
embeddings at each token's position and scaled from 1 to 0, while the new encoding is already active.

The table is added by wrapping the `embed` method of the model's position encoding on that one instance (every family
adds what `embed` returns where the old table was added), so it follows the real positions, with padding and a KV
cache too; rows past the old table add nothing. The wrapper is taken off when the scale reaches 0 and when the run
ends: the saved model is the plain converted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ...convert import original_record
from ...families import FAMILIES
from ...modeling.posenc_family import position_encodings
from ..errors import RecipeError
from .settings import LEARNED_SWAP


def swap_scale(step: int, steps: int, schedule: str) -> float:
    """The old table's scale at optimizer step `step` (0: before the first) of a swap over `steps`: 1 at 0, then
    linear or cosine down to 0 at `steps` and after."""
    if step >= steps:
        return 0.0
    progress = step / steps
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def old_tables(model: nn.Module, teacher: nn.Module | None) -> dict[str, torch.Tensor]:
    """{path of a position encoding in `model`: the learned table it replaced (its rows in use)}: what `convert`
    removed, or else the teacher's own table (a model with one position encoding)."""
    encoding = getattr(model.config, "position_encoding", None)
    if encoding is None:
        raise RecipeError("A gradual swap fades out the table a conversion removed: convert the model first.")
    if encoding == "learned":
        raise RecipeError(LEARNED_SWAP)
    record = original_record(model)
    if record is not None:
        return dict(record.tables)
    paths = list(position_encodings(model))
    if teacher is None or teacher.config.model_type not in FAMILIES or len(paths) != 1:
        raise RecipeError(
            "A gradual swap needs the table the conversion removed: convert the model in this process, or give its "
            "original (teacher=, --teacher_name_or_path) when the model has one position encoding."
        )
    tables = FAMILIES[teacher.config.model_type].absolute_tables(teacher.base_model)
    return {paths[0]: next(iter(tables.values())).detach()}


class GradualSwap:
    """The old tables added back to `embed`'s output, scaled by `swap_scale` over the run's first steps."""

    def __init__(self, tables: dict[str, torch.Tensor], steps: float, schedule: str):
        self.tables, self.requested, self.schedule = tables, steps, schedule
        self.steps, self.scale = 0, 1.0
        self.hooked: list[nn.Module] = []

    def resolve(self, total: int) -> None:
        """The swap's length in optimizer steps: `steps` itself, or that fraction of the run's `total` if below 1."""
        steps = self.requested if self.requested >= 1 else max(1, round(self.requested * total))
        if steps > total:
            raise RecipeError(f"--gradual_swap_steps {steps:g} is past the run's {total} optimizer steps.")
        self.steps = int(steps)

    def install(self, model: nn.Module) -> None:
        """Wrap `embed` of each replacing encoding of `model` (unwrapped of DDP and PEFT; a PEFT copy that trains in
        its place is what is wrapped)."""
        if self.hooked:
            return
        reference = next(model.parameters())
        for path, table in self.tables.items():
            owner_path, _, name = path.rpartition(".")
            target = getattr(model.get_submodule(owner_path), name)
            table = table.to(device=reference.device, dtype=reference.dtype)
            target.embed = self.faded(target.embed, table)
            self.hooked.append(target)

    def faded(self, inner: Callable, table: torch.Tensor) -> Callable:
        rows = table.shape[0]

        def embed(position_ids: torch.Tensor) -> torch.Tensor:
            inside = (position_ids < rows).unsqueeze(-1).to(table.dtype)
            old = nn.functional.embedding(position_ids.clamp(0, rows - 1), table) * inside * self.scale
            new = inner(position_ids)
            return old if new is None else new + old.to(new.dtype)

        return embed

    def at_step(self, step: int) -> None:
        self.scale = swap_scale(step, self.steps, self.schedule)
        if self.scale == 0.0:
            self.remove()

    def remove(self) -> None:
        while self.hooked:
            del self.hooked.pop().embed
