"""One clear message and a non-zero exit for bad input, instead of a traceback wall."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


class RecipeError(ValueError):
    """Bad input to a recipe: a missing file, empty data, an impossible block size, a bad option."""


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a recipe's main(); expected errors print one line on stderr and exit with status 2."""
    from ..modeling.posenc_base import PositionEncodingError

    try:
        main(argv)
    except (RecipeError, PositionEncodingError, FileNotFoundError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    end_distributed()


def end_distributed() -> None:
    """Destroy the process group of a multi-process run before the interpreter exits, as Accelerate's
    `end_training` does: left to exit, its communication threads can abort the process ("terminate called
    without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()
