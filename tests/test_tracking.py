"""Experiment tracking (`--report_to`) through Accelerate's trackers: TensorBoard event files, offline."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from hf_posenc import data
from hf_posenc.training import CausalCollator, TrainConfig, run_cli, train
from hf_posenc.training.config import trackers
from hf_posenc.training.errors import RecipeError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES))

import finetune_clm  # noqa: E402
import finetune_mlm  # noqa: E402
import pretrain_clm  # noqa: E402
import pretrain_study_base  # noqa: E402
import swap_study  # noqa: E402


def tensorboard_run(folder: Path) -> tuple[dict[str, dict[int, float]], dict[str, object]]:
    """The scalars ({tag: {step: value}}) and the hparams (the run's config) of a TensorBoard run folder, read with
    tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = EventAccumulator(str(folder)).Reload()
    scalars = {tag: {e.step: e.value for e in run.Scalars(tag)} for tag in run.Tags()["scalars"]}
    hparams: dict[str, object] = {}
    for sub in (path for path in folder.iterdir() if path.is_dir()):  # add_hparams writes a run of its own
        try:
            content = EventAccumulator(str(sub)).Reload().PluginTagToContent("hparams")
        except KeyError:  # Accelerate's hparams.yml folder
            continue
        info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        for key, value in info.session_start_info.hparams.items():
            hparams[key] = getattr(value, value.WhichOneof("kind"))
    return scalars, hparams


def records(out: Path, event: str) -> list[dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["event"] == event]


def test_tensorboard_gets_the_config_loss_learning_rate_speed_evaluation_and_probes(tmp_path):
    """train(..., cfg with report_to="tensorboard") writes event files under output_dir/<project_name> holding what
    metrics.jsonl holds, at each optimizer step, and the run's config as hparams."""
    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    )
    blocks = torch.randint(0, 64, (40, 16), generator=torch.Generator().manual_seed(1)).tolist()
    train_set = datasets.Dataset.from_dict({"input_ids": blocks[:32]}).with_format("torch")
    eval_set = datasets.Dataset.from_dict({"input_ids": blocks[32:]}).with_format("torch")
    probe_input = torch.tensor(blocks[:2])

    def probe(m):
        return {"loss": float(m(input_ids=probe_input, labels=probe_input).loss), "note": "not a number"}

    cfg = TrainConfig(output_dir=str(tmp_path), block_size=16, batch_size=4, max_steps=4, log_every=1, eval_every=2,
                      progress=False, report_to="tensorboard").check()  # fmt: skip
    train(model, train_set, eval_set, cfg, CausalCollator(), probe=probe, probe_steps=[0, 4], project_name="tiny")
    scalars, hparams = tensorboard_run(tmp_path / "tiny")
    logged = records(tmp_path, "train")
    for tag, key in (("loss", "loss"), ("learning_rate", "lr"), ("tokens_per_second", "tokens_per_second")):
        assert scalars[f"train/{tag}"] == pytest.approx({r["step"]: r[key] for r in logged}, rel=1e-6), tag
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4] and scalars["train/tokens"][4] == 4 * 4 * 16
    evaluations = {r["step"]: r["eval_loss"] for r in records(tmp_path, "eval")}
    assert sorted(evaluations) == [2, 4] and scalars["eval/loss"] == pytest.approx(evaluations, rel=1e-6)
    assert sorted(scalars["eval/perplexity"]) == [2, 4]
    probes = {r["step"]: r["loss"] for r in records(tmp_path, "probe")}
    assert sorted(probes) == [0, 4] and scalars["probe/loss"] == pytest.approx(probes, rel=1e-6)
    assert "probe/note" not in scalars  # only numbers are tracked
    assert hparams["report_to"] == "tensorboard" and hparams["learning_rate"] == pytest.approx(cfg.learning_rate)
    assert hparams["steps"] == 4 and hparams["trainable_parameters"] > 0 and hparams["output_dir"] == str(tmp_path)


def test_a_recipe_reports_to_tensorboard(tmp_path):
    """The recipes take --report_to (a TrainConfig field: their flags), the swap study as a fine-tuning setting;
    pretrain_clm logs to output_dir/pretrain_clm."""
    from hf_posenc.training import build_parser

    parsers = [build_parser("x"), pretrain_clm.build_parser_with_shape(), pretrain_study_base.build_study_parser()]
    for parser in parsers:
        assert parser.parse_args(["--report_to", "tensorboard"]).report_to == "tensorboard"
        assert parser.parse_args([]).report_to == "none"
    assert swap_study.train_config({"report_to": "tensorboard"}, tmp_path, False).report_to == "tensorboard"

    book = data.text("austen_emma")
    files = {"train": tmp_path / "train.txt", "held": tmp_path / "held.txt"}
    files["train"].write_text(book[:6000])
    files["held"].write_text(book[20000:23000])
    out = tmp_path / "run"
    argv = [
        "--train_files", str(files["train"]), "--eval_files", str(files["held"]), "--output_dir", str(out),
        "--block_size", "32", "--batch_size", "2", "--max_steps", "2", "--log_every", "1", "--max_eval_blocks", "2",
        "--n_layer", "1", "--n_embd", "16", "--n_head", "2", "--no-progress", "--report_to", "tensorboard",
    ]  # fmt: skip
    run_cli(pretrain_clm.main, argv)
    scalars, hparams = tensorboard_run(out / "pretrain_clm")
    assert sorted(scalars["train/loss"]) == [1, 2] and sorted(scalars["eval/loss"]) == [2]
    assert hparams["max_steps"] == 2


@pytest.mark.parametrize(
    ("report_to", "installed", "message"),
    [
        ("tensorboard", [], "--report_to tensorboard: not installed (pip install tensorboard)"),
        ("tensorboard,wandb", ["tensorboard"], "--report_to wandb: not installed (pip install wandb)"),
        ("all", [], "--report_to all: no tracker is installed"),
        ("tensorbored", ["tensorboard"], "unknown tracker(s) ['tensorbored']"),
        ("none,tensorboard", ["tensorboard"], "unknown tracker(s) ['none']"),
    ],
)
def test_a_tracker_that_is_not_installed_is_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys, report_to, installed, message
):
    """Accelerate drops a tracker that is not installed without a word; the recipes refuse it with one line, before
    any data is read or folder written (the swap study: before the base is measured)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import LoggerType

    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("accelerate.tracking.get_available_trackers", lambda: [LoggerType(n) for n in installed])
    assert set(LOGGER_TYPE_TO_CLASS) >= {"tensorboard", "wandb", "mlflow"}
    with pytest.raises(RecipeError, match=re.escape(message)):
        trackers(report_to)
    out = tmp_path / "run"
    for recipe in (finetune_clm, finetune_mlm, pretrain_clm, pretrain_study_base):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(recipe.main, ["--output_dir", str(out), "--max_steps", "1", "--report_to", report_to])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err and not out.exists(), recipe
    study = ["--setting", "quick", "--out_dir", str(tmp_path / "study"), "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(swap_study.main, [*study, "--set", f"finetune.report_to={report_to}"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "study" / "results.json").exists()


def test_trackers_by_name():
    assert trackers(None) == trackers("none") == trackers("") == []
    assert trackers("tensorboard, tensorboard") == ["tensorboard"]
    assert "tensorboard" in trackers("all")
