"""T5's relative position bias (Raffel et al., 2020): a learned scalar per head and distance bucket.

Buckets come from transformers' own `T5Attention._relative_position_bucket` (bidirectional for encoders,
causal for decoders). One table is shared by all layers (T5's choice) unless `per_layer=True`.
By default the table starts at zero, so the converted model begins with no position signal in the scores and
learns one during fine-tuning, instead of starting from random distortions of pretrained attention.
`init="alibi"` starts it at ALiBi's penalties instead (each bucket gets the mean ALiBi bias of the distances it
holds, per head with BLOOM's slopes): a prior of "nearer keys matter more" that fine-tuning then adjusts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention

from .posenc_base import SCORE_BACKENDS, ModelInfo, Option, PositionEncoding, PositionEncodingError, register_encoding

INITS = ("zeros", "alibi")


@register_encoding
class T5RelativeBias(PositionEncoding):
    name = "t5_bias"
    kind = "bias"
    relative = True
    description = "T5 bucketed relative-position bias added to the attention scores (learned; zeros or ALiBi init)."
    options = {
        "num_buckets": Option(32, "Number of distance buckets (T5: 32)."),
        "max_distance": Option(128, "Distances at or beyond this share the last bucket (T5: 128)."),
        "per_layer": Option(False, "One table per layer instead of one shared by all layers."),
        "init": Option("zeros", "Initial table: 'zeros' (no position signal) or 'alibi' (ALiBi's penalties)."),
    }
    backends = SCORE_BACKENDS

    @classmethod
    def describe_limits(cls, options: dict[str, Any], causal: bool) -> str:
        far = f"No hard length limit; distances of {options['max_distance']} tokens or more share one bucket."
        if options.get("init") == "alibi":
            return f"{far} The bias starts at ALiBi's penalties (bucketed) and is learned from there."
        blind = "" if causal else " and this encoder is order-blind"
        return f"{far} The bias is learned from zero: until fine-tuning it adds no position information{blind}."

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        buckets, max_distance = options["num_buckets"], options["max_distance"]
        minimum = 2 if info.causal else 4
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < minimum:
            direction = "causal" if info.causal else "bidirectional"
            raise PositionEncodingError(
                f"Option 'num_buckets' must be an integer >= {minimum} for a {direction} model, got {buckets!r}."
            )
        exact = (buckets if info.causal else buckets // 2) // 2
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance <= exact:
            raise PositionEncodingError(
                f"Option 'max_distance' must be an integer larger than the {exact} exactly-bucketed distances "
                f"(num_buckets={buckets}), got {max_distance!r}."
            )
        if not isinstance(options["per_layer"], bool):
            raise PositionEncodingError(f"Option 'per_layer' must be True or False, got {options['per_layer']!r}.")
        if options["init"] not in INITS:
            raise PositionEncodingError(f"Option 'init' must be one of {INITS}, got {options['init']!r}.")
        return options

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__(options, info)
        self.num_tables = info.num_layers if options["per_layer"] else 1
        self.relative_attention_bias = nn.Embedding(options["num_buckets"], self.num_tables * info.num_heads)
        self.register_buffer("distance_buckets", self.t5_buckets(self.clamped_distances()), persistent=False)
        if self.relative_attention_bias.weight.device.type != "meta":  # on meta, loading fills it (or reset_buffers)
            with torch.no_grad():
                self.relative_attention_bias.weight.copy_(self.initial_table())

    def reset_buffers(self) -> None:
        from transformers import initialization as init

        device = self.distance_buckets.device if self.distance_buckets.device.type != "meta" else None
        self.distance_buckets = self.t5_buckets(self.clamped_distances(device))
        weight = self.relative_attention_bias.weight
        init.copy_(weight, self.initial_table().to(weight.device if weight.device.type != "meta" else None))

    def initial_table(self) -> torch.Tensor:
        """[buckets, tables * heads]: zeros, or each bucket's mean ALiBi bias over the distances it holds."""
        buckets, heads, cpu = self.config_options["num_buckets"], self.info.num_heads, torch.device("cpu")
        if self.config_options["init"] == "zeros":
            return torch.zeros(buckets, self.num_tables * heads, device=cpu)
        from .posenc_alibi import alibi_bias, alibi_slopes

        distances = self.clamped_distances(cpu)
        bias = alibi_bias(distances, heads, self.info.causal, alibi_slopes(heads).to(cpu))  # [heads, distances]
        index = self.t5_buckets(distances)
        sums = torch.zeros(heads, buckets, device=cpu).index_add_(1, index, bias)
        counts = torch.bincount(index, minlength=buckets).clamp(min=1)
        return (sums / counts).T.repeat(1, self.num_tables)

    def clamped_distances(self, device: torch.device | None = None) -> torch.Tensor:
        limit = self.config_options["max_distance"]
        return torch.arange(-limit, limit + 1, device=device)

    def t5_buckets(self, distances: torch.Tensor) -> torch.Tensor:
        return T5Attention._relative_position_bucket(
            distances,
            bidirectional=not self.info.causal,
            num_buckets=self.config_options["num_buckets"],
            max_distance=self.config_options["max_distance"],
        )

    def buckets(self, distances: torch.Tensor) -> torch.Tensor:
        """T5's bucket of each distance, looked up: every distance at or past max_distance (either way) shares the
        last bucket of its direction, so a table over [-max_distance, max_distance] holds them all."""
        limit = self.config_options["max_distance"]
        return self.distance_buckets[distances.clamp(-limit, limit) + limit]

    def distance_bias(self, distances: torch.Tensor) -> torch.Tensor:
        values = self.relative_attention_bias(self.buckets(distances))  # [*distances.shape, tables * heads]
        values = values.float().unflatten(-1, (self.num_tables, self.info.num_heads))
        return values.movedim((-2, -1), (0, 1)).contiguous()  # laid out once: sdpa copies a strided mask per layer
