"""What the fine-tuning recipes do after a swap unless told not to (`--no-recovery`): attention transfer from the
unconverted original (`settings.DEFAULT_METHOD`), when no method is set."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from typing import Any

from torch import nn

from .settings import default_method, describe_recovery


def why_not(cfg: Any, model: nn.Module, block_size: int) -> str | None:
    """Why the default cannot run on `model` trained at `block_size` tokens, or None when it can."""
    from ...convert import original_record, unchanged_since_conversion
    from ...evaluation import trained_context_length

    window = trained_context_length(model)
    if window and block_size > window:
        return (
            f"{block_size} tokens are past the original's {window} positions (the method would keep every layer's "
            f"{block_size} x {block_size} attention map, and a masked LM's teacher must read the whole block); train "
            f"at most at {window} tokens to have it"
        )
    if not cfg.teacher_name_or_path and (original_record(model) is None or not unchanged_since_conversion(model)):
        return (
            "the model was not converted in this process (or has changed since), so its original is not in memory; "
            "pass the original as --teacher_name_or_path to have it"
        )
    return None


def with_default_recovery(cfg: Any, model: nn.Module, block_size: int) -> Any:
    """`cfg` with the default method on where it applies; otherwise `cfg` with `recovery` off (what ran is what
    train_config.json records). It applies when `default_method(cfg)` gives one (recovery on, no method set), `model`
    was converted to an encoding that changes its window (not a `learned` copy of its table) and `why_not` finds
    nothing; where it cannot run there is a warning saying why, and the model is fine-tuned on the LM loss alone.
    The main process says on stderr what it turned on."""
    from ...modeling.posenc_base import get_encoding_class

    settings = default_method(cfg)
    encoding = getattr(model.config, "position_encoding", None)
    options = getattr(model.config, "position_encoding_options", None) or {}
    if not settings or encoding is None or get_encoding_class(encoding).keeps_trained_window(options):
        return dataclasses.replace(cfg, recovery=False).check()
    reason = why_not(cfg, model, block_size)
    if reason:
        warnings.warn(
            f"Plain fine-tuning after the swap: the default method ({describe_recovery(settings)}) cannot run here: "
            f"{reason}. Pass --no-recovery to fine-tune plainly without this warning.",
            stacklevel=2,
        )
        return dataclasses.replace(cfg, recovery=False).check()
    from accelerate import PartialState

    if PartialState(cpu=cfg.cpu).is_main_process:  # on stderr: a recipe's stdout is its JSON summary
        print(
            f"Fine-tuning after the swap to {encoding} with {describe_recovery(settings)}: the default "
            "(--no-recovery: the LM loss alone).",
            file=sys.stderr,
        )
    return dataclasses.replace(cfg, **settings).check()
