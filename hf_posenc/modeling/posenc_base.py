"""The contract every position encoding fulfils, the registry of encodings, and the per-forward context.

This folder is copied next to every converted checkpoint (transformers' remote code), so it imports
only torch, transformers and its own siblings, with relative imports of the form `from .x import y`.

An encoding hooks in at exactly one of four places, named by its `kind`:
- "input":  a tensor added to the token embeddings (sinusoidal, learned),
- "rotary": q and k rotated inside attention, before the KV cache (rope),
- "bias":   a per-head function of the distance k - q added to the attention scores (t5_bias, alibi),
- "none":   nothing at all (nope).
The model adapters call the same four hooks whatever the encoding is, so adding an encoding never
touches them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import TransformersKwargs

KINDS = ("input", "rotary", "bias", "none")
ALL_BACKENDS = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3")
SCORE_BACKENDS = ("eager", "sdpa", "flex_attention")  # backends that can add a bias to the scores
# Without gradients, a bias folded into an sdpa mask larger than this is built per layer in blocks of queries of at
# most this size, so no [B or 1, heads, Q, K] tensor outlives a layer (see `blocked_bias`).
MASK_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Option:
    """One option of an encoding: its default and what it means."""

    default: Any
    doc: str


@dataclass(frozen=True)
class ModelInfo:
    """What an encoding may know about the model it is built for."""

    hidden_size: int
    num_heads: int
    num_layers: int
    causal: bool
    trained_context_length: int
    embedding_size: int | None = None  # width of the token embeddings, where it differs from hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def input_size(self) -> int:
        """Width of what an "input" encoding adds to: the token embeddings."""
        return self.embedding_size or self.hidden_size

    @classmethod
    def from_config(cls, config: Any, causal: bool) -> ModelInfo:
        return cls(
            hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads,
            num_layers=config.num_hidden_layers,
            causal=causal,
            trained_context_length=config.trained_context_length,
            embedding_size=getattr(config, "embedding_size", None),
        )


class PositionEncodingError(ValueError):
    """Raised for a bad encoding name, option or combination, before any model is changed."""


_REGISTRY: dict[str, type[PositionEncoding]] = {}


def register_encoding(cls: type[PositionEncoding]) -> type[PositionEncoding]:
    """Class decorator: make an encoding available to `convert` under `cls.name`."""
    if cls.kind not in KINDS:
        raise TypeError(f"{cls.__name__}.kind must be one of {KINDS}, got {cls.kind!r}")
    _REGISTRY[cls.name] = cls
    return cls


def get_encoding_class(name: str) -> type[PositionEncoding]:
    if name not in _REGISTRY:
        raise PositionEncodingError(f"Unknown position encoding {name!r}. Available: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def registered_encodings() -> dict[str, type[PositionEncoding]]:
    return dict(sorted(_REGISTRY.items()))


class PositionEncoding(nn.Module):
    """Base class of all encodings. Subclasses set the class attributes and override the hook of their kind."""

    name: ClassVar[str]
    kind: ClassVar[str]
    relative: ClassVar[bool]  # True when the output depends only on distances between tokens
    description: ClassVar[str]
    limits: ClassVar[str] = ""  # one line for model cards: what the encoding itself allows, fine-tuned or not
    options: ClassVar[dict[str, Option]] = {}
    backends: ClassVar[tuple[str, ...]] = ALL_BACKENDS
    float32_buffers: ClassVar[tuple[str, ...]] = ()  # buffers kept in float32 whatever the model's dtype

    def __init__(self, options: dict[str, Any], info: ModelInfo):
        super().__init__()
        self.config_options = dict(options)
        self.info = info

    # ---- validation (classmethods: they run before any model is touched) ----
    @classmethod
    def validate(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        """Fill defaults, reject unknown names, then run the encoding's own checks. Returns JSON-able options."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            accepted = ", ".join(cls.options) or "none"
            raise PositionEncodingError(
                f"Unknown option(s) {unknown} for encoding {cls.name!r}. Accepted options: {accepted}."
            )
        full = {key: options.get(key, opt.default) for key, opt in cls.options.items()}
        return cls.check_options(full, info)

    @classmethod
    def check_options(cls, options: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
        return options

    @classmethod
    def describe_limits(cls, options: dict[str, Any], causal: bool) -> str:
        """`limits` for these (validated) options, whose names are its `str.format` fields, and this direction."""
        return cls.limits.format(**options)

    @classmethod
    def keeps_trained_window(cls, options: dict[str, Any]) -> bool:
        """True when conversion leaves the model's outputs on inputs within the trained window exactly as they were."""
        return False

    @classmethod
    def check_backend(cls, backend: str | None) -> None:
        if backend is None or any(backend.startswith(ok) for ok in cls.backends):
            return
        raise PositionEncodingError(
            f"The {cls.name!r} encoding cannot run on the {backend!r} attention backend "
            f"(it cannot add a bias to the attention scores). Use one of: {', '.join(cls.backends)}."
        )

    # ---- state ----
    def load_absolute_table(self, weight: torch.Tensor) -> None:
        """Called once at conversion with the learned table that is being removed (default: ignore it)."""

    def reset_buffers(self) -> None:
        """(Re)compute non-persistent buffers and initialise new parameters; called after meta-device loading."""

    def _apply(self, fn, recurse=True):
        kept = {name: self._buffers[name] for name in self.float32_buffers if self._buffers.get(name) is not None}
        super()._apply(fn, recurse)
        for name, original in kept.items():
            moved = self._buffers[name]
            if moved.dtype != original.dtype:  # a dtype cast: keep full precision, follow the device
                self._buffers[name] = original.to(moved.device)
        return self

    # ---- the four hooks ----
    def embed(self, position_ids: torch.Tensor) -> torch.Tensor | None:
        """kind "input": a [B or 1, T, hidden] tensor to add to the token embeddings."""
        return None

    def distance_bias(self, distances: torch.Tensor) -> torch.Tensor | None:
        """kind "bias": float32 [tables, heads, *distances.shape] for key-minus-query `distances` (tables: 1, or one
        per layer). `distances` is 1-D (every distance once, default positions) or [batch, queries, keys] (explicit
        `position_ids`)."""
        return None

    def rotation_tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...] | None:
        """kind "rotary": what `rotate` takes for these positions, in the model's `dtype`; once per forward, shared by
        all layers (RoPE: cos and a signed sin of shape [B or 1, 1, T, rotary_dim], computed in float32)."""
        return None

    def rotate(self, query: torch.Tensor, key: torch.Tensor, *tables: torch.Tensor):
        """Apply the `rotation_tables` to q and k of shape [B, H, T, head_dim]."""
        return query, key

    def rotate_stacked(self, query_key: torch.Tensor, *tables: torch.Tensor):
        """`rotate` for q and k stacked on the head axis, [B, 2 x H, T, head_dim] (as a fused projection gives them);
        returns q and k. An encoding that rotates q and k alike overrides it with one pass over both."""
        return self.rotate(*query_key.chunk(2, dim=1), *tables)

    def forward(
        self,
        position_ids: torch.Tensor,
        past_length: int | torch.Tensor,
        attention_backend: str,
        dtype: torch.dtype,
        *,
        attention_mask: Any,
        key_length: int,
        key_positions: torch.Tensor | None = None,
    ) -> PositionContext:
        """Everything the layers of one forward pass need, computed once here and shared by all layers.

        `attention_mask` is the 4-D mask (or BlockMask, or None) that transformers built for the layers, and
        `key_length` the key length the layers will see (see `mask_key_length`). `key_positions` ([B or 1, key_length],
        from `cache_and_positions`) is given when the caller passed explicit `position_ids`: distance biases then
        follow those positions instead of token indices.
        """
        self.check_backend(attention_backend)
        context = PositionContext(
            encoding=self,
            causal=self.info.causal,
            past_length=past_length,
            query_length=position_ids.shape[-1],
            key_length=key_length,
            backend=attention_backend,
            dtype=dtype,
        )
        if self.kind == "rotary":
            context.cos_sin = self.rotation_tables(position_ids, dtype)
        if self.kind == "bias":
            if key_positions is None:  # default positions: one shared table over every index distance
                first = -(past_length + context.query_length - 1)
                distances = torch.arange(first, key_length - past_length, device=position_ids.device)
            else:  # explicit positions: the distance of every (query, key) pair, per row
                distances = key_positions[:, None, :] - position_ids[:, :, None]
            context.bias_tables = self.distance_bias(distances)
            if key_positions is not None and attention_backend.startswith("flex"):
                # flex's score_mod indexes [tables, B, heads, Q, K] in the model's dtype: laid out once, not per layer
                context.bias_tables = context.bias_tables.transpose(1, 2).to(dtype).contiguous()
            context.blocked = blocked_bias(context, attention_mask, key_length)
            if context.bias_tables.shape[0] == 1 and not attention_backend.startswith("flex") and not context.blocked:
                context.shared_mask = context.merged_mask(attention_mask, 0, key_length)
                context.shared_source = attention_mask
        return context


def blocked_bias(context: PositionContext, mask: Any, key_length: int) -> bool:
    """True when sdpa's merged mask ([mask rows or 1, heads, Q, K]) would exceed `MASK_BLOCK_BYTES` and the bias comes
    from a per-distance table: each layer then builds it in blocks of queries (`_sdpa_in_query_blocks`). Not under
    autograd (each layer would keep its own blocks for the backward pass, where one shared mask is kept now) nor while
    compiling (the key runs depend on the mask's values)."""
    tables = context.bias_tables
    if context.backend != "sdpa" or tables.ndim != 3 or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    rows = mask.shape[0] if isinstance(mask, torch.Tensor) else 1
    itemsize = torch.finfo(context.dtype).bits // 8
    return rows * tables.shape[1] * context.query_length * key_length * itemsize > MASK_BLOCK_BYTES


@dataclass(eq=False)
class PositionContext:
    """Per-forward state handed to every attention layer (rotation tables, distance-bias tables, merged mask)."""

    encoding: PositionEncoding
    causal: bool
    past_length: int | torch.Tensor
    query_length: int
    key_length: int
    backend: str
    dtype: torch.dtype
    cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None  # the encoding's rotation_tables, shared by all layers
    bias_tables: torch.Tensor | None = None  # [tables, heads, key_length + query_length - 1] or [.., B, Q, K]
    shared_mask: torch.Tensor | None = None  # the mask with the shared bias folded in, built once per forward
    shared_source: Any = None  # the mask `shared_mask` was built from (layers with their own mask merge their own)
    blocked: bool = False  # sdpa gets the bias per layer in blocks of queries instead of one merged mask
    key_spans: tuple[Any, list | None] | None = None  # (mask, its `key_runs`), computed once for the shared mask

    def rotate(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cos_sin is None:
            return query, key
        return self.encoding.rotate(query, key, *self.cos_sin)

    def rotate_stacked(self, query_key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k stacked on the head axis, [B, 2 x H, T, head_dim]: rotated (in one pass for RoPE) and split."""
        if self.cos_sin is None:
            return query_key.chunk(2, dim=1)
        return self.encoding.rotate_stacked(query_key, *self.cos_sin)

    def layer_table(self, layer_idx: int) -> torch.Tensor:
        return self.bias_tables[layer_idx if self.bias_tables.shape[0] > 1 else 0]

    def merged_mask(
        self, mask: Any, layer_idx: int, key_length: int, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """The bias of queries [start, stop) (default: all) folded into `mask`."""
        return merge_bias_with_mask(
            self.layer_table(layer_idx),
            mask,
            self.causal,
            self.past_length,
            self.query_length,
            key_length,
            self.dtype,
            start,
            stop,
        )

    def key_runs(self, mask: Any, batch: int, key_length: int) -> list[tuple[int, int, int, int]] | None:
        """`key_runs` of this mask, computed once per forward for the mask shared by all layers."""
        if self.key_spans is not None and self.key_spans[0] is mask:
            return self.key_spans[1]
        runs = None if self.causal else key_runs(mask, batch, key_length)
        self.key_spans = (mask, runs)
        return runs

    def attention_mask(self, mask: Any, layer_idx: int, key_length: int) -> Any:
        """The layer's mask with the bias folded in: shared across layers, or built per layer for per-layer tables
        (blocked: left as it is, the attention function folds the bias in block by block)."""
        if self.bias_tables is None or self.backend.startswith("flex") or self.blocked:
            return mask
        if self.shared_mask is not None and mask is self.shared_source:
            return self.shared_mask
        return self.merged_mask(mask, layer_idx, key_length)

    def attention_function(self, layer_idx: int, default: Callable) -> Callable:
        """The attention function for this layer: transformers' own, or FlexAttention with a bias score_mod."""
        if self.bias_tables is not None and self.backend.startswith("flex"):
            return _flex_with_distance_bias(self, layer_idx)
        function = ALL_ATTENTION_FUNCTIONS.get_interface(self.backend, default)
        return _sdpa_in_query_blocks(self, layer_idx, function) if self.blocked else function


# The keywords transformers' attention interface documents for what a layer passes on (`TransformersKwargs`); an
# attention function gets these and its own named arguments (dropout, scaling, ...), nothing else.
ATTENTION_KWARGS = frozenset(TransformersKwargs.__required_keys__ | TransformersKwargs.__optional_keys__)


def attention_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The part of a layer's `kwargs` an attention function may receive (`ATTENTION_KWARGS`): what else reaches a layer
    (`position_context`, `use_cache`, ...) stays out, since a backend may reject or misread a keyword it does not
    know."""
    return {key: value for key, value in kwargs.items() if key in ATTENTION_KWARGS}


def bias_index(
    query_length: int, key_length: int, device: torch.device, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """[Q, K] index into a distance table laid out as in `PositionContext.bias_tables` (queries [start, stop) only:
    [stop - start, K])."""
    q = torch.arange(start, query_length if stop is None else stop, device=device)[:, None]
    k = torch.arange(key_length, device=device)[None, :]
    return k - q + (query_length - 1)


def merge_bias_with_mask(
    table: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    past_length: int,
    query_length: int,
    key_length: int,
    dtype: torch.dtype,
    start: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """Expand one [heads, D] distance table to [1, heads, Q, K] (or take a per-pair [heads, B, Q, K] table as
    [B, heads, Q, K]) and fold it into a bool, float or missing mask. `start`, `stop`: only queries [start, stop)."""
    stop = query_length if stop is None else stop
    if table.ndim == 4:
        bias = table[..., start:stop, :key_length].transpose(0, 1).to(dtype)
    elif query_length == 1:  # one decoding step: the table is already the row of distances to every key
        bias = table[None, :, None, :key_length].to(dtype)
    else:
        bias = table[:, bias_index(query_length, key_length, table.device, start, stop)].unsqueeze(0).to(dtype)
    min_value = torch.finfo(dtype).min
    if mask is None:
        if not causal or query_length == 1:  # transformers passes no mask to a single query only when it sees every key
            return bias
        q = torch.arange(start, stop, device=bias.device)[:, None] + past_length
        k = torch.arange(key_length, device=bias.device)[None, :]
        return torch.where(k <= q, bias, min_value)
    mask = mask[..., :key_length]
    if mask.shape[-2] > 1 and (start, stop) != (0, query_length):
        mask = mask[..., start:stop, :]
    if mask.dtype == torch.bool:
        return torch.where(mask, bias, min_value)
    return (mask + bias).clamp(min=min_value)


def key_runs(mask: Any, batch: int, key_length: int) -> list[tuple[int, int, int, int]] | None:
    """A bool padding mask that depends on the key alone ([B or 1, 1, Q or 1, K], every query of a row seeing the same
    unbroken span of keys), as runs of consecutive rows with the same span: (first row, end row, first key, end key).
    None for any other mask. No mask: one run over every row and key."""
    if mask is None:
        return [(0, batch, 0, key_length)]
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 4 or mask.shape[1] != 1:
        return None
    if mask.shape[2] > 1 and not torch.equal(mask, mask[:, :, :1].expand_as(mask)):  # a row depends on the query
        return None
    valid = mask[:, 0, 0, :key_length].expand(batch, -1).int()
    counts, first = valid.sum(-1), valid.argmax(-1)
    last = key_length - 1 - valid.flip(-1).argmax(-1)
    if bool((counts == 0).any()) or bool((last - first + 1 != counts).any()):  # an empty row, or a gap in a row
        return None
    runs: list[tuple[int, int, int, int]] = []
    for row, (begin, end) in enumerate(zip(first.tolist(), (last + 1).tolist(), strict=True)):
        if runs and runs[-1][2:] == (begin, end):
            runs[-1] = (runs[-1][0], row + 1, begin, end)
        else:
            runs.append((row, row + 1, begin, end))
    return runs


def _sdpa_in_query_blocks(context: PositionContext, layer_idx: int, function: Callable) -> Callable:
    """`function` (sdpa) over blocks of queries, each with its own slice of the bias folded into the mask, so that no
    merged mask larger than `MASK_BLOCK_BYTES` exists. Where the mask only pads keys (`key_runs`), each run of rows
    attends over its own keys with the bias alone ([1, heads, block, K]): no mask has a batch dimension."""

    def attention(module, query, key, value, attention_mask, **kwargs):
        batch, heads, query_length, _ = query.shape
        key_length = key.shape[-2]
        runs = context.key_runs(attention_mask, batch, key_length)
        rows = 1 if runs is not None or not isinstance(attention_mask, torch.Tensor) else attention_mask.shape[0]
        row_bytes = rows * heads * key_length * (torch.finfo(context.dtype).bits // 8)
        step = max(1, MASK_BLOCK_BYTES // row_bytes)
        output = query.new_empty(batch, query_length, heads, value.shape[-1])
        for start in range(0, query_length, step):
            stop = min(start + step, query_length)
            if runs is None:
                mask = context.merged_mask(attention_mask, layer_idx, key_length, start, stop)
                output[:, start:stop] = function(module, query[:, :, start:stop], key, value, mask, **kwargs)[0]
                continue
            bias = context.merged_mask(None, layer_idx, key_length, start, stop)
            for first, end, begin, until in runs:
                block = (
                    query[first:end, :, start:stop],
                    key[first:end, :, begin:until],
                    value[first:end, :, begin:until],
                )
                output[first:end, start:stop] = function(module, *block, bias[..., begin:until], **kwargs)[0]
        return output, None

    return attention


_CPU_FLEX: list[Callable] = []


def cpu_flex_attention() -> Callable:
    """`torch.compile(flex_attention, dynamic=False)`, built once. On CPU, inductor's flex template fails to build
    the dynamic-shape kernel that transformers' compile asks for at a second sequence length or score_mod (torch
    2.13), so there each shape compiles on its own."""
    from torch.nn.attention.flex_attention import flex_attention

    if torch.compiler.is_dynamo_compiling():
        return flex_attention
    if not _CPU_FLEX:
        _CPU_FLEX.append(torch.compile(flex_attention, dynamic=False))
    return _CPU_FLEX[0]


def _flex_with_distance_bias(context: PositionContext, layer_idx: int) -> Callable:
    """FlexAttention whose score_mod reads a [heads, Q + K - 1] table (default positions: no [Q, K] bias tensor
    exists) or, with explicit positions, a [B or 1, heads, Q, K] table."""
    from transformers.integrations.flex_attention import compile_friendly_flex_attention

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if dropout > 0:
            raise ValueError("flex_attention does not support attention dropout; call model.eval() first.")
        tables = context.bias_tables
        table = tables[layer_idx if tables.shape[0] > 1 else 0].to(query.dtype)
        offset = context.query_length - 1
        if table.ndim == 4:  # per pair: [B or 1, heads, Q, K], laid out in `PositionEncoding.forward`
            rows = table.shape[0]

            def score_mod(score, batch_idx, head_idx, q_idx, kv_idx):
                return score + table[batch_idx if rows > 1 else 0, head_idx, q_idx, kv_idx]

        else:

            def score_mod(score, batch_idx, head_idx, q_idx, kv_idx):
                return score + table[head_idx, kv_idx - q_idx + offset]

        flex_args = {"score_mod": score_mod, "block_mask": attention_mask, "scale": scaling}
        if query.device.type == "cpu":
            out = cpu_flex_attention()(query, key, value, **flex_args)
        else:
            out = compile_friendly_flex_attention(query, key, value, training=module.training, **flex_args)
        return out.transpose(1, 2).contiguous(), None

    return attention


def default_position_ids(
    attention_mask: torch.Tensor | None, past_length: int, query_length: int, device: torch.device
) -> torch.Tensor:
    """Positions of the current tokens: counted over real tokens when a 2-D padding mask is given, so that
    left padding gives every row the positions it would have alone."""
    if attention_mask is not None and attention_mask.ndim == 2:
        positions = attention_mask.long().cumsum(-1) - 1
        return positions.clamp(min=0)[:, -query_length:]
    return torch.arange(past_length, past_length + query_length, device=device).unsqueeze(0)


def mask_key_length(cache: Any, query_length: int) -> int:
    """The key length the layers will attend over (a static cache attends over its whole buffer)."""
    return cache.get_mask_sizes(query_length, 0)[0] if cache is not None else query_length


def cache_and_positions(
    config: Any,
    cache: Any,
    use_cache: bool | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    query_length: int,
    device: torch.device,
) -> tuple[Any, int | torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Every adapter's forward starts so. Returns the cache to fill (a new DynamicCache when caching is on and none
    was given), how many tokens it already holds, the positions of the current tokens (padding-aware unless given),
    and, when `position_ids` were given, the positions of all keys (see `explicit_key_positions`), else None."""
    if use_cache and cache is None:
        cache = DynamicCache(config=config)
    past_length = cache_length(cache)
    if position_ids is None:
        position_ids, given = default_position_ids(attention_mask, past_length, query_length, device), False
        if getattr(cache, "posenc_key_positions", None) is None:
            return cache, past_length, position_ids, None
    else:
        given = True
    if get_encoding_class(config.position_encoding).kind != "bias":  # only distance biases read key positions
        return cache, past_length, position_ids, None
    key_length = mask_key_length(cache, query_length)
    keys = explicit_key_positions(cache, attention_mask, past_length, position_ids, key_length)
    return cache, past_length, position_ids, keys if given else None  # default: keep a record started by given ones


def explicit_key_positions(
    cache: Any,
    attention_mask: torch.Tensor | None,
    past_length: int | torch.Tensor,
    position_ids: torch.Tensor,
    key_length: int,
) -> torch.Tensor:
    """[B or 1, key_length] positions of every key: the current tokens' given `position_ids`, and for tokens already
    in the cache the positions they were given when they were added (kept on the cache as `posenc_key_positions`),
    else their padding-aware positions. Slots of a static cache not filled yet get placeholder positions (masked)."""
    if cache is None:
        return position_ids
    device, query_length = position_ids.device, position_ids.shape[-1]
    known = getattr(cache, "posenc_key_positions", None)
    if known is None:
        known = torch.arange(key_length, device=device)[None]
        if attention_mask is not None and attention_mask.ndim == 2:
            from_mask = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, :key_length]
            known = torch.cat((from_mask, known[:, from_mask.shape[-1] :].expand(from_mask.shape[0], -1)), -1)
    elif known.shape[-1] < key_length:
        more = torch.arange(known.shape[-1], key_length, device=device)
        known = torch.cat((known, more.expand(known.shape[0], -1)), -1)
    batch = max(known.shape[0], position_ids.shape[0])
    keys = known[:, :key_length].expand(batch, -1).clone()
    keys[:, past_length + torch.arange(query_length, device=device)] = position_ids.expand(batch, -1)
    cache.posenc_key_positions = keys
    return keys


def cache_length(cache: Any) -> int | torch.Tensor:
    """Tokens already in the cache, snapshotted: a static cache returns a counter that its updates change in place."""
    if cache is None:
        return 0
    length = cache.get_seq_length()
    return length.clone() if isinstance(length, torch.Tensor) else length


def check_positive(name: str, value: Any, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value <= 0:
        what = "a positive integer" if integer else "a positive number"
        raise PositionEncodingError(f"Option {name!r} must be {what}, got {value!r}.")
