"""In-window fidelity as tests on a run's record (`hf_posenc.embeddings.window`)."""

from __future__ import annotations

import random
import statistics

import pytest

from hf_posenc.embeddings import window


def record_with(cosines: dict[str, list[float]], encodings: dict[str, dict]) -> dict:
    return {
        "settings": {"encodings": encodings},
        "methods": {"original, truncated at 256": {}, **{name: {} for name in cosines}},
        "fidelity": {name: {"cosines": values, "passages": len(values)} for name, values in cosines.items()},
    }


def test_the_mean_cosine_and_the_paired_difference_carry_intervals_over_the_passages():
    rng = random.Random(0)
    rope = [0.9 + rng.uniform(-0.05, 0.05) for _ in range(64)]
    tokens = [c + 0.01 for c in rope]  # every passage exactly 0.01 closer: the paired test sees no noise
    noisy = [c + rng.uniform(-0.03, 0.03) for c in rope]  # no change on average
    record = record_with(
        {"alibi": [0.99] * 64, "rope": rope, "rope_tokens": tokens, "rope_noisy": noisy},
        {"alibi": {}, "rope": {}, "rope_tokens": {"encoding": "rope"}, "rope_noisy": {"encoding": "rope"}},
    )
    assert window.families(record) == {"alibi": ["alibi"], "rope": ["rope", "rope_tokens", "rope_noisy"]}
    interval = window.mean_cosine(record, "rope")
    assert interval.mean == pytest.approx(statistics.fmean(rope))
    half = 1.96 * statistics.stdev(rope) / 8  # the normal approximation of the bootstrap interval
    assert interval.high - interval.mean == pytest.approx(half, rel=0.2)
    gain = window.cosine_gain(record, "rope_tokens", "rope")
    assert gain.mean == pytest.approx(0.01) and gain.high - gain.low < 1e-6
    assert not window.cosine_gain(record, "rope_noisy", "rope").separated
    text = window.verdict(record, "rope", window.families(record)["rope"])
    assert text.startswith("no arm meets the cosine targets") and "the closest is rope_tokens" in text
    assert "rope_tokens is above rope (+0.0100" in text and "rope_noisy does not separate from rope (" in text
    from hf_posenc.embeddings.report import change_lines

    lines = change_lines(record)  # results.md: families with a reference and other arms only
    assert [line for line in lines if line.startswith("- ")] == [f"- rope: {text}"]
    del record["fidelity"]["rope_noisy"]["cosines"]  # an older record: no section rather than an error
    assert change_lines(record) == []


def test_keeping_the_window_needs_the_mean_and_the_lowest_cosine():
    record = record_with(
        {"rope": [0.995] * 10, "rope_low": [0.995] * 9 + [0.96], "rope_mean": [0.985] * 10},
        {"rope": {}, "rope_low": {"encoding": "rope"}, "rope_mean": {"encoding": "rope"}},
    )
    assert window.meets_cosine_targets(record, "rope")
    assert not window.meets_cosine_targets(record, "rope_low") and not window.meets_cosine_targets(record, "rope_mean")
    text = window.verdict(record, "rope", ["rope", "rope_low", "rope_mean"])
    assert text.startswith("rope meets the cosine targets (") and "rope_mean is below rope (" in text
    at_threshold = record_with({"rope": [0.97, 1.0, 1.0]}, {"rope": {}})  # mean 0.99 in floats: a hair below
    assert window.meets_cosine_targets(at_threshold, "rope")
    no_reference = window.verdict(record, "learned", ["rope_low"])
    assert no_reference.endswith("(no reference arm to compare with).")


def test_a_record_without_per_passage_cosines_is_refused_plainly():
    record = {"settings": {"encodings": {"rope": {}}}, "fidelity": {"rope": {"mean_cosine": 0.9, "passages": 8}}}
    with pytest.raises(ValueError, match="keeps no per-passage cosines for 'rope'"):
        window.mean_cosine(record, "rope")
