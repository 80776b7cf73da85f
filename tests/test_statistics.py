"""The study's statistics: t intervals over seeds, the bootstrap over scored text, and both together."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from hf_posenc.evaluation.statistics import (
    bootstrap_se,
    combined_interval,
    gap_closed,
    paired_difference,
    proportion_interval,
    t_critical,
    within,
)


def test_t_critical_values_are_students():
    assert t_critical(2) == pytest.approx(4.303, abs=1e-3)  # 3 seeds
    assert t_critical(4) == pytest.approx(2.776, abs=1e-3)
    assert t_critical(1e6) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        t_critical(0)


def test_three_seeds_use_two_degrees_of_freedom():
    """The old rule (mean over 2 standard errors) called t = 3.24 a rise; with 3 seeds it is not separated."""
    values = [0.010, 0.016, 0.0235]  # mean 0.0165, t = mean / (sd / sqrt 3)
    t = statistics.fmean(values) / (statistics.stdev(values) / math.sqrt(3))
    assert 2 < t < 4.303
    interval = combined_interval(values)
    assert interval.df == pytest.approx(2) and not interval.separated
    assert interval.low == pytest.approx(interval.mean - 4.303 * interval.se_seed, abs=1e-4)


def test_text_error_widens_the_interval_and_raises_the_degrees_of_freedom():
    seeds_only = combined_interval([1.0, 1.1, 0.9])
    both = combined_interval([1.0, 1.1, 0.9], se_text=0.2, text_units=100)
    assert both.high - both.low > seeds_only.high - seeds_only.low
    assert both.se_text == 0.2 and 2 < both.df < 99
    total = math.hypot(both.se_seed, 0.2)
    assert both.high - both.mean == pytest.approx(t_critical(both.df) * total)


def test_one_seed_counts_only_the_text_error():
    interval = combined_interval([2.0], se_text=0.5, text_units=1000)
    assert interval.se_seed == 0 and interval.df == pytest.approx(999)
    assert combined_interval([2.0]).low == combined_interval([2.0]).high == 2.0


def test_bootstrap_matches_the_standard_error_of_a_mean():
    rng = random.Random(1)
    values = [rng.gauss(0, 1) for _ in range(400)]
    analytic = statistics.stdev(values) / math.sqrt(len(values))
    assert bootstrap_se([values], resamples=2000) == pytest.approx(analytic, rel=0.1)


def test_bootstrap_resamples_the_same_units_for_every_seed():
    """Two seeds with the same per-unit values shifted by a constant: their difference has no text error."""
    rng = random.Random(0)
    units = [rng.gauss(5, 2) for _ in range(50)]
    shifted = [u + 0.3 for u in units]
    paired = paired_difference([shifted, shifted], [units, units])
    assert paired.se_text == pytest.approx(0.0, abs=1e-12) and paired.mean == pytest.approx(0.3)
    unpaired = bootstrap_se([[a - b for a, b in zip(shifted, reversed(units))]])
    assert unpaired > 0.1


def test_paired_difference_takes_one_reference_row_for_every_seed():
    treated = [[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]
    found = paired_difference(treated, [[1.0, 2.0, 3.0]])
    assert found.mean == pytest.approx(0.25) and found.seeds == 2
    with pytest.raises(ValueError):
        paired_difference(treated, [[1.0, 2.0, 3.0]] * 3)


def test_proportion_interval_is_never_degenerate_and_stays_in_0_1():
    none = proportion_interval([[0] * 100, [0] * 100, [0] * 100])
    assert none.mean == 0 and none.low == 0 and 0 < none.high < 0.05
    half = proportion_interval([[1, 0] * 50, [1, 0] * 50, [1, 0] * 50])
    assert half.low < 0.5 < half.high and half.high - half.low < 0.2
    few = proportion_interval([[1] * 15, [1] * 15, [1] * 15])
    assert few.high == 1 and few.low < 0.95  # 15 prompts cannot show 95%


def test_within_is_a_test_on_the_upper_end():
    close = combined_interval([0.010, 0.012, 0.011])
    assert within(close, 0.02)
    noisy = combined_interval([0.0, 0.01, 0.03])
    assert noisy.mean < math.log1p(0.02) and not within(noisy, 0.02)


def test_gap_closed():
    assert gap_closed(1.0, 0.05) == pytest.approx(0.95)
    assert gap_closed(1.0, 1.0) == 0.0


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    from hf_posenc.evaluation.statistics import mcnemar_p

    assert mcnemar_p([1, 1, 1, 1, 0], [0, 0, 0, 0, 0]) == pytest.approx(0.125)  # 4 of 4 one way: 2 x 0.5^4
    assert mcnemar_p([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]) == pytest.approx(0.0625)
    assert mcnemar_p([1, 0, 1, 1], [1, 0, 1, 1]) == 1.0  # no discordant pair
    assert mcnemar_p([1, 0], [0, 1]) == pytest.approx(1.0)  # one each way
    with pytest.raises(ValueError):
        mcnemar_p([1, 0], [1])
