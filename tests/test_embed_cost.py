"""benchmarks/embed_cost.py: the quick run's JSON and Markdown, and ratios taken against the chunk-mean row of the same
length in the same run."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import embed_cost

VARIANTS = [embed_cost.CHUNK_MEAN, *embed_cost.ENCODINGS]


def test_quick_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "cost.json"
    threads = torch.get_num_threads()
    embed_cost.main(["--quick", "--out", str(out)])
    assert torch.get_num_threads() == threads  # one thread while measuring, then as it was
    record = json.loads(out.read_text())
    assert record["threads"] == 1 and record["torch"] == torch.__version__
    assert {"cpu", "cpu_count", "torch", "transformers", "command", "date_utc"} <= set(record["machine"])
    rows = record["rows"]
    assert [(row["length"], row["variant"]) for row in rows] == [(n, v) for n in (64, 128) for v in VARIANTS]
    for length in (64, 128):
        mine = [row for row in rows if row["length"] == length]
        base = mine[0]
        assert base["method"] == "chunk_mean" and base["encoding"] == "original" and base["chunk_length"] == 32
        for row in mine:
            assert row["batch"] == 8 and row["padded_rows"] == 4 and row["padded_length"] == length // 2
            assert row["docs_per_s"] == pytest.approx(8 / row["median_s"])
            assert row["speed_ratio"] == pytest.approx(row["docs_per_s"] / base["docs_per_s"])
            assert row["memory_ratio"] == pytest.approx(row["peak_bytes"] / base["peak_bytes"])
            assert row["peak_bytes"] > 0 and len(row["times_s"]) == 1
        assert [row["encoding"] for row in mine[1:]] == list(embed_cost.ENCODINGS)
        assert all(row["method"] == "one_pass" and row["backend"] == "sdpa" for row in mine[1:])
    markdown = (tmp_path / "results.md").read_text()
    assert markdown == embed_cost.render_markdown(record)
    assert "| 128 | original, chunk-mean 32 |" in markdown and "| 128 | alibi |" in markdown


def synthetic_row(length: int, variant: str, docs_per_s: float, peak: int) -> dict:
    method = embed_cost.CHUNK_MEAN if variant == embed_cost.CHUNK_MEAN else embed_cost.ONE_PASS
    return {"length": length, "variant": variant, "method": method, "docs_per_s": docs_per_s, "peak_bytes": peak}


def test_ratios_are_against_the_chunk_mean_row_of_the_same_length():
    rows = [
        synthetic_row(2048, "chunk_mean", 4.0, 100),
        synthetic_row(2048, "rope", 8.0, 400),
        synthetic_row(4096, "chunk_mean", 2.0, 200),
        synthetic_row(4096, "rope", 1.0, 1000),
        synthetic_row(4096, "alibi", 3.0, 1100),
    ]
    rows = embed_cost.with_ratios(rows)
    assert [row["speed_ratio"] for row in rows] == [1.0, 2.0, 1.0, 0.5, 1.5]
    assert [row["memory_ratio"] for row in rows] == [1.0, 4.0, 1.0, 5.0, 5.5]
    assert rows[4]["memory_vs_rope"] == pytest.approx(1.1)
    record = {
        "machine": {"command": "c", "date_utc": "d", "cpu": "x", "cpu_count": 2, "torch": "t", "transformers": "v"},
        "settings": {"model": "m", "threads": 1, "batch": 8, "chunk_length": 256, "rounds": 1, "clock": "cpu"},
        "rows": [{**row, "backend": "sdpa", "chunk_length": 256} for row in rows],
    }
    markdown = embed_cost.render_markdown(record)
    assert "| 4,096 | alibi | 3.00 | 0.001 MiB | 1.50 | 5.50 | 1.10 ✓ |" in markdown
    assert "| 2,048 | original, chunk-mean 256 | 4.00 |" in markdown
