"""The benchmark code path runs end to end on a tiny shape and writes well-formed results (no time is asserted)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import report
from benchmarks.measure import median_interval, ratios
from benchmarks.models import CONTROL, ORIGINAL, QUICK, build_variants
from benchmarks.run import main, parse_case
from benchmarks.timing import peak_memory
from benchmarks.workloads import Case

ENCODINGS = ["rope", "t5_bias", "alibi"]


def test_quick_path_writes_json_markdown_and_plot(tmp_path):
    args = ["--quick", "--shape", "1,32,2,64,1", "--cases", "forward:16,train:16,decode:16"]
    args += ["--encodings", ",".join(ENCODINGS), "--backends", "sdpa", "--rounds", "2", "--min-run-time", "0"]
    main([*args, "--threads", "1", "--clock", "cpu", "--out", str(tmp_path)])

    record = json.loads((tmp_path / "results.json").read_text())
    assert record["settings"]["encodings"] == ENCODINGS and record["settings"]["clock"] == "cpu"
    assert {"torch", "transformers", "cpu", "date_utc"} <= set(record["machine"])
    rows = record["rows"]
    assert len(rows) == 3 * (1 + len(ENCODINGS))
    for row in rows:
        assert "error" not in row, row
        assert len(row["times_s"]) == 2 and all(t > 0 for t in row["times_s"])
        assert row["ratio_kind"] == ("latency" if row["case"] == "decode" else "throughput")
        for key in ("ratio", "ratio_best", "memory_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        if row["encoding"] == ORIGINAL:
            assert row["ratio"] == 1.0 and row["memory_ratio"] == 1.0
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert all(f"| {encoding} |" in markdown for encoding in ENCODINGS)
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_scaled_rope_variants_get_their_own_table_with_the_range_over_rounds(tmp_path):
    args = ["--quick", "--shape", "1,32,2,64,1", "--cases", "decode:12,decode:24", "--encodings", "rope,rope_dynamic"]
    args += ["--backends", "sdpa", "--rounds", "3", "--min-run-time", "0", "--threads", "1"]
    main([*args, "--out", str(tmp_path)])
    rows = {(r["encoding"], r["seq_len"]): r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    for row in rows.values():
        per_round = [t / o for t, o in zip(row["times_s"], rows[(ORIGINAL, row["seq_len"])]["times_s"])]
        assert row["round_ratios"] == pytest.approx(per_round)  # each round against the original of that round
        assert row["ratio_low"] == min(per_round) and row["ratio_high"] == max(per_round)
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "RoPE scaling types against plain rope" in markdown
    against_rope = rows[("rope_dynamic", 12)]["median_s"] / rows[("rope", 12)]["median_s"]
    assert f"| rope_dynamic | {against_rope:.3f} (" in markdown


def test_decode_cases_carry_their_own_batch_through_json_and_markdown(tmp_path):
    args = ["--quick", "--shape", "1,32,2,64,4", "--cases", "decode:12:1,decode:12", "--encodings", "rope,twin"]
    args += ["--backends", "sdpa", "--rounds", "3", "--min-run-time", "0", "--threads", "1"]
    main([*args, "--out", str(tmp_path)])
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["settings"]["cases"] == ["decode T=12 B=1", "decode T=12"]
    batches = {row["label"]: row["batch"] for row in record["rows"]}
    assert batches == {"decode T=12 B=1": 1, "decode T=12": 4}
    for row in record["rows"]:
        low, high = row["round_ratio_interval"]
        assert low <= row["round_ratio_median"] <= high
    assert "| twin | " in (tmp_path / "RESULTS.md").read_text()
    assert report.settings_from_record(record).cases == (Case("decode", 12, batch=1), Case("decode", 12))


def test_a_case_is_kind_length_and_optional_batch():
    assert parse_case("decode:32:1") == Case("decode", 32, batch=1)
    assert parse_case("forward:128") == Case("forward", 128)
    for bad in ("decode:32:0", "decode", "decode:32:1:2", "sample:32"):
        with pytest.raises(SystemExit, match="kind:T"):
            parse_case(bad)


def test_median_interval_takes_the_binomial_order_statistics():
    assert median_interval(list(range(1, 22))) == [6, 16]  # n = 21: ranks 6 and 16 (97 % coverage)
    assert median_interval(list(range(41, 0, -1))) == [14, 28]
    assert median_interval([3.0, 1.0, 2.0]) == [1.0, 3.0]  # too few rounds for 95 %: the whole range


def test_ratios_point_the_documented_way():
    original = {"median_s": 2.0}
    faster = ratios(Case("forward", 8), {"median_s": 1.0, "min_s": 1.0}, original, 2.0, 150, 100)
    assert faster["ratio"] == 2.0 and faster["ratio_best"] == 2.0 and faster["memory_ratio"] == 1.5
    slower_decode = ratios(Case("decode", 8), {"median_s": 3.0, "min_s": 4.0}, original, 2.0, 100, 100)
    assert slower_decode["ratio"] == 1.5 and slower_decode["ratio_best"] == 2.0


def test_variants_share_the_original_weights():
    variants = build_variants(QUICK, [*ENCODINGS, "rope_longrope"])
    assert variants["rope_longrope"].config.position_encoding_options["scaling"]["rope_type"] == "longrope"
    original = dict(variants[ORIGINAL].named_parameters())
    for encoding in [*ENCODINGS, "rope_longrope"]:
        converted = dict(variants[encoding].named_parameters())
        common = set(converted) & set(original)
        assert len(common) == len(original) - 1  # everything but the learned position table
        assert all(converted[name] is original[name] for name in common)


def test_the_twin_control_is_an_unconverted_copy_on_the_same_weights():
    variants = build_variants(QUICK, ["rope", CONTROL])
    twin, original = variants[CONTROL], variants[ORIGINAL]
    assert twin is not original and twin.config.model_type == "gpt2"
    twin_parameters = dict(twin.named_parameters())
    assert all(twin_parameters[name] is parameter for name, parameter in original.named_parameters())
    ids = torch.arange(12).unsqueeze(0)
    torch.testing.assert_close(twin(ids).logits, original(ids).logits, rtol=0, atol=0)


def test_peak_memory_sees_a_temporary_tensor():
    def allocate() -> None:
        temporary = torch.ones(1_000_000)  # 4 MB, freed on return
        temporary.sum()

    assert peak_memory(allocate) >= 4_000_000


def test_peak_memory_prints_no_profiler_lines(capfd):
    """kineto's "USDT ... profiler_start/profiler_stop" lines (two per call, on file descriptor 2) stay hidden."""
    peak_memory(lambda: torch.ones(1000).sum())
    assert "profiler_st" not in capfd.readouterr().err


def test_bad_encoding_is_one_clear_error(capsys):
    with pytest.raises(SystemExit, match="unknown encoding"):
        main(["--quick", "--encodings", "rope,nonsense"])
