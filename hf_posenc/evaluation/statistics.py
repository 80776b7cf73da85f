"""Statistics for claims about fine-tuning runs: intervals that count both seed noise and text-sampling noise.

A study scores each seed's model on the same held-out units (windows, spans of text or prompts). Two sources of
error matter: another seed would train another model (the spread over seeds, with seeds - 1 degrees of freedom), and
other text would give other numbers (a bootstrap over the scored units, resampled jointly for every seed so that
paired comparisons stay paired). `combined_interval` adds the two variances and takes its critical value from the t
distribution with Welch-Satterthwaite degrees of freedom; a claim is "separated" only when its interval excludes 0.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95


def t_critical(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t with `df` degrees of freedom (e.g. 4.303 for df=2 at 95%)."""
    from scipy.stats import t

    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}.")
    return float(t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval: the standard errors from seeds and text, and the degrees of freedom."""

    mean: float
    low: float
    high: float
    se_seed: float
    se_text: float
    df: float
    seeds: int

    @property
    def separated(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "separated": self.separated}


def combined_interval(
    seed_values: Sequence[float], se_text: float = 0.0, text_units: int | None = None, confidence: float = CONFIDENCE
) -> Interval:
    """The mean of per-seed values with an interval for seed and text-sampling error together.

    se_seed = std(seed_values) / sqrt(seeds); the total standard error is sqrt(se_seed^2 + se_text^2), and the degrees
    of freedom follow Welch-Satterthwaite: (seeds - 1) for the seed part, (text_units - 1) for the text part (a large
    number when `text_units` is None). One seed and no text error gives a zero-width interval; one seed counts only
    the text error."""
    values = [float(v) for v in seed_values]
    if not values:
        raise ValueError("No values.")
    n = len(values)
    mean = statistics.fmean(values)
    se_seed = statistics.stdev(values) / math.sqrt(n) if n > 1 else 0.0
    se_total = math.hypot(se_seed, se_text)
    if se_total == 0.0:
        return Interval(mean, mean, mean, 0.0, 0.0, math.inf, n)
    text_df = (text_units - 1) if text_units and text_units > 1 else 1e6
    parts = (se_seed**4 / (n - 1) if n > 1 else 0.0) + (se_text**4 / text_df)
    df = se_total**4 / parts
    half = t_critical(df, confidence) * se_total
    return Interval(mean, mean - half, mean + half, se_seed, float(se_text), df, n)


def bootstrap_se(
    units_by_seed: Sequence[Sequence[float]],
    statistic: Callable[[list[list[float]]], float] | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Standard error of `statistic` (default: the mean over seeds of each seed's mean over units) under resampling
    the units with replacement; the same resampled units serve every seed (the units are shared text)."""
    rows = [list(map(float, row)) for row in units_by_seed]
    if not rows or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError("Every seed needs the same units.")
    units = len(rows[0])
    if units < 2:
        return 0.0
    statistic = statistic or (lambda r: statistics.fmean(statistics.fmean(row) for row in r))
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        picks = [rng.randrange(units) for _ in range(units)]
        draws.append(statistic([[row[i] for i in picks] for row in rows]))
    return statistics.stdev(draws)


def paired_difference(
    treated: Sequence[Sequence[float]],
    reference: Sequence[Sequence[float]],
    resamples: int = 1000,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Mean over units of treated - reference, per seed, with seed and text error: `treated[s][u]` and
    `reference[s][u]` are seed s's value on unit u (a reference with one row, e.g. the base model, serves every
    seed). For log-perplexities the mean difference is the log of the perplexity ratio."""
    ref = [reference[0]] * len(treated) if len(reference) == 1 else list(reference)
    if len(ref) != len(treated):
        raise ValueError(f"{len(treated)} treated seeds against {len(ref)} reference seeds.")
    diffs = [[a - b for a, b in zip(t, r, strict=True)] for t, r in zip(treated, ref)]
    per_seed = [statistics.fmean(row) for row in diffs]
    se_text = bootstrap_se(diffs, resamples=resamples)
    return combined_interval(per_seed, se_text, len(diffs[0]), confidence)


def proportion_interval(hits_by_seed: Sequence[Sequence[bool]], confidence: float = CONFIDENCE) -> Interval:
    """Accuracy over prompts, per seed (each seed may draw its own prompts), with seed error and the binomial error
    of the prompts (sqrt(p(1-p)/n) per seed, averaged over seeds; with p shrunk by one hit and one miss, so that
    0% and 100% still get an interval)."""
    rates = [sum(row) / len(row) for row in hits_by_seed]
    variances = [((sum(row) + 1) / (len(row) + 2)) * (1 - (sum(row) + 1) / (len(row) + 2)) / len(row)
                 for row in hits_by_seed]  # fmt: skip
    se_text = math.sqrt(sum(variances)) / len(variances)
    interval = combined_interval(rates, se_text, min(len(row) for row in hits_by_seed), confidence)
    return Interval(interval.mean, max(0.0, interval.low), min(1.0, interval.high), interval.se_seed,
                    interval.se_text, interval.df, interval.seeds)  # fmt: skip


def mcnemar_p(treated: Sequence[float], reference: Sequence[float]) -> float:
    """Exact two-sided McNemar test of paired 0/1 outcomes (e.g. two methods' top-1 hits on the same queries): the
    binomial test of the discordant pairs at 1/2; 1.0 when there are none."""
    from scipy.stats import binomtest

    pairs = list(zip(treated, reference, strict=True))
    up, down = sum(a > b for a, b in pairs), sum(a < b for a, b in pairs)
    return 1.0 if up + down == 0 else float(binomtest(up, up + down, 0.5).pvalue)


def within(interval: Interval, tolerance: float) -> bool:
    """Whether a log-ratio interval lies wholly below log(1 + tolerance): "within tolerance", as a test."""
    return interval.high <= math.log1p(tolerance)


def gap_closed(swap_log_ratio: float, now_log_ratio: float) -> float:
    """The share of a swap's jump in log-perplexity over the reference that fine-tuning has removed."""
    return 1.0 - now_log_ratio / swap_log_ratio if swap_log_ratio else math.nan
