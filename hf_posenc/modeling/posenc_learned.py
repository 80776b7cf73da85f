"""A learned absolute table extended past the pretrained window (Longformer's copy, interpolation, Long-CLIP's
knowledge-preserved stretching, or E5-Base-4k's anchors)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .posenc_base import ModelInfo, Option, PositionEncoding, PositionEncodingError, register_encoding

METHODS = ("copy", "interpolate", "keep_stretch", "anchor")


@register_encoding
class LearnedEncoding(PositionEncoding):
    """A learned table of `max_positions` rows. `method="keep_stretch"` is Long-CLIP's knowledge-preserved stretching
    (Zhang et al. 2024, "Long-CLIP: Unlocking the Long-Text Capability of CLIP"): the first `keep` rows, which are
    the best trained, are kept as they are, and the old rows keep..old-1 are interpolated linearly over the new rows
    keep..max_positions-1, the first and last old rows landing on the first and last new rows. Long-CLIP's own code
    steps by a fixed ratio of 4 (77 -> 4 x 77 - 3 x 20 = 248 rows) and extrapolates its last three rows; here the
    ratio is whatever fits `max_positions` (for 77 -> 248: 227 / 56, about 4.05), with no extrapolation.

    `method="anchor"` is E5-Base-4k's (Zhu et al. 2024, LongEmbed): with stride k = max_positions / window, old row i
    becomes row i * k and the rows between are interpolated (past the last anchor: the last old row); an input whose
    positions all fit the old window reads positions 0, k, 2k, ... (the old rows), so it computes exactly what the
    original did, and a longer one reads every row. Each sequence follows the rule of its own largest position: with
    an attention mask, positions count its real tokens (padding never raises them); without one, a batch shares its
    padded length. For bidirectional encoders: a model with a causal stack (a KV cache would mix the two rules) is
    refused."""

    name = "learned"
    kind = "input"
    relative = False
    description = (
        "Learned absolute table extended to max_positions by tiling (copy), linear interpolation, Long-CLIP's "
        "keep-and-stretch, or E5-Base-4k's anchors."
    )
    limits = (
        "Hard limit: {max_positions} positions (the rows of the table); a longer input is an error. Rows past the "
        "trained window are filled by '{method}' and mean little until the model is fine-tuned at those lengths."
    )
    options = {
        "max_positions": Option(None, "Rows of the extended table (default: 4x the trained window)."),
        "method": Option(
            "copy",
            "How new rows are filled: 'copy' tiles the old table, 'interpolate' stretches it, 'keep_stretch' keeps "
            "the first `keep` rows and stretches the rest (Long-CLIP), 'anchor' puts old row i at row i x "
            "max_positions / window and interpolates between (E5-Base-4k; in-window inputs read the old rows).",
        ),
        "keep": Option(20, "'keep_stretch' only: leading rows kept as they are (Long-CLIP: 20 of CLIP's 77)."),
    }

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        if options["max_positions"] is None:
            options["max_positions"] = 4 * info.trained_context_length
        rows = options["max_positions"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < info.trained_context_length:
            raise PositionEncodingError(
                f"Option 'max_positions' must be an integer >= the trained window ({info.trained_context_length}), "
                f"got {rows!r}."
            )
        if options["method"] not in METHODS:
            raise PositionEncodingError(f"Option 'method' must be one of {METHODS}, got {options['method']!r}.")
        keep, old = options["keep"], info.trained_context_length
        if options["method"] == "anchor":
            if rows % old:
                raise PositionEncodingError(
                    f"Option 'max_positions' must be a multiple of the trained window ({old}) for method 'anchor' "
                    f"(the old rows land every max_positions / {old} rows), got {rows}."
                )
            if info.causal:
                raise PositionEncodingError(
                    "Method 'anchor' is for bidirectional encoders, and this model has a causal stack (a decoder "
                    "whose KV cache would hold tokens embedded under both of its rules, in-window and longer). Use "
                    "'copy' or 'interpolate'."
                )
        if options["method"] == "keep_stretch" and (
            isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep < old
        ):
            raise PositionEncodingError(
                f"Option 'keep' must be an integer >= 0 and < the old table's {old} rows, got {keep!r}."
            )
        return options

    @classmethod
    def describe_limits(cls, options: dict[str, Any], causal: bool) -> str:
        limits = super().describe_limits(options, causal)
        if options.get("method") == "keep_stretch":
            limits += (
                f" Only the first {options['keep']} rows are the pretrained ones: positions from {options['keep']} on "
                "moved, inside the trained window too."
            )
        return limits

    @classmethod
    def keeps_trained_window(cls, options: dict[str, Any]) -> bool:
        # copy: the first rows are the old table, bit for bit; anchor: in-window inputs read the old rows;
        # keep_stretch: only the first `keep` rows are
        return options.get("method") in ("copy", "anchor")

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        self.weight = nn.Parameter(torch.zeros(options["max_positions"], info.input_size))

    def load_absolute_table(self, weight: torch.Tensor) -> None:
        rows, old = self.weight.shape[0], weight.shape[0]
        with torch.no_grad():
            method = self.config_options["method"]
            if method == "copy":
                tiled = weight.repeat((rows + old - 1) // old, 1)[:rows]
            elif method == "interpolate":
                tiled = stretch(weight, rows)
            elif method == "anchor":  # old row i at row i * stride, linear between, the last old row after
                stride = rows // old
                between = stretch(weight, (old - 1) * stride + 1)
                tiled = torch.cat((between, weight[-1:].expand(rows - between.shape[0], -1)))
                tiled[::stride] = weight  # the anchors bit for bit, whatever the interpolation rounds
            else:  # keep_stretch (Long-CLIP): rows 0..keep-1 as they are, old rows keep..old-1 stretched over the rest
                keep = self.config_options["keep"]
                tiled = torch.cat((weight[:keep], stretch(weight[keep:], rows - keep)))
            self.weight.copy_(tiled.to(self.weight.dtype))

    def embed(self, position_ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight.shape[0]
        if position_ids.shape[-1] > rows or (not torch.compiler.is_compiling() and int(position_ids.max()) >= rows):
            raise PositionEncodingError(
                f"Position {int(position_ids.max())} is past the learned table of {rows} rows; convert with a "
                f"larger 'max_positions' or choose a relative encoding."
            )
        if self.config_options["method"] == "anchor":  # a sequence that fits the old window reads the old rows
            stride = rows // self.info.trained_context_length
            fits = position_ids.amax(dim=-1, keepdim=True) < self.info.trained_context_length
            position_ids = torch.where(fits, position_ids * stride, position_ids)
        return nn.functional.embedding(position_ids, self.weight)


def stretch(table: torch.Tensor, rows: int) -> torch.Tensor:
    """`table` linearly interpolated to `rows` rows, its first and last rows kept at the ends (float32 inside)."""
    if table.shape[0] == 1:
        return table.expand(rows, -1).clone()
    stretched = nn.functional.interpolate(table.float().T[None], size=rows, mode="linear", align_corners=True)
    return stretched[0].T.to(table.dtype)
