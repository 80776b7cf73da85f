"""What the fine-tuning recipes do after a swap unless told not to (`--no-recovery`): the recovery study's best
method (`settings.DEFAULT_METHOD`), when no method is set."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from typing import Any

from torch import nn

from .settings import default_method, describe_recovery


def with_default_recovery(cfg: Any, model: nn.Module, block_size: int) -> Any:
    """`cfg` with the default method on, where `default_method(cfg)` gives one and it can run on `model` trained at
    `block_size` tokens; otherwise `cfg` itself. A masked LM or an encoder-decoder trained past its window cannot
    have the default (the teacher must read the whole block): it is fine-tuned plainly, with a warning that says why
    and how to have the method. The main process says on stderr what it turned on."""
    from ...evaluation import is_causal_lm, trained_context_length

    settings = default_method(cfg)
    if not settings:
        return cfg
    window = trained_context_length(model)
    reads_whole_block = not is_causal_lm(model) or getattr(model.config, "is_encoder_decoder", False)
    if reads_whole_block and window and block_size > window:
        warnings.warn(
            f"Plain fine-tuning after the swap: the default method ({describe_recovery(settings)}) needs this "
            f"model's teacher to read the whole block, and {block_size} tokens are past its {window} positions. "
            f"Train at most at {window} tokens to have it, or pass --no-recovery to fine-tune plainly without this "
            "warning.",
            stacklevel=2,
        )
        return cfg
    from accelerate import PartialState

    if PartialState().is_main_process:  # on stderr: a recipe's stdout is its JSON summary
        print(
            f"Fine-tuning after the swap to {cfg.encoding} with {describe_recovery(settings)}: the default "
            "(--no-recovery: the LM loss alone).",
            file=sys.stderr,
        )
    return dataclasses.replace(cfg, **settings).check()
