"""The targets of issues 24 (LongEmbed's difficulty) and 26 (content retrieval) as rules on a run's record, the
trade-off between keeping the window and reading long documents, and which converted arm is recommended.

A record is what `recipes/extend_sentence_encoder.py` writes: `methods` (label: `evaluate_method`'s result, the
baselines labelled "original, ..."), `fidelity` (converted arm: cosine to the original inside the window).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..evaluation.statistics import Interval, mcnemar_p, paired_difference

# E5-Base-4k (E5-Base with its absolute table extended to 4,096 positions by anchors, then only the new rows trained)
# on LongEmbed's passkey and needle, top-1 accuracy by document length.
E5_BASE_4K = {
    "passkey": {1024: 0.98, 2048: 0.88, 4096: 0.88},
    "needle": {1024: 0.74, 2048: 0.52, 4096: 0.28},
}
E5_SOURCE = (
    "LongEmbed (Zhu et al. 2024, arXiv:2404.12096), E5-Base-4k's top-1 accuracy on passkey and needle retrieval "
    "by document length, as issue 24 quotes it"
)
MEAN_COSINE, MIN_COSINE, QUOTE_POINTS = 0.99, 0.97, 0.01  # inside the window (issues 24 and 26)
OVER_CHUNK_MEAN, OVER_CHUNK_LENGTHS = 0.10, (2048, 4096)  # long documents: points over chunk-and-mean-pool
SYNTHETIC, CONTENT = ("passkey", "needle"), "content"
EPSILON = 1e-9


@dataclass
class Check:
    """One target for one arm: `met` is None where the run did not measure it."""

    issue: int
    target: str
    met: bool | None
    numbers: str

    def line(self) -> str:
        verdict = {True: "yes", False: "no", None: "not measured"}[self.met]
        return f"{self.target}: **{verdict}** ({self.numbers})"


def baselines(record: dict[str, Any]) -> tuple[list[str], str | None]:
    """The original's truncation baselines (the one at its window first) and its chunk-and-mean-pool baseline."""
    originals = [label for label in record["methods"] if label.startswith("original")]
    chunked = [label for label in originals if record["methods"][label]["strategy"] == "chunk_mean"]
    return [label for label in originals if label not in chunked], (chunked[0] if chunked else None)


def converted(record: dict[str, Any]) -> list[str]:
    return [label for label in record["methods"] if not label.startswith("original")]


def top1(record: dict[str, Any], label: str, task: str, length: int) -> float | None:
    return record["methods"].get(label, {}).get("summary", {}).get(task, {}).get(str(length))


def ndcg(record: dict[str, Any], label: str, task: str, length: int) -> float | None:
    """Mean nDCG@10 of `task` at `length` (over its groups), None where not measured."""
    rows = record["methods"].get(label, {}).get("groups", [])
    values = [r["ndcg_at_10"] for r in rows if r["task"] == task and r["length"] == length and "ndcg_at_10" in r]
    return statistics.fmean(values) if values else None


def quote(record: dict[str, Any], label: str | None) -> float | None:
    return None if label is None else top1(record, label, "quote", 0)


def task_lengths(record: dict[str, Any], task: str) -> list[int]:
    return sorted({int(n) for m in record["methods"].values() for n in m["summary"].get(task, {})})


def long_lengths(record: dict[str, Any]) -> list[int]:
    """The two longest lengths the content task measured: where the trade-off and the recommendation read it."""
    return task_lengths(record, CONTENT)[-2:]


def content_score(record: dict[str, Any], label: str) -> float | None:
    """Mean content top-1 at `long_lengths`, None where it is missing."""
    values = [top1(record, label, CONTENT, n) for n in long_lengths(record)]
    return statistics.fmean(values) if values and None not in values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _at_least(value: float | None, bound: float | None) -> bool | None:
    return None if value is None or bound is None else value >= bound - EPSILON


def window_checks(record: dict[str, Any], name: str) -> list[Check]:
    """In-window: mean and min cosine to the original, quote retrieval within 1 point of the original's."""
    fid = record["fidelity"].get(name, {})
    mean, least = fid.get("mean_cosine"), fid.get("min_cosine")
    ours, original = quote(record, name), quote(record, (baselines(record)[0] or [None])[0])
    floor = None if original is None else original - QUOTE_POINTS
    return [
        Check(24, f"in-window mean cosine >= {MEAN_COSINE}", _at_least(mean, MEAN_COSINE), _cosine(mean)),
        Check(24, f"in-window min cosine >= {MIN_COSINE}", _at_least(least, MIN_COSINE), _cosine(least)),
        Check(
            24,
            f"in-window quote retrieval within {100 * QUOTE_POINTS:.0f} point of the original's",
            _at_least(ours, floor),
            f"{_pct(ours)} against {_pct(original)}",
        ),
    ]


def _cosine(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def hits(record: dict[str, Any], label: str, task: str, length: int) -> list[float]:
    """1.0 / 0.0 per query of `task` at `length` (whether its own document ranked first), in the groups' order."""
    rows = record["methods"].get(label, {}).get("groups", [])
    return [float(rank == 1) for r in rows if r["task"] == task and r["length"] == length for rank in r["ranks"]]


def gain(record: dict[str, Any], label: str, reference: str | None, task: str, length: int) -> Interval | None:
    """Top-1 of `label` minus `reference`'s on the same queries, with a 95% interval from a paired bootstrap over the
    queries (one trained model per arm: the error is the queries' sampling error); None where either lacks them."""
    mine = hits(record, label, task, length)
    theirs = [] if reference is None else hits(record, reference, task, length)
    if not mine or len(mine) != len(theirs):
        return None
    return paired_difference([mine], [theirs])


def points(interval: Interval) -> str:
    """'+12.5 points [+3.1, +21.9]'."""
    return f"{100 * interval.mean:+.1f} points [{100 * interval.low:+.1f}, {100 * interval.high:+.1f}]"


def separated(mine: list[float], theirs: list[float]) -> bool:
    """Whether `mine` beats `theirs` on the same queries: the paired bootstrap interval above 0 and the exact McNemar
    test under 0.05 (the bootstrap alone is too narrow when few queries differ)."""
    return paired_difference([mine], [theirs]).low > 0 and mcnemar_p(mine, theirs) < 0.05


def versus(record: dict[str, Any], label: str, reference: str | None, task: str, length: int) -> str:
    """'+12.5 points [-5.3, +30.3], McNemar p 0.23' (`gain` and the exact test), 'n/a' where not measured."""
    difference = gain(record, label, reference, task, length)
    if difference is None or reference is None:
        return "n/a"
    p = mcnemar_p(hits(record, label, task, length), hits(record, reference, task, length))
    return f"{points(difference)}, McNemar p {p:.2g}"


def _over_chunk(record: dict[str, Any], name: str, task: str, length: int, issue: int) -> Check:
    """At least 10 points over chunk-and-mean-pool, and ahead of it by the paired tests (`separated`)."""
    chunk_label = baselines(record)[1]
    mine, chunk = top1(record, name, task, length), top1(record, chunk_label, task, length)
    bound = None if chunk is None else chunk + OVER_CHUNK_MEAN
    difference = gain(record, name, chunk_label, task, length)
    met = _at_least(mine, bound)
    if met and difference is not None and not separated(*(hits(record, x, task, length) for x in (name, chunk_label))):
        met = False  # ahead by the point estimate, not by the test
    tested = "" if difference is None else f"; difference {versus(record, name, chunk_label, task, length)}"
    return Check(
        issue,
        f"{task} at {length:,} >= chunk-and-mean-pool + {100 * OVER_CHUNK_MEAN:.0f} points",
        met,
        f"{_pct(mine)} against {_pct(chunk)}{tested}",
    )


def issue24_checks(record: dict[str, Any], name: str) -> list[Check]:
    """Issue 24: the window kept, passkey and needle at or above E5-Base-4k's at 1,024-4,096 tokens and 10 points
    above chunk-and-mean-pool at 2,048 and 4,096."""
    checks = window_checks(record, name)
    for task in SYNTHETIC:
        for length, theirs in E5_BASE_4K[task].items():
            mine = top1(record, name, task, length)
            checks.append(Check(24, f"{task} at {length:,} >= E5-Base-4k's", _at_least(mine, theirs),
                                f"{_pct(mine)} against {_pct(theirs)}"))  # fmt: skip
        checks += [_over_chunk(record, name, task, length, 24) for length in OVER_CHUNK_LENGTHS]
    return checks


def issue26_checks(record: dict[str, Any], name: str) -> list[Check]:
    """Issue 26: content retrieval 10 points above chunk-and-mean-pool at 2,048 and 4,096 with the in-window mean
    cosine kept at 0.99."""
    return [
        *(_over_chunk(record, name, CONTENT, length, 26) for length in OVER_CHUNK_LENGTHS),
        window_checks(record, name)[0],
    ]


def met(checks: list[Check]) -> bool:
    return all(check.met for check in checks)


def keeps_window(record: dict[str, Any], name: str) -> bool:
    return met(window_checks(record, name))


def tradeoff(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per converted arm: in-window mean cosine against content top-1 at `long_lengths` (and their mean),
    with whether no other arm is at least as good on both and better on one (`pareto`)."""
    points = []
    for name in converted(record):
        cosine = record["fidelity"].get(name, {}).get("mean_cosine")
        by_length = {n: top1(record, name, CONTENT, n) for n in long_lengths(record)}
        points.append({"name": name, "cosine": cosine, "content": by_length, "score": content_score(record, name)})
    known = [p for p in points if p["cosine"] is not None and p["score"] is not None]
    for point in points:
        point["pareto"] = point in known and not any(
            other["cosine"] >= point["cosine"]
            and other["score"] >= point["score"]
            and (other["cosine"], other["score"]) != (point["cosine"], point["score"])
            for other in known
        )
    return points


def _synthetic(record: dict[str, Any], name: str) -> float:
    """Mean passkey and needle top-1 at `long_lengths`: the tie-break after the content score."""
    values = [top1(record, name, task, n) for task in SYNTHETIC for n in long_lengths(record)]
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else 0.0


def recommend(record: dict[str, Any], among: Collection[str] | None = None) -> tuple[str | None, str]:
    """The arm to deploy (of `among`, default every converted arm) and why. Among the arms that meet the in-window
    targets (mean and min cosine, quote retrieval), the one with the best content top-1 at the two longest lengths
    (ties: passkey and needle there). Where none meets them, the best trade-off: of the arms that beat
    chunk-and-mean-pool on content there (by the paired test over the queries), the one that keeps the window best
    (highest mean cosine); where none beats it, the best content score."""
    points = [p for p in tradeoff(record) if p["score"] is not None and p["cosine"] is not None]
    points = [p for p in points if among is None or p["name"] in among]
    if not points:
        return None, "no converted arm has both an in-window cosine and a content score yet"
    keepers = [p for p in points if keeps_window(record, p["name"])]
    if keepers:
        best = max(keepers, key=lambda p: (p["score"], _synthetic(record, p["name"])))
        return best["name"], (
            "it meets the in-window targets and has the best content retrieval at "
            f"{_lengths(record)} tokens of the arms that do ({_pct(best['score'])})"
            + _tie(best, keepers, "passkey and needle there")
        )
    chunk = content_score(record, baselines(record)[1]) if baselines(record)[1] else None
    ahead = [p for p in points if chunk is not None and _ahead(record, p["name"], p["score"] - chunk)]
    if ahead:
        best = max(ahead, key=lambda p: (p["cosine"], p["score"]))
        return best["name"], (
            "best trade-off, as no arm meets the in-window targets: of the arms that beat chunk-and-mean-pool on "
            f"content at {_lengths(record)} tokens ({_pct(best['score'])} against {_pct(chunk)}), it keeps the window "
            f"best (mean cosine {best['cosine']:.4f})"
        )
    best = max(points, key=lambda p: (p["score"], p["cosine"]))
    return best["name"], (
        "best trade-off, as no arm meets the in-window targets and none beats chunk-and-mean-pool on content (by the "
        "paired test over the queries): it has "
        f"the best content retrieval at {_lengths(record)} tokens ({_pct(best['score'])})"
        + _tie(best, points, "the higher in-window cosine")
    )


def _tie(best: dict[str, Any], points: list[dict[str, Any]], breaker: str) -> str:
    """', tied with X on content; the tie goes to <breaker>' where other arms have the best one's content score."""
    tied = [p["name"] for p in points if p is not best and abs(p["score"] - best["score"]) <= EPSILON]
    return f", tied with {' and '.join(tied)} on content; the tie goes to {breaker}" if tied else ""


def _ahead(record: dict[str, Any], name: str, margin: float) -> bool:
    """Whether `name` beats chunk-and-mean-pool on content at `long_lengths`: by the paired test over their queries
    where the record has each query's rank, else by the mean's `margin`."""
    chunk = baselines(record)[1]
    mine = [h for n in long_lengths(record) for h in hits(record, name, CONTENT, n)]
    theirs = [h for n in long_lengths(record) for h in hits(record, chunk, CONTENT, n)] if chunk else []
    if mine and len(mine) == len(theirs):
        return separated(mine, theirs)
    return margin > EPSILON


def _lengths(record: dict[str, Any]) -> str:
    return " and ".join(f"{n:,}" for n in long_lengths(record))


SWEPT = re.compile(r"^(?P<family>.+)_w(?P<value>\d+(?:p\d+)?)$")  # "rope_contrastive_w1": rope_contrastive at weight 1


def sweep_choices(record: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
    """For each family of swept arms (named `<family>_w<value>`, as in the validation setting, with `p` for a decimal
    point), the arm `recommend` picks among that family's arms, and why: the value the default setting's `<family>`
    arm takes."""
    families: dict[str, list[str]] = {}
    for name in converted(record):
        if match := SWEPT.match(name):
            families.setdefault(match["family"], []).append(name)
    return {family: recommend(record, names) for family, names in families.items() if len(names) > 1}


def swept_value(name: str) -> float:
    """The swept value in an arm's name: `rope_contrastive_w0p5` -> 0.5."""
    match = SWEPT.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a swept arm (<family>_w<value>).")
    return float(match["value"].replace("p", "."))
