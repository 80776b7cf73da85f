"""Hub helpers without network: safe save, model card, push_to_hub intercepted at HfApi's commit boundary,
and the pushed files loaded in a fresh process where hf_posenc cannot be imported."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    pipeline,
)
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

import hf_posenc
from hf_posenc.data import gpt2_tokenizer
from hf_posenc.hub import (
    UploadError,
    build_model_card,
    checkpoint_info,
    pipeline_tag_for,
    push_folder,
    push_to_hub,
    remote_code_problems,
    save_converted,
)
from hf_posenc.modeling.posenc_base import registered_encodings

MODELING_DIR = Path(hf_posenc.__file__).parent / "modeling"
TOKEN = "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"
WINDOW = 32


def tiny_gpt2(encoding: str = "rope", **options) -> GPT2LMHeadModel:
    """A 2-layer GPT-2 with q/k scaled up so that positions visibly change the logits, converted to `encoding`."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=WINDOW, vocab_size=50257)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, : 2 * config.n_embd] *= 10
    return hf_posenc.convert(model, encoding, **options)


def fake_evaluation(folder: Path) -> Path:
    folder.mkdir()
    table = "| model | 32 | 64 |\n| --- | --- | --- |\n| rope | 12.5 | 14.1 |"
    (folder / "results.md").write_text(f"# Long-context evaluation\n\n{table}\n\n![plot](perplexity_vs_length.png)\n")
    (folder / "results.json").write_text(json.dumps({"lengths": [32, 64], "models": {}}))
    (folder / "perplexity_vs_length.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


class FakeHub:
    """Stands in for the Hub at HfApi.create_repo / HfApi.create_commit; keeps the files of each commit."""

    def __init__(self, root: Path, fail_with: Exception | None = None):
        self.root = root
        self.fail_with = fail_with
        self.repos: list[dict] = []
        self.commits: list[dict] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        hub = self

        def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
            hub.repos.append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
            return f"https://huggingface.co/{repo_id}"

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            if hub.fail_with is not None:
                raise hub.fail_with
            folder = hub.root / f"commit{len(hub.commits)}"
            for op in operations:
                target = folder / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                content = op.path_or_fileobj  # a path or bytes, as HfApi accepts
                target.write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
            hub.commits.append({"repo_id": repo_id, "message": commit_message, "folder": folder})
            return f"https://huggingface.co/{repo_id}/commit/{len(hub.commits)}"

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        return self


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def expected_gpt2_files() -> set[str]:
    code = {"modeling_posenc_gpt2.py"} | {p.name for p in MODELING_DIR.glob("posenc_*.py")}
    return code | {
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "evaluation/results.md",
        "evaluation/results.json",
        "evaluation/perplexity_vs_length.png",
    }


LOAD_WITHOUT_HF_POSENC = """
import sys
sys.modules["hf_posenc"] = None
import torch
from transformers import AutoModelForCausalLM
folder, ids_path, out_path = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(input_ids=torch.load(ids_path)).logits
torch.save({"logits": logits, "class": type(model).__name__, "module": type(model).__module__}, out_path)
"""


def test_push_round_trip_loads_without_hf_posenc(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub = FakeHub(tmp_path / "hub").install(monkeypatch)
    model = tiny_gpt2("rope", theta=500.0)
    url = push_to_hub(
        model,
        "someone/tiny-gpt2-rope",
        out_dir=tmp_path / "local",
        tokenizer=gpt2_tokenizer(),
        base_model="openai-community/gpt2",
        license="mit",
        evaluation_dir=fake_evaluation(tmp_path / "eval"),
        private=True,
    )
    assert hub.repos == [{"repo_id": "someone/tiny-gpt2-rope", "private": True, "exist_ok": True}]
    assert len(hub.commits) == 1 and url.endswith("/commit/1")
    pushed = hub.commits[0]["folder"]
    assert files_under(pushed) == expected_gpt2_files()
    assert files_under(pushed) == files_under(tmp_path / "local")

    card = ModelCard.load(pushed / "README.md")
    assert card.data.base_model == "openai-community/gpt2"
    assert card.data.library_name == "transformers"
    assert card.data.license == "mit"
    assert card.data.pipeline_tag == "text-generation"
    assert {"hf_posenc", "rope"} <= set(card.data.tags)
    assert 'from_pretrained("someone/tiny-gpt2-rope", trust_remote_code=True)' in card.text
    assert f"{WINDOW} tokens" in card.text and "theta=500.0" in card.text
    assert "| rope | 12.5 | 14.1 |" in card.text
    assert "![perplexity_vs_length](evaluation/perplexity_vs_length.png)" in card.text
    assert "# Long-context evaluation" not in card.text

    for path in pushed.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err

    ids = torch.randint(0, 50257, (2, 3 * WINDOW))  # three times the old position limit
    torch.save(ids, tmp_path / "ids.pt")
    script = textwrap.dedent(LOAD_WITHOUT_HF_POSENC)
    args = [str(pushed), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")]
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["class"] == "PosEncGPT2LMHeadModel"
    assert loaded["module"].startswith("transformers_modules")
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    torch.testing.assert_close(loaded["logits"], expected, rtol=1e-5, atol=1e-5)


def test_failed_upload_keeps_the_folder_and_says_how_to_retry(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "hub", fail_with=ConnectionError("Connection refused")).install(monkeypatch)
    with pytest.raises(UploadError) as failure:
        push_to_hub(tiny_gpt2("alibi"), "someone/tiny-alibi", out_dir=tmp_path / "local")
    message = str(failure.value)
    assert "Connection refused" in message
    assert f"hf-posenc push {tmp_path / 'local'} someone/tiny-alibi" in message
    assert hub.commits == []
    assert {"config.json", "model.safetensors", "README.md", "modeling_posenc_gpt2.py"} <= files_under(
        tmp_path / "local"
    )
    assert checkpoint_info(tmp_path / "local")["position_encoding"] == "alibi"


def test_failed_save_leaves_no_half_written_checkpoint(tmp_path, monkeypatch):
    model = tiny_gpt2("t5_bias")
    original_save = model.save_pretrained

    def save_then_fail(folder, **kwargs):
        original_save(folder, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(model, "save_pretrained", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_converted(model, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "marker.txt").write_text("previous checkpoint")
    with pytest.raises(OSError, match="No space left"):
        save_converted(model, existing, overwrite=True)
    assert files_under(existing) == {"marker.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_save_refuses_to_clobber_and_overwrites_when_asked(tmp_path):
    model = tiny_gpt2("sinusoidal")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "marker.txt").write_text("previous checkpoint")
    with pytest.raises(FileExistsError, match="not empty"):
        save_converted(model, existing)
    assert files_under(existing) == {"marker.txt"}
    save_converted(model, existing, overwrite=True)
    assert "marker.txt" not in files_under(existing) and "model.safetensors" in files_under(existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_save_rejects_an_unconverted_model(tmp_path):
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=16, vocab_size=64))
    with pytest.raises(hf_posenc.PositionEncodingError, match="convert"):
        save_converted(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_card_of_a_masked_lm_without_known_licence():
    config = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=64)
    model = hf_posenc.convert(BertForMaskedLM(config), "t5_bias", num_buckets=16)
    card = build_model_card(model.config, base_model="google-bert/bert-base-uncased")
    assert card.data.pipeline_tag == "fill-mask"
    assert card.data.license is None and "license" not in card.content.split("---")[1]
    assert {"hf_posenc", "t5_bias", "posenc_bert"} <= set(card.data.tags)
    assert "AutoModelForMaskedLM" in card.text and "num_buckets=16" in card.text
    assert "No evaluation was attached" in card.text and "| rope |" not in card.text and "![" not in card.text
    assert pipeline_tag_for(["PosEncBertForMultipleChoice"]) is None  # no Hub task: no pipeline_tag
    assert pipeline_tag_for(["PosEncGPT2Model"]) == "feature-extraction"


def test_checkpoint_info_and_remote_code_check(tmp_path):
    folder = save_converted(tiny_gpt2("rope"), tmp_path / "ckpt", base_model="openai-community/gpt2")
    info = checkpoint_info(folder)
    assert info["base_model"] == "openai-community/gpt2"
    assert info["position_encoding"] == "rope" and info["trained_context_length"] == WINDOW
    assert info["model_type"] == "posenc_gpt2" and info["loads_without_hf_posenc"] is True

    (folder / "posenc_rope.py").unlink()
    assert remote_code_problems(folder) == ["missing posenc_rope.py"]
    with (folder / "posenc_alibi.py").open("a") as handle:
        handle.write("\nimport hf_posenc\n")
    assert "posenc_alibi.py imports hf_posenc" in remote_code_problems(folder)
    assert checkpoint_info(folder)["loads_without_hf_posenc"] is False


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]
TOO_LONG = "Token indices sequence length is longer than the specified maximum"


def tiny_bert_and_tokenizer() -> tuple[BertForMaskedLM, BertTokenizer]:
    """A tiny BERT with a WINDOW-row position table and a WordPiece tokenizer that says so, built offline."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=WINDOW,
    )  # fmt: skip
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)}, model_max_length=WINDOW)
    return BertForMaskedLM(config).eval(), tokenizer


def words(n: int) -> str:
    """A text of n words, one token each: n + 2 tokens with [CLS] and [SEP]."""
    return " ".join(f"w{i % 59}" for i in range(n))


def test_saved_checkpoint_declares_its_new_length_to_tokenizer_and_pipeline(tmp_path):
    model, tokenizer = tiny_bert_and_tokenizer()
    folder = save_converted(hf_posenc.convert(model, "rope"), tmp_path / "bert-rope", tokenizer=tokenizer)
    config = json.loads((folder / "config.json").read_text())
    assert config["max_position_embeddings"] == 4 * WINDOW and config["trained_context_length"] == WINDOW
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 4 * WINDOW
    assert tokenizer.model_max_length == WINDOW  # the caller's tokenizer is left as it was
    assert checkpoint_info(folder)["declared_max_length"] == 4 * WINDOW

    reloaded = AutoTokenizer.from_pretrained(folder)
    assert reloaded.model_max_length == 4 * WINDOW
    with CaptureLogger(hf_logging.get_logger("transformers.tokenization_utils_base")) as captured:
        assert len(reloaded(words(2 * WINDOW))["input_ids"]) == 2 * WINDOW + 2  # 2x the old window: no warning
    assert TOO_LONG not in captured.out

    extract = pipeline("feature-extraction", model=str(folder), tokenizer=str(folder), truncation=True)
    assert len(extract(words(2 * WINDOW))[0]) == 2 * WINDOW + 2  # kept whole, past the old window
    assert len(extract(words(5 * WINDOW))[0]) == 4 * WINDOW  # truncated at the declared length
    fill = pipeline("fill-mask", model=str(folder), tokenizer=str(folder))
    masked = words(2 * WINDOW) + " [MASK]"  # the [MASK] is past the old window: truncation there would drop it
    assert len(fill(masked, top_k=2, tokenizer_kwargs={"truncation": True})) == 2


def test_save_converted_max_length_explicit_from_evaluation_and_learned_limit(tmp_path):
    model, tokenizer = tiny_bert_and_tokenizer()
    hf_posenc.convert(model, "alibi")
    folder = save_converted(model, tmp_path / "explicit", tokenizer=tokenizer, max_length=1000)
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 1000
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 1000
    assert model.config.max_position_embeddings == 4 * WINDOW  # saving does not change the model

    runs = [(32, "ok", 10.0), (192, "ok", 14.0), (512, "error", None)]
    evaluation = evaluation_of({"m": (model, [record(n, "masked", s, p) for n, s, p in runs])}, tmp_path / "eval")
    folder = save_converted(model, tmp_path / "evaluated", tokenizer=tokenizer, evaluation_dir=evaluation)
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 192  # longest validated
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 192
    assert "| declared maximum length | 192 tokens" in (folder / "README.md").read_text()

    learned, tokenizer = tiny_bert_and_tokenizer()
    hf_posenc.convert(learned, "learned", max_positions=2 * WINDOW)
    with pytest.raises(hf_posenc.PositionEncodingError, match="past the 64 rows of the learned position table"):
        save_converted(learned, tmp_path / "learned", tokenizer=tokenizer, max_length=2 * WINDOW + 1)
    assert not (tmp_path / "learned").exists()
    folder = save_converted(learned, tmp_path / "learned", tokenizer=tokenizer, evaluation_dir=evaluation)
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 2 * WINDOW  # the table


def record(length: int, mode: str, status: str = "ok", perplexity: float | None = None) -> dict:
    """One perplexity record as `evaluate_long_context` writes it."""
    return {"length": length, "mode": mode, "status": status, "perplexity": perplexity}


def evaluation_of(models: dict[str, tuple], folder: Path) -> Path:
    """An evaluation folder whose results.json holds each named (model, perplexity records), as `write_report`
    lays it out, with each model described as `evaluate_long_context` describes it."""
    from hf_posenc.evaluation import describe

    folder.mkdir()
    results = {name: {"model": describe(model), "perplexity": records} for name, (model, records) in models.items()}
    (folder / "results.json").write_text(json.dumps({"lengths": [], "models": results}))
    return folder


def declared(folder: Path) -> int:
    return json.loads((folder / "config.json").read_text())["n_positions"]


def test_declared_length_comes_from_this_models_evaluation_within_a_perplexity_factor(tmp_path):
    """Only the saved model's own evaluation counts, and a length past the window only when its perplexity stays
    within VALIDATED_PERPLEXITY_FACTOR of the in-window perplexity, at it and every evaluated length before it."""
    from hf_posenc.hub.save import VALIDATED_PERPLEXITY_FACTOR

    rope = tiny_gpt2("rope")
    base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=8 * WINDOW, vocab_size=64))
    factor = VALIDATED_PERPLEXITY_FACTOR
    runs = {32: 10.0, 64: 10.0 * factor - 1, 128: 10.0 * factor, 256: 10.0 * factor + 1, 512: 11.0}
    sliding = [record(n, "sliding", "ok", p / 2) for n, p in runs.items()]
    evaluation = evaluation_of(
        {
            "base": (base, [record(n, "chunked", "ok", 5.0) for n in (256, 1024)]),  # another model, longer lengths
            "rope": (rope, [record(n, "chunked", "ok", p) for n, p in runs.items()] + sliding),
        },
        tmp_path / "eval",
    )
    folder = save_converted(rope, tmp_path / "ckpt", evaluation_dir=evaluation)
    assert declared(folder) == 128  # 256 is past the factor; 512, within it again, is not reached
    card = (folder / "README.md").read_text()
    assert "| declared maximum length | 128 tokens" in card
    assert f"within {factor:g}x of the in-window perplexity" in card and "model `rope`" in card

    sliding[1]["status"] = "error"  # a mode that did not run at 64 validates nothing past the window
    evaluation = evaluation_of({"rope": (rope, sliding)}, tmp_path / "eval-error")
    folder = save_converted(rope, tmp_path / "default", evaluation_dir=evaluation)
    assert declared(folder) == 4 * WINDOW and "not validated by an evaluation" in (folder / "README.md").read_text()

    folder = save_converted(
        rope, tmp_path / "other", evaluation_dir=evaluation_of({"base": (base, [])}, tmp_path / "b")
    )
    assert declared(folder) == 4 * WINDOW  # the file holds no evaluation of this model
    assert "no evaluation of this model" in (folder / "README.md").read_text()


def test_several_evaluations_of_like_models_need_a_name(tmp_path):
    rope = tiny_gpt2("rope")
    evaluation = evaluation_of(
        {name: (rope, [record(32, "chunked", "ok", 10.0), record(n, "chunked", "ok", 11.0)]) for name, n in
         [("seed0", 64), ("seed1", 96)]},
        tmp_path / "eval",
    )  # fmt: skip
    with pytest.raises(hf_posenc.PositionEncodingError, match=r"several models like this one \(seed0, seed1\)"):
        save_converted(rope, tmp_path / "ckpt", evaluation_dir=evaluation)
    assert not (tmp_path / "ckpt").exists()
    assert declared(save_converted(rope, tmp_path / "seed1", evaluation_dir=evaluation)) == 96  # named after it
    assert declared(save_converted(rope, tmp_path / "x", evaluation_dir=evaluation, max_length=200)) == 200


def test_card_follows_the_encoding_what_conversion_changes_and_its_limits():
    """Each card says what the swap does inside the trained window (checked here against the real outputs) and the
    encoding's own limits; no two encodings get the same text."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=16, vocab_size=64)
    original = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 64, (1, 16))  # exactly the trained window
    with torch.no_grad():
        expected = original(input_ids=ids).logits
    texts = {}
    for name, cls in registered_encodings().items():
        learned = [{"method": "copy"}, {"method": "interpolate"}, {"method": "keep_stretch", "keep": 4}]
        for options in learned if name == "learned" else [{}]:
            model = GPT2LMHeadModel(config).eval()
            model.load_state_dict(original.state_dict())
            hf_posenc.convert(model, name, **options)
            text = build_model_card(model.config).text
            with torch.no_grad():
                unchanged = torch.allclose(model(input_ids=ids).logits, expected)
            assert ("unchanged by the conversion" in text) == unchanged, (name, options)
            assert ("changed by the conversion" in text.replace("unchanged by", "")) == (not unchanged), name
            limits = cls.describe_limits(model.config.position_encoding_options, True)
            assert limits and f"- **Limits of `{name}`**: {limits}" in text
            texts[name, options.get("method")] = text.split("## What to expect")[1].split("## Fine-tuning")[0]
    assert len(set(texts.values())) == len(texts)
    assert "Hard limit: 64 positions" in texts["learned", "copy"]
    assert "Only the first 4 rows are the pretrained ones" in texts["learned", "keep_stretch"]
    assert "order-blind" not in texts["nope", None]  # a decoder keeps the order of its causal mask

    bert, _ = tiny_bert_and_tokenizer()
    with warnings.catch_warnings():  # the order-blind warning, however it is given
        warnings.simplefilter("ignore")
        hf_posenc.convert(bert, "nope")
    assert "this encoder is order-blind" in build_model_card(bert.config).text
    bert, _ = tiny_bert_and_tokenizer()
    assert "this encoder is order-blind" in build_model_card(hf_posenc.convert(bert, "t5_bias").config).text
    bert, _ = tiny_bert_and_tokenizer()
    window = bert.config.max_position_embeddings
    anchored = build_model_card(hf_posenc.convert(bert, "learned", max_positions=4 * window, method="anchor").config)
    expected = f"unchanged by the conversion for inputs that fit it: the base model's {window} position rows sit at"
    assert f"{expected} every 4th row" in anchored.text


@pytest.mark.parametrize("family", ["bart", "mbart"])
def test_card_describes_each_stack_of_an_encoder_decoder(family):
    """BART's encoder is bidirectional, its decoder causal: the card describes each stack's own encoding, so the
    encoder is order-blind under `nope` (and under `t5_bias` learned from zero) while the decoder keeps its mask."""
    from tests.cases import CASES

    case = next(case for case in CASES if case.name == family)
    for name, init in [("nope", {}), ("t5_bias", {}), ("t5_bias", {"init": "alibi"})]:
        with warnings.catch_warnings():  # the order-blind warning, however it is given
            warnings.simplefilter("ignore")
            config = hf_posenc.convert(case.build(), name, **init).config
        text = build_model_card(config).text
        expect = text.split("## What to expect")[1].split("## Fine-tuning")[0]
        cls, options = registered_encodings()[name], config.position_encoding_options
        blind, causal = cls.describe_limits(options, False), cls.describe_limits(options, True)
        if init:  # ALiBi's starting penalties do not depend on the direction: one line
            assert blind == causal and f"- **Limits of `{name}`**: {causal}" in expect
            assert "order-blind" not in expect
        else:
            assert f"  - the encoder (bidirectional): {blind}" in expect and "order-blind" in blind
            assert f"  - the decoder (causal): {causal}" in expect and "order-blind" not in causal
            assert f"- **Limits of `{name}`**: " not in expect
        assert ("Order comes only from the causal mask" in expect) == (name == "nope")
        stacks = "`encoder` (bidirectional), `decoder` (causal)"
        assert f"| stacks, each with its own `{name}` encoding | {stacks} |" in text


def test_card_says_whether_the_model_was_fine_tuned_after_the_swap(tmp_path):
    from hf_posenc.training import TrainConfig
    from hf_posenc.training.loop import MetricsLog

    def section(folder: Path) -> str:
        return (folder / "README.md").read_text().split("## Fine-tuning after the swap")[1].split("## How to load")[0]

    model = tiny_gpt2("rope")
    assert "**None.**" in section(save_converted(model, tmp_path / "just-converted"))
    assert "**None.**" in section(save_converted(model, tmp_path / "again"))  # saving changes no weight

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 50257, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert "Not recorded" in section(save_converted(model, tmp_path / "trained-unknown"))
    assert "**None.**" in section(save_converted(model, tmp_path / "said-untrained", training=False))

    described = {"data": "wikitext-103", "steps": 1200, "tokens": 4_915_200, "eval_loss": 3.14159, "seed": 7}
    text = section(save_converted(model, tmp_path / "trained-dict", training=described))
    assert "**Yes**" in text and "| data | wikitext-103 |" in text and "| optimizer steps | 1,200 |" in text
    assert "| tokens trained on | 4,915,200 |" in text and "| held-out loss after fine-tuning | 3.142 |" in text
    assert "| seed | 7 |" in text

    run = tmp_path / "run"  # what hf_posenc.training.train writes: train_config.json and metrics.jsonl
    run.mkdir()
    files = [str(tmp_path / "books" / "emma.txt"), str(tmp_path / "books" / "persuasion.txt")]
    cfg = TrainConfig(train_files=files, block_size=128, batch_size=4, learning_rate=3e-4, trainable="lora")
    (run / "train_config.json").write_text(json.dumps(vars(cfg), indent=2, default=str) + "\n")
    log = MetricsLog(run / "metrics.jsonl", True)
    log.write(event="start", step=0, steps=20, trainable_parameters=10, parameters=100)
    log.write(event="train", step=10, loss=4.0, lr=3e-4, tokens=10 * 512, tokens_per_second=1.0)
    log.write(event="start", step=10, steps=20, trainable_parameters=10, parameters=100)  # resumed at step 10
    log.write(event="train", step=20, loss=3.5, lr=1e-4, tokens=10 * 512, tokens_per_second=1.0)
    log.write(event="eval", step=20, eval_loss=3.25, eval_perplexity=25.8)
    log.write(event="end", step=20, eval_loss=3.25, seconds=12.0)
    text = section(save_converted(model, tmp_path / "trained-run", training=run))
    assert "| data | emma.txt, persuasion.txt |" in text and str(tmp_path) not in text  # file names, not paths
    assert "| optimizer steps | 20 |" in text and "| tokens trained on | 10,240 |" in text
    assert "| sequence length (tokens) | 128 |" in text and "| parameters trained | lora (r=8) |" in text
    assert "| peak learning rate | 0.0003 |" in text and "| held-out loss after fine-tuning | 3.25 |" in text
    assert "| conversion-aware fine-tuning | none (plain fine-tuning) |" in text
    recovery = {"distill_weight": 0.5, "distill_temperature": 1.0, "attention_transfer_weight": 2.0}
    cfg = TrainConfig(**recovery, gradual_swap_steps=0.5)
    (run / "train_config.json").write_text(json.dumps(vars(cfg), indent=2, default=str) + "\n")
    text = section(save_converted(model, tmp_path / "recovered-run", training=run))
    recovery = text.split("| conversion-aware fine-tuning | ")[1].split(" |")[0]
    assert recovery == (
        "gradual swap (the old table fades out over the first 50% of the steps, linear); distillation from the "
        "unconverted original (weight 0.5, temperature 1); attention transfer from the original (weight 2, every head)"
    )
    from hf_posenc.training.recovery.settings import describe_recovery

    assert describe_recovery({"lm_weight": 0.5}) == "LM loss weight 0.5"
    with pytest.raises(FileNotFoundError, match="train_config.json"):
        save_converted(model, tmp_path / "bad", training=tmp_path / "books")
    assert not (tmp_path / "bad").exists()


def test_card_points_to_an_evaluation_without_table_or_plots(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"lengths": [32], "models": {}}))
    text = (
        save_converted(tiny_gpt2("rope"), tmp_path / "ckpt", evaluation_dir=tmp_path / "eval") / "README.md"
    ).read_text()
    assert "No evaluation was attached" not in text and "(evaluation/results.json)" in text


def test_pushed_card_names_its_repo_and_never_a_local_path(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "hub").install(monkeypatch)
    folder = save_converted(tiny_gpt2("alibi"), tmp_path / "saved", base_model=str(tmp_path / "my-gpt2"))
    push_folder(folder, "me/x")
    push_to_hub(tiny_gpt2("alibi"), "me/y", out_dir=tmp_path / "y")
    for commit, repo in zip(hub.commits, ["me/x", "me/y"]):
        card = ModelCard.load(commit["folder"] / "README.md")
        assert f'from_pretrained("{repo}", trust_remote_code=True)' in card.text
        assert f"# {repo.split('/')[1]}: alibi position encoding" in card.text
        assert "local checkpoint" not in card.text and "path/to/this" not in card.text
        assert str(tmp_path) not in card.content
    assert ModelCard.load(hub.commits[0]["folder"] / "README.md").data.base_model is None  # a path is no Hub id
    assert "`my-gpt2`" in (hub.commits[0]["folder"] / "README.md").read_text()
    assert "path/to/this/checkpoint" in (folder / "README.md").read_text()  # the local folder is left as it was


def test_saved_folders_have_the_usual_permissions(tmp_path):
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    previous = os.umask(0o022)
    try:
        model = tiny_gpt2("rope")
        model.save_pretrained(tmp_path / "plain")
        folder = save_converted(model, tmp_path / "ckpt", evaluation_dir=fake_evaluation(tmp_path / "eval"))
        modes = {"new": mode(folder), "evaluation": mode(folder / "evaluation")}
        modes["overwritten"] = mode(save_converted(model, folder, overwrite=True))
    finally:
        os.umask(previous)
    assert mode(tmp_path / "plain") == 0o755  # what save_pretrained gives
    assert modes == {"new": 0o755, "evaluation": 0o755, "overwritten": 0o755}


def test_a_write_through_data_counts_as_a_change_since_conversion():
    """PEFT merges LoRA with `weight.data += delta`, which moves neither the storage nor the version counter."""
    from hf_posenc.convert import unchanged_since_conversion
    from tests.cases import tiny_gpt2

    model = hf_posenc.convert(tiny_gpt2(), "rope")
    assert unchanged_since_conversion(model)
    weight = model.transformer.h[0].attn.c_attn.weight
    version = weight._version
    weight.data += 0.5
    assert weight._version == version  # the case the sum is there for
    assert not unchanged_since_conversion(model)
