"""The training library under several processes and on long-context data: exact evaluation loss, data layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_posenc import data
from hf_posenc.training import CausalCollator, TrainConfig, load_documents, tokenize_and_pack, train
from hf_posenc.training.errors import RecipeError

EVALUATE = textwrap.dedent(
    """
    import json, sys
    import datasets, torch
    from accelerate import Accelerator
    from transformers import GPT2Config, GPT2LMHeadModel
    from hf_posenc.training import CausalCollator, TrainConfig
    from hf_posenc.training.loop import evaluate_loss

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=64)).eval()
    blocks = torch.randint(0, 64, (7, 16), generator=torch.Generator().manual_seed(1))
    dataset = datasets.Dataset.from_dict({"input_ids": blocks.tolist()}).with_format("torch")
    accelerator = Accelerator(cpu=True)
    loss = evaluate_loss(model, dataset, TrainConfig(batch_size=2), CausalCollator(), accelerator)
    if accelerator.is_main_process:
        print(json.dumps({"loss": loss, "processes": accelerator.num_processes}))
    accelerator.end_training()
    """
)


def test_evaluation_loss_is_the_same_on_two_processes_over_uneven_blocks(tmp_path):
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]  # fmt: skip
    two = subprocess.run(launch, capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    distributed, single = json.loads(two.stdout.splitlines()[-1]), json.loads(one.stdout.splitlines()[-1])
    assert (distributed["processes"], single["processes"]) == (2, 1)
    # 7 blocks of 16 tokens in batches of 2 on 2 processes: the last batch is padded with a repeated block
    assert distributed["loss"] == pytest.approx(single["loss"], abs=1e-6, rel=0)


def test_single_process_evaluation_is_the_mean_token_loss():
    import datasets
    from accelerate import Accelerator
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_posenc.training.loop import evaluate_loss

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=64)).eval()
    blocks = torch.randint(0, 64, (5, 16), generator=torch.Generator().manual_seed(1))
    dataset = datasets.Dataset.from_dict({"input_ids": blocks.tolist()}).with_format("torch")
    loss = evaluate_loss(model, dataset, TrainConfig(batch_size=2), CausalCollator(), Accelerator(cpu=True))
    model.eval()  # evaluate_loss leaves the model in training mode
    with torch.no_grad():  # every block's mean loss weighs the same here: each predicts 15 tokens
        expected = torch.stack([model(input_ids=b[None], labels=b[None]).loss for b in blocks]).mean()
    assert loss == pytest.approx(float(expected), abs=1e-6)


def test_packed_blocks_that_start_or_end_with_eos_train_without_transformers_warnings(tmp_path):
    """GPT-2's EOS is also its BOS and pad token (the study base's too). Packed blocks that start or end with it are
    not padded: the collator gives their attention mask (all ones, the same logits as none), and `train` declares the
    loss of a plain GPT2LMHeadModel, so transformers warns neither that the inputs may be padded nor that it found no
    loss type."""
    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.cases import transformers_warnings

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=64, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    blocks = torch.randint(1, 64, (8, 16), generator=torch.Generator().manual_seed(1))
    blocks[::2, 0], blocks[1::2, -1] = 0, 0  # a document ends at the block's first or last token
    dataset = datasets.Dataset.from_dict({"input_ids": blocks.tolist()}).with_format("torch")
    batch = CausalCollator()([dataset[i] for i in range(4)])
    assert torch.equal(batch["attention_mask"], torch.ones(4, 16, dtype=torch.long))
    with torch.no_grad():
        unmasked = model(input_ids=batch["input_ids"]).logits
        assert torch.equal(model(**batch).logits, unmasked)
    cfg = TrainConfig(output_dir=str(tmp_path), block_size=16, batch_size=4, max_steps=2, eval_every=1, progress=False)
    with transformers_warnings() as seen:
        result = train(model.train(), dataset, dataset, cfg.check(), CausalCollator())
    assert seen == [] and result["steps"] == 2 and result["model"].loss_type == "ForCausalLM"


def wikitext_like(root, articles: int, paragraphs: int) -> str:
    """A local dataset folder laid out as wikitext: heading rows, blank rows, one paragraph per row."""
    book = data.text("austen_emma").split("\n\n")
    for split, offset in (("train", 0), ("validation", articles * paragraphs)):
        rows = []
        for a in range(articles):
            rows += [{"text": ""}, {"text": f" = Article {split} {a} = \n"}, {"text": ""}]
            for p in range(paragraphs):
                rows += [{"text": f" = = Section {p} = = \n"}] if p % 50 == 0 else []
                rows += [{"text": " " + book[offset + a * paragraphs + p].replace("\n", " ") + " \n"}]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(root)


def test_paragraph_rows_are_grouped_into_articles_longer_than_8k_tokens(tmp_path):
    raw = load_documents(dataset_name=wikitext_like(tmp_path, articles=2, paragraphs=400))
    assert raw["train"].num_rows == 2 and raw["eval"].num_rows == 2  # one row per article
    assert raw["train"][0]["text"].lstrip().startswith("= Article train 0 =")
    assert " = = Section 50 = = " in raw["train"][0]["text"]  # section headings stay inside their article
    tokenizer = data.gpt2_tokenizer()
    lengths = [len(tokenizer(text)["input_ids"]) for text in raw["eval"]["text"]]
    assert min(lengths) > 8192


def test_a_block_may_be_longer_than_any_one_document():
    import datasets

    tokenizer = data.gpt2_tokenizer()
    sentences = data.text("austen_emma").split(". ")[:60]
    raw = datasets.DatasetDict(
        {split: datasets.Dataset.from_dict({"text": sentences}) for split in ("train", "eval")}
    )  # many short documents: each far shorter than the block
    longest = max(len(tokenizer(s)["input_ids"]) for s in sentences)
    packed = tokenize_and_pack(raw, tokenizer, block_size=4 * longest)
    assert len(packed.train) >= 1 and packed.train[0]["input_ids"].shape == (4 * longest,)
    with pytest.raises(RecipeError, match="No training block of 100000 tokens"):
        tokenize_and_pack(raw, tokenizer, block_size=100_000)


def test_validation_books_split_the_training_books_and_leave_the_held_out_books_unread():
    raw = load_documents(validation_books=["austen_sensesensibility"])
    train, validation = list(raw["train"]["text"]), list(raw["eval"]["text"])
    assert validation == [data.text("austen_sensesensibility")]
    assert data.text("austen_sensesensibility") not in train
    assert data.text("austen_emma") in train
    held_out = {data.text(book) for book in data.default_split()["eval"]}
    assert not held_out & set(train + validation)
    assert raw["train"].num_rows == len(data.default_split()["train"]) - 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation_books": ["austen_persuasion"]}, "not shipped training books"),
        ({"validation_books": list(data.default_split()["train"])}, "at least one to train on"),
        ({"validation_books": ["austen_emma"], "train_files": ["x"], "eval_files": ["y"]}, "no files or dataset"),
        ({"validation_books": ["austen_emma"], "dataset_name": "wikitext"}, "no files or dataset"),
    ],
)
def test_validation_books_refuses_what_cannot_be_a_validation_split(kwargs, message):
    with pytest.raises(RecipeError, match=message):
        load_documents(**kwargs)
