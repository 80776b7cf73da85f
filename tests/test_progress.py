"""--no-progress hides every progress bar of a recipe run: its own, transformers' (loading) and datasets' (map)."""

from __future__ import annotations

import datasets
import pytest
from transformers.utils import logging as transformers_logging

from hf_posenc.training import build_parser, parse_config


@pytest.fixture
def bars_restored():
    before = transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    transformers_logging.enable_progress_bar()
    datasets.enable_progress_bars()
    yield
    (transformers_logging.enable_progress_bar if before[0] else transformers_logging.disable_progress_bar)()
    (datasets.enable_progress_bars if before[1] else datasets.disable_progress_bars)()


def test_no_progress_also_hides_transformers_and_datasets_bars(bars_restored):
    cfg, _ = parse_config(build_parser("test"), [])
    assert cfg.progress and transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
    cfg, _ = parse_config(build_parser("test"), ["--no-progress"])
    assert not cfg.progress
    assert not transformers_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
