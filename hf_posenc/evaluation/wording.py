"""Numbers into sentences, for the reports and README text that are generated from results."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def and_join(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def span(values: Iterable[float], fmt: Callable[[float], str]) -> str:
    """The range of `values` as `fmt` writes it: 'lo-hi', or one value when both ends read the same."""
    values = list(values)
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}-{high}"
