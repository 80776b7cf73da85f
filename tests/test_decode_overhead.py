"""What a cached decode step of a converted GPT-2 runs besides the original's work, counted in operators.

At batch 1 a decode step is short, so every operator that the conversion adds per layer or per step shows in the
latency per token. Operators that compute (views are free) are counted at 1 and 3 layers: the difference gives the
cost per layer, the rest the cost per step.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import DynamicCache

from benchmarks.models import ORIGINAL, Shape, build_variants

# per layer: RoPE's mul, flip and addcmul over q and k together; the bias encodings nothing (the mask is shared).
# per step: whatever the encoding builds once, less the original's position embedding (embedding and two adds).
PER_LAYER = {"rope": 3, "t5_bias": 0, "alibi": 0}
PER_STEP = 3


class ComputeOperators(TorchDispatchMode):
    """Counts the aten operators that run, leaving out views."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def decode_step_operators(layers: int) -> dict[str, Counter[str]]:
    """Compute operators of one single-token cached forward after a 7-token prompt, per variant."""
    variants = build_variants(Shape(layers=layers, hidden=64, heads=4, vocab=128, batch=1), list(PER_LAYER))
    input_ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(0))
    counts = {}
    for name, model in variants.items():
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(input_ids[:, :-1], cache=cache, use_cache=True)
            with ComputeOperators() as counter:
                model(input_ids[:, -1:], cache=cache, use_cache=True)
        counts[name] = counter.counts
    return counts


@pytest.fixture(scope="module")
def extra_operators() -> dict[str, tuple[int, int, Counter[str]]]:
    """{encoding: (extra operators per layer, extra per step, what the 3-layer step adds)} over the original."""
    one, three = decode_step_operators(1), decode_step_operators(3)
    extra = {}
    for encoding in PER_LAYER:
        added_one = one[encoding].total() - one[ORIGINAL].total()
        added_three = three[encoding].total() - three[ORIGINAL].total()
        per_layer = (added_three - added_one) // 2
        extra[encoding] = (per_layer, added_one - per_layer, three[encoding] - three[ORIGINAL])
    return extra


@pytest.mark.parametrize("encoding", list(PER_LAYER))
def test_decode_step_adds_few_operators(extra_operators, encoding):
    per_layer, per_step, added = extra_operators[encoding]
    assert per_layer <= PER_LAYER[encoding], f"{per_layer} extra operators per layer: {dict(added)}"
    assert per_step <= PER_STEP, f"{per_step} extra operators per step: {dict(added)}"
