"""Scoring in eval mode: dropout off while a model is measured, and the model given back in the mode it came in."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from torch import nn

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; after it (also on an error) the model and each of its submodules are
    back in the mode they came in (a model fresh from training, or with some parts frozen in eval mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        model.train(modes[0][1])
        for module, training in modes:
            module.training = training


def evaluates(function: F) -> F:
    """Decorator for an evaluation function whose first argument is the model: it runs under `eval_mode(model)`."""

    @functools.wraps(function)
    def scored_in_eval_mode(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with eval_mode(model):
            return function(model, *args, **kwargs)

    return scored_in_eval_mode  # type: ignore[return-value]
