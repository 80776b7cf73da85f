"""Every `hf-posenc` command: exit codes and output, in process (typer's runner) and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from rich.console import Console
from transformers import AutoModelForCausalLM, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel
from typer.testing import CliRunner

import hf_posenc
from hf_posenc import cli, evaluation
from hf_posenc.cli import app
from hf_posenc.data import gpt2_tokenizer

WINDOW = 16
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """An unconverted tiny GPT-2 with the GPT-2 tokenizer, saved like a Hub checkpoint."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=WINDOW, vocab_size=50257)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, : 2 * config.n_embd] *= 10
    folder = tmp_path_factory.mktemp("cli") / "tiny-gpt2"
    model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rope_dir(base_dir) -> Path:
    out = base_dir.parent / "tiny-rope"
    result = invoke("convert", base_dir, "--to", "rope", "--theta", "500", "--out", out, "--base-model", "someone/gpt2")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "held_out.txt"
    path.write_text(hf_posenc.data.texts("eval")[0][:6000])
    return path


def fake_hub(monkeypatch, root: Path, fail: bool = False) -> list[dict]:
    commits: list[dict] = []

    def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def create_commit(api, repo_id, operations, **kwargs):
        if fail:
            raise ConnectionError("Network is unreachable")
        folder = root / f"commit{len(commits)}"
        for op in operations:
            (folder / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
            content = op.path_or_fileobj  # a path or bytes, as HfApi accepts
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            (folder / op.path_in_repo).write_bytes(data)
        commits.append({"repo_id": repo_id, "folder": folder})
        return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return commits


def test_console_script_is_declared():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("hf-posenc") == "_hf_posenc_cli:run"


def test_help_and_usage_errors_import_neither_torch_nor_transformers():
    """The installed console script answers --help without importing hf_posenc's package (torch, transformers)."""
    code = """if True:
        import sys
        from importlib.metadata import entry_points

        (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "hf-posenc"]
        run = script.load()
        for argv in (["--help"], ["convert", "--help"], ["eval", "--help"], ["convert"], ["bogus"]):
            sys.argv = ["hf-posenc", *argv]
            try:
                run()
            except SystemExit:
                pass
        heavy = ("torch", "transformers", "hf_posenc", "datasets", "matplotlib", "accelerate")
        print("IMPORTED", sorted(name for name in heavy if name in sys.modules))
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED []"
    assert "Usage: hf-posenc convert" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [[], ["convert"], ["push"], ["eval"], ["encodings"], ["info"]])
def test_help_everywhere(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_encodings_lists_every_encoding_and_option():
    result = invoke("encodings", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(hf_posenc.available_encodings(), default=str))
    table = invoke("encodings")
    assert table.exit_code == 0
    for name in hf_posenc.available_encodings():
        assert name in table.stdout


def test_encodings_keep_option_names_whole_at_80_columns(monkeypatch):
    monkeypatch.setattr(cli, "out", Console(width=80, soft_wrap=True))
    table = invoke("encodings")
    assert table.exit_code == 0 and "…" not in table.stdout
    words = set(table.stdout.replace("│", " ").split())
    for spec in hf_posenc.available_encodings().values():
        assert set(spec["options"]) <= words


def test_options_are_spelled_as_the_help_shows_them(base_dir, tmp_path):
    for spec in hf_posenc.available_encodings().values():  # `hf-posenc encodings` prints defaults with repr()
        for option in spec["options"].values():
            assert cli.parse_value(repr(option["default"])) == option["default"]
    yarn = "scaling={'rope_type': 'yarn', 'factor': 4.0}"  # as `hf-posenc encodings` prints the example
    python = cli.parse_options(["per_layer=True", "max_positions=None", yarn])
    json_ = cli.parse_options(["per_layer=true", "max_positions=null", 'scaling={"rope_type": "yarn", "factor": 4.0}'])
    expected = {"per_layer": True, "max_positions": None, "scaling": {"rope_type": "yarn", "factor": 4.0}}
    assert python == json_ == expected
    strings = cli.parse_options(["method=interpolate", "theta=5e5", "method2='copy'"])
    assert strings == {"method": "interpolate", "theta": 500000.0, "method2": "copy"}

    out = tmp_path / "yarn"
    result = invoke("convert", base_dir, "--to", "rope", "-o", yarn, "--out", out)
    assert result.exit_code == 0, result.output
    options = json.loads((out / "config.json").read_text())["position_encoding_options"]
    assert options["scaling"]["rope_type"] == "yarn" and options["scaling"]["factor"] == 4.0


def test_convert_matches_the_python_api(base_dir, rope_dir):
    files = {p.name for p in rope_dir.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json", "modeling_posenc_gpt2.py"} <= files
    config = json.loads((rope_dir / "config.json").read_text())
    assert config["position_encoding"] == "rope" and config["position_encoding_options"]["theta"] == 500.0
    assert ModelCard.load(rope_dir / "README.md").data.base_model == "someone/gpt2"

    reference = hf_posenc.convert(GPT2LMHeadModel.from_pretrained(base_dir).eval(), "rope", theta=500.0)
    converted = AutoModelForCausalLM.from_pretrained(rope_dir).eval()
    ids = torch.randint(0, 50257, (1, 4 * WINDOW))
    with torch.no_grad():
        torch.testing.assert_close(converted(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_convert_with_generic_options_to_the_default_folder(base_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("convert", base_dir, "--to", "learned", "-o", "max_positions=64", "-o", "method=interpolate")
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny-gpt2-learned"
    config = json.loads((out / "config.json").read_text())
    assert config["position_encoding_options"] == {"max_positions": 64, "method": "interpolate", "keep": 20}
    assert config["n_positions"] == 64


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--to", "bogus"], 1, "Unknown position encoding 'bogus'"),
        (["--to", "rope", "-o", "foo=1"], 1, "Unknown option(s) ['foo']"),
        (["--to", "rope", "-o", "theta=-5"], 1, "must be a positive number"),
        (["--to", "alibi", "--theta", "5"], 2, "--theta applies only to --to rope"),
        (["--to", "rope", "-o", "novalue"], 2, "expected KEY=VALUE"),
        (["--theta", "5"], 2, "Missing option"),
        (["--to", "learned", "--max-length", "65"], 1, "max_length=65 is past the 64 rows of the learned"),
        (["--to", "rope", "--max-length", "0"], 2, "Invalid value for '--max-length'"),
        (["--to", "rope", "-o", "max_length=64"], 2, "use --max-length for max_length"),
        (["--to", "rope", "--theta", "5e5", "-o", "theta=1e4"], 2, "--theta 500000 and -o theta=10000.0 both set"),
        (["--to", "rope", "-o", "theta=1e4", "-o", "theta=2e4"], 2, "theta is given twice"),
    ],
)
def test_convert_errors_are_one_line(base_dir, tmp_path, args, code, message):
    result = invoke("convert", base_dir, *args, "--out", tmp_path / "out")
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    if code == 1:
        lines = [line for line in result.stderr.splitlines() if "error:" in line]  # loading may print progress first
        assert len(lines) == 1 and lines[0].startswith("error:") and result.stderr.rstrip().endswith(lines[0])
    assert not (tmp_path / "out").exists()


def test_convert_declares_a_maximum_length_in_config_tokenizer_and_info(base_dir, rope_dir, tmp_path):
    default = json.loads(invoke("info", rope_dir, "--json").stdout)
    assert default["declared_max_length"] == default["tokenizer_max_length"] == 4 * WINDOW
    out = tmp_path / "declared"
    result = invoke("convert", base_dir, "--to", "alibi", "--max-length", "100", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["n_positions"] == 100
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 100
    details = json.loads(invoke("info", out, "--json").stdout)
    assert details["declared_max_length"] == details["tokenizer_max_length"] == 100
    assert details["trained_context_length"] == WINDOW
    table = invoke("info", out)
    assert table.exit_code == 0 and "declared max length" in table.stdout and "100" in table.stdout


def test_convert_refuses_bad_sources_and_targets(base_dir, rope_dir, tmp_path):
    missing = invoke("convert", tmp_path / "no" / "such" / "model", "--to", "rope")
    assert missing.exit_code == 1 and "neither an existing folder nor a Hub model id" in missing.stderr
    twice = invoke("convert", rope_dir, "--to", "alibi", "--out", tmp_path / "twice")
    assert twice.exit_code == 1 and "already converted" in twice.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = invoke("convert", base_dir, "--to", "rope", "--out", tmp_path / "taken")
    assert taken.exit_code == 1 and "--overwrite" in taken.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_debug_shows_the_exception(base_dir, tmp_path):
    result = runner.invoke(app, ["--debug", "convert", str(base_dir), "--to", "bogus", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert isinstance(result.exception, hf_posenc.PositionEncodingError)


def test_convert_and_push(base_dir, tmp_path, monkeypatch):
    commits = fake_hub(monkeypatch, tmp_path / "hub")
    out = tmp_path / "alibi"
    result = invoke("convert", base_dir, "--to", "alibi", "--out", out, "--push-to-hub", "me/tiny-alibi", "--private")
    assert result.exit_code == 0, result.output
    assert "Pushed to me/tiny-alibi" in result.stdout
    assert [c["repo_id"] for c in commits] == ["me/tiny-alibi"]
    pushed = {p.relative_to(commits[0]["folder"]) for p in commits[0]["folder"].rglob("*")}
    assert pushed == {p.relative_to(out) for p in out.rglob("*")}
    card = ModelCard.load(commits[0]["folder"] / "README.md")
    assert "alibi" in card.data.tags and 'from_pretrained("me/tiny-alibi", trust_remote_code=True)' in card.text


def test_failed_push_exits_3_and_push_retries(rope_dir, tmp_path, monkeypatch):
    fake_hub(monkeypatch, tmp_path / "hub", fail=True)
    failed = invoke("push", rope_dir, "me/tiny-rope")
    assert failed.exit_code == 3, failed.output
    assert "Network is unreachable" in failed.stderr and "hf-posenc push" in " ".join(failed.stderr.split())
    assert (rope_dir / "model.safetensors").is_file()
    commits = fake_hub(monkeypatch, tmp_path / "hub")
    retried = invoke("push", rope_dir, "me/tiny-rope")
    assert retried.exit_code == 0, retried.output
    assert (commits[0]["folder"] / "model.safetensors").read_bytes() == (rope_dir / "model.safetensors").read_bytes()


def test_push_refuses_an_unconverted_folder(base_dir, tmp_path, monkeypatch):
    commits = fake_hub(monkeypatch, tmp_path / "hub")
    result = invoke("push", base_dir, "me/not-converted")
    assert result.exit_code == 1 and "not one converted by hf_posenc" in result.stderr
    assert commits == []


def test_info(rope_dir, base_dir, tmp_path):
    result = invoke("info", rope_dir, "--json", "--check-load")
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert details["base_model"] == "someone/gpt2"
    assert details["position_encoding"] == "rope" and details["position_encoding_options"]["theta"] == 500.0
    assert details["trained_context_length"] == WINDOW
    assert details["loads_without_hf_posenc"] is True and details["load_check"].startswith("PosEncGPT2LMHeadModel")
    table = invoke("info", rope_dir)
    assert table.exit_code == 0 and "rope" in table.stdout and "someone/gpt2" in table.stdout

    unconverted = invoke("info", base_dir)
    assert unconverted.exit_code == 1 and "not one converted by hf_posenc" in unconverted.stderr
    assert invoke("info", tmp_path).exit_code == 1

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in rope_dir.iterdir():
        if path.name != "posenc_base.py":
            (broken / path.name).write_bytes(path.read_bytes())
    result = invoke("info", broken, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["remote_code_problems"] == ["missing posenc_base.py"]


def test_eval_passes_its_arguments_to_the_library(rope_dir, text_file, tmp_path, monkeypatch):
    calls = []

    def fake_evaluate(model, tokenizer, texts, lengths, **kwargs):
        calls.append({"model": model, "texts": texts, "lengths": lengths, **kwargs})
        return {"lengths": lengths, "perplexity": [{"length": n, "mode": "chunked", "status": "ok"} for n in lengths]}

    monkeypatch.setattr(evaluation, "evaluate_long_context", fake_evaluate)
    args = ["--text", text_file, "--stride", "8", "--no-passkey", "--no-sliding", "--out", tmp_path / "r"]
    result = invoke("eval", rope_dir, *args)
    assert result.exit_code == 0, result.output
    (call,) = calls
    assert call["lengths"] == [WINDOW, 2 * WINDOW, 4 * WINDOW, 8 * WINDOW]
    assert call["stride"] == 8 and call["passkey"] is False and call["out_dir"] == tmp_path / "r"
    assert call["sliding"] is False
    assert call["texts"] == [text_file.read_text()]
    assert call["model"].config.position_encoding == "rope"
    assert "Perplexity" in result.stdout and str(8 * WINDOW) in result.stdout

    for bad in ("0,16", "16,abc", ""):
        assert invoke("eval", rope_dir, "--lengths", bad).exit_code == 2
    assert invoke("eval", rope_dir, "--text", tmp_path / "missing.txt").exit_code == 1
    assert len(calls) == 1


def test_eval_runs_the_long_context_evaluation(rope_dir, base_dir, text_file, tmp_path):
    lengths = f"{WINDOW},{4 * WINDOW}"
    out = tmp_path / "results"
    args = ["--lengths", lengths, "--text", text_file, "--max-tokens", "256"]
    result = invoke("eval", rope_dir, *args, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["perplexity"]
    assert {(r["length"], r["status"]) for r in records} == {(WINDOW, "ok"), (4 * WINDOW, "ok")}
    assert all(r["perplexity"] > 1 for r in records)
    assert {"results.json", "results.md"} <= {p.name for p in out.iterdir()}

    original = invoke("eval", base_dir, *args, "--no-passkey", "--json")
    assert original.exit_code == 0, original.output
    statuses = {(r["length"], r["status"]) for r in json.loads(original.stdout)["perplexity"]}
    assert (WINDOW, "ok") in statuses and (4 * WINDOW, "ok") not in statuses


def test_eval_refuses_a_model_without_a_language_model_head(text_file, tmp_path):
    """A BertModel (e.g. all-MiniLM-L6-v2), converted or not, gets one line saying what is needed instead."""
    small = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    config = BertConfig(**small, vocab_size=50257, max_position_embeddings=WINDOW)
    for converted in (False, True):
        model = BertModel(config)
        if converted:
            hf_posenc.convert(model, "rope")
        folder = tmp_path / f"encoder-{converted}"
        model.save_pretrained(folder)
        gpt2_tokenizer().save_pretrained(folder)
        result = invoke("eval", folder, "--lengths", str(WINDOW), "--text", text_file, "--no-passkey")
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and "logits" not in result.output
        (line,) = [line for line in result.stderr.splitlines() if "error:" in line]  # after loading's progress
        assert result.stderr.rstrip().endswith(line)
        assert line.startswith(f"error: {type(model).__name__} has no language-model head")
        assert "BertForMaskedLM" in line and "recipes/extend_sentence_encoder.py" in line


def test_eval_out_without_matplotlib_writes_results_json(rope_dir, text_file, tmp_path, monkeypatch, caplog):
    """A base install (no matplotlib): hf_posenc.evaluation imports, and --out gets results.json and a pointer to
    the extra that draws the plots."""
    monkeypatch.setattr(hf_posenc, "evaluation", evaluation)  # restored afterwards, like the sys.modules entries
    for name in [m for m in sys.modules if m.startswith(("hf_posenc.evaluation", "matplotlib"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    out = tmp_path / "base-install"
    args = ["--lengths", str(WINDOW), "--text", text_file, "--max-tokens", "64", "--no-passkey", "--no-sliding"]
    result = invoke("eval", rope_dir, *args, "--out", out)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert json.loads((out / "results.json").read_text())["models"]["tiny-rope"]["perplexity"][0]["status"] == "ok"
    assert "pip install 'hf_posenc[train]'" in caplog.text


def test_real_process_exit_code_and_one_line_error(base_dir, tmp_path):
    command = [sys.executable, "-m", "hf_posenc.cli", "convert", str(base_dir), "--to", "bogus"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 1
    names = ", ".join(sorted(hf_posenc.available_encodings()))
    assert run.stderr.strip().splitlines() == [f"error: Unknown position encoding 'bogus'. Available: {names}."]
