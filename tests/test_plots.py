"""The committed figures keep their structural promises: one panel per perplexity mode, one short legend, a linear
axis over a small range, the finding in the title (from the data), titles inside the figure, and benchmark panels
whose y labels say which way is better. Checked on the matplotlib Figure objects the plotting functions return."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from benchmarks.report import plot, settings_from_record  # noqa: E402
from hf_posenc.evaluation.report import plot_passkey, plot_perplexity  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW, LENGTHS = 128, [128, 256, 512, 1024]


def result(chunked: list[float | None], sliding: list[float | None] | None = None, passkey: bool = False) -> dict:
    """One model's evaluation in the documented shape; None = the model cannot run at that length."""
    records = []
    for mode, values in (("chunked", chunked), ("sliding", sliding)):
        for length, value in zip(LENGTHS, values or []):
            status = "unsupported" if value is None else "ok"
            records.append({"length": length, "mode": mode, "status": status, "perplexity": value})
    keys = None
    if passkey:
        accuracy = [[None if v is None else 0.0] * 5 for v in chunked]
        by_length = [None if v is None else 0.0 for v in chunked]
        keys = {
            "lengths": LENGTHS,
            "depths": [0, 0.25, 0.5, 0.75, 1],
            "accuracy": accuracy,
            "accuracy_by_length": by_length,
        }
    return {"model": {"trained_context_length": WINDOW}, "perplexity": records, "passkey": keys}


def study(best_past_window: str = "alibi", scale: float = 1.0) -> dict[str, dict]:
    """Eight models as in the swap study: two originals that stop at the window, two with identical numbers."""
    near = [1216.0, 1215.0, 1217.0, 1212.0]
    models = {
        "original (no fine-tuning)": result([1188.0, None, None, None], [1163.0, None, None, None]),
        "original + fine-tuning": result([1222.0, None, None, None], [1194.0, None, None, None]),
        "rope": result([1236.0, 1232.0, 1230.0, 1227.0], [1215.0, 1203.0, 1153.0, 1126.0]),
        "t5_bias": result([1234.0, 1234.0, 1241.0, 1240.0], [1217.0, 1215.0, 1169.0, 1139.0]),
        "alibi": result([1216.0, 1220.0, 1225.0, 1229.0], [1199.0, 1194.0, 1144.0, 1115.0]),
        "sinusoidal": result([1219.0, 1226.0, 1243.0, 1233.0], [1197.0, 1203.0, 1175.0, 1131.0]),
        "learned": result([1222.0, 1222.0, 1225.0, 1221.0], [1194.0, 1199.0, 1152.0, 1124.0]),
        "nope": result([1234.0, 1234.0, 1241.0, 1240.0], [1217.0, 1215.0, 1169.0, 1139.0]),
    }
    models[best_past_window] = result(near, [1199.0, 1190.0, 1140.0, 1110.0])
    for name, model in models.items():
        if name.startswith("original"):
            continue
        for record in model["perplexity"]:
            if record["length"] > WINDOW:
                record["perplexity"] *= scale ** ((record["length"] // WINDOW).bit_length() - 1)
    return models


def legend_texts(fig) -> list[str]:
    assert all(ax.get_legend() is None for ax in fig.axes), "one legend for the figure, none per panel"
    assert len(fig.legends) == 1
    return [text.get_text() for text in fig.legends[0].get_texts()]


def inside(fig, artist) -> bool:
    canvas = FigureCanvasAgg(fig)  # a closed figure has lost its pyplot canvas; draw it as savefig does
    canvas.draw()
    renderer = canvas.get_renderer()
    box, page = artist.get_window_extent(renderer), fig.bbox
    return box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1


def test_perplexity_figure_has_one_panel_per_mode_and_one_short_legend(tmp_path):
    models = study()
    fig = plot_perplexity(models, LENGTHS, tmp_path / "ppl.png")
    assert (tmp_path / "ppl.png").read_bytes()[:4] == b"\x89PNG"
    chunked, sliding = fig.axes
    assert "chunks" in chunked.get_title() and "sliding" in sliding.get_title()
    # each panel holds one mode only: the sliding panel's alibi line is the sliding numbers
    alibi = next(line for line in sliding.get_lines() if line.get_label() == "alibi")
    assert list(alibi.get_ydata()) == [1199.0, 1190.0, 1140.0, 1110.0]
    texts = legend_texts(fig)
    assert len(texts) == len(set(texts)) <= len(models) - 1  # one entry per line, identical curves share one
    assert "t5_bias = nope" in texts  # not one line hidden under another


def test_perplexity_axis_is_linear_over_a_small_range_and_log_over_a_large_one():
    small = plot_perplexity(study(), LENGTHS, None)
    assert [ax.get_yscale() for ax in small.axes] == ["linear", "linear"]
    large = plot_perplexity(study(scale=3.0), LENGTHS, None)  # perplexity x27 at 8x the window
    assert [ax.get_yscale() for ax in large.axes] == ["log", "log"]


@pytest.mark.parametrize("best", ["alibi", "learned"])
def test_perplexity_title_states_the_finding_computed_from_the_data(best):
    fig = plot_perplexity(study(best_past_window=best), LENGTHS, None)
    title = fig._suptitle.get_text() if fig._suptitle else ""
    assert "past the trained window (128 tokens)" in title and f"{best} in both modes" in title
    assert all(f"{best} lowest" in ax.get_title() for ax in fig.axes)
    assert "1212 at 1024" in fig.axes[0].get_title()  # the best value, where it was measured


def test_single_model_passkey_title_fits_in_the_figure():
    fig = plot_passkey({"original": result([1188.0, None, None, None], passkey=True)}, None)
    assert inside(fig, fig._suptitle), fig._suptitle.get_text()
    assert "grey" in fig._suptitle.get_text()


@pytest.mark.parametrize("study", ["swap_study", "swap_study_long"])
def test_committed_swap_study_figure_keeps_its_promises(study):
    gpt2 = json.loads((ROOT / "results" / study / "results.json").read_text())["gpt2"]
    fig = plot_perplexity(gpt2["models"], gpt2["lengths"], None)
    modes = {r["mode"] for result in gpt2["models"].values() for r in result["perplexity"]}
    assert len(fig.axes) == len(modes) and all(ax.get_yscale() == "linear" for ax in fig.axes)
    assert len(legend_texts(fig)) <= len(gpt2["models"])
    assert all(inside(fig, text) for text in [fig._suptitle, *(ax.title for ax in fig.axes)])


def test_benchmark_panels_say_which_way_is_better_and_share_one_legend():
    record = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    settings = settings_from_record(record)
    fig = plot(None, record["rows"], settings)
    speed_axes, cost_axes = fig.axes[0::2], fig.axes[1::2]
    assert len(speed_axes) == len(settings.backends)
    for ax in speed_axes:
        assert "higher is better" in ax.get_ylabel()
        ticks = " ".join(tick.get_text() for tick in ax.get_xticklabels())
        assert "decode" not in ticks and "memory" not in ticks  # speed only: nothing where lower is better
    for ax in cost_axes:
        assert "lower is better" in ax.get_ylabel()
        ticks = [tick.get_text() for tick in ax.get_xticklabels()]
        assert ticks and all(tick.endswith(("latency", "memory")) for tick in ticks)
    assert legend_texts(fig) == list(settings.encodings)


def test_single_model_perplexity_title_says_how_it_fares_past_the_window():
    fig = plot_perplexity({"rope": study()["rope"]}, LENGTHS, None)
    assert fig._suptitle and "rope: perplexity at 1024 against the trained window" in fig._suptitle.get_text()
    assert "-0.7% (chunked)" in fig._suptitle.get_text()  # 1227 / 1236 - 1
