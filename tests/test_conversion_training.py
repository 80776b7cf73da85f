"""Conversion-aware fine-tuning (hf_posenc.training.recovery): the teacher, the distillation loss, and the methods
in the training loop, under two processes, with LoRA, in a transformers Trainer and from the recipes' flags."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

import hf_posenc
from hf_posenc.training import CausalCollator, RecipeError, TrainConfig, run_cli, teacher_from, train
from hf_posenc.training.recovery import ConversionTrainer, Recovery, attention_kl, logit_kl, swap_scale
from hf_posenc.training.recovery.anchors import freeze_rows
from tests.cases import CASES, VOCAB, WINDOW, sharpen
from tests.test_recipes import RECIPES, finetune_clm, finetune_mlm, flags, wordpiece_bert, workspace  # noqa: F401

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}


def tiny_gpt2(dropout: float = 0.0, seed: int = 0) -> GPT2LMHeadModel:
    """A 2-layer GPT-2 of WINDOW positions whose attention depends on positions (q/k scaled up)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2, n_embd=32, n_head=4, n_positions=WINDOW, vocab_size=VOCAB, bos_token_id=1, eos_token_id=2,
        attn_pdrop=dropout, embd_pdrop=dropout, resid_pdrop=dropout,
    )  # fmt: skip
    return sharpen(GPT2LMHeadModel(config), CASES[0], factor=8.0)


def blocks(count: int = 8, length: int = WINDOW, seed: int = 1) -> datasets.Dataset:
    ids = torch.randint(3, VOCAB, (count, length), generator=torch.Generator().manual_seed(seed))
    return datasets.Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")


def plain_keys(encoding: str) -> set[str]:
    """The tensors a plain converted tiny_gpt2 saves (the tied head is saved once, as the embeddings)."""
    return set(hf_posenc.convert(tiny_gpt2(), encoding).state_dict()) - {"lm_head.weight"}


def logged_losses(out) -> list[float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["event"] == "train"]


# ---- the teacher ----


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_teacher_is_the_original_exactly(case):
    """Rebuilt from what convert removed, the teacher gives the original's outputs bit for bit, shares no storage with
    the model, and neither trains nor needs gradients."""
    torch.manual_seed(0)
    model = case.build()
    original = copy.deepcopy(model)
    hf_posenc.convert(model, "rope")
    teacher = teacher_from(model)
    assert type(teacher) is type(original) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    student_storage = {p.data_ptr() for p in model.parameters()}
    assert not student_storage & {p.data_ptr() for p in teacher.parameters()}
    ids = torch.randint(3, VOCAB, (2, WINDOW))
    with torch.no_grad():
        assert torch.equal(case.outputs(teacher, ids), case.outputs(original, ids))


def test_a_teacher_is_refused_once_the_converted_weights_changed():
    model = hf_posenc.convert(tiny_gpt2(), "rope")
    before = teacher_from(tiny_gpt2())  # before conversion: a deep copy of the original
    with torch.no_grad():
        model.lm_head.weight.mul_(2)
    with pytest.raises(RecipeError, match="has changed since it was converted"):
        teacher_from(model)
    with torch.no_grad():
        ids = torch.randint(3, VOCAB, (1, WINDOW))
        assert torch.equal(before(ids).logits, tiny_gpt2().eval()(ids).logits)


def test_the_teacher_runs_in_the_students_dtype_and_mixed_precision():
    cfg = TrainConfig(distill_weight=1.0)
    model = hf_posenc.convert(tiny_gpt2(), "rope")
    recovery = Recovery.setup(cfg, model)
    model.to(torch.bfloat16)
    recovery.attach(model, steps=1)
    assert {p.dtype for p in recovery.teacher.parameters()} == {torch.bfloat16}

    model = hf_posenc.convert(tiny_gpt2(), "rope")
    recovery = Recovery.setup(cfg, model)
    recovery.attach(model, steps=1, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    seen = []
    recovery.teacher.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    ids = torch.randint(3, VOCAB, (1, WINDOW))
    recovery.training_loss(model, {"input_ids": ids, "labels": ids})
    assert seen == [torch.bfloat16]


# ---- the distillation loss ----


def test_kl_is_zero_for_equal_logits_and_follows_hinton_otherwise():
    generator = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(2, 5, 11, generator=generator), torch.randn(2, 5, 11, generator=generator)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert float(logit_kl(teacher.clone(), teacher, mask, 2.0)) == 0.0
    temperature = 3.0
    p = torch.softmax(teacher / temperature, -1)
    manual = (p * (p.log() - torch.log_softmax(student / temperature, -1))).sum(-1).mean() * temperature**2
    assert float(logit_kl(student, teacher, mask, temperature)) == pytest.approx(float(manual), rel=1e-5)
    assert float(logit_kl(student, teacher, mask, temperature)) > 0
    # masked-out positions do not count, whatever their logits
    mask[1, 2:] = False
    changed = student.clone()
    changed[1, 2:] += 100.0
    assert float(logit_kl(changed, teacher, mask, 1.0)) == pytest.approx(float(logit_kl(student, teacher, mask, 1.0)))


def test_distillation_is_zero_before_the_swap_and_reads_only_the_window():
    """With the unconverted model as student the loss is exactly 0; after the swap it is positive, and a causal
    student's loss on a block twice the window is the loss on its first window (the teacher sees only those)."""
    cfg = TrainConfig(distill_weight=1.0, lm_weight=0.0)
    model = tiny_gpt2().eval()
    recovery = Recovery.setup(cfg, model)
    recovery.attach(model, steps=1)
    ids = torch.randint(3, VOCAB, (2, WINDOW), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "labels": ids}
    with torch.no_grad():
        assert float(recovery.training_loss(model, batch)) == 0.0

    model = hf_posenc.convert(tiny_gpt2(), "rope").eval()
    recovery = Recovery.setup(cfg, model)
    recovery.attach(model, steps=1)
    assert float(recovery.training_loss(model, batch)) > 0
    longer = torch.cat((ids, torch.randint(3, VOCAB, (2, WINDOW))), 1)
    with torch.no_grad():
        on_longer = float(recovery.training_loss(model, {"input_ids": longer}))
        assert on_longer == pytest.approx(float(recovery.training_loss(model, batch)), rel=1e-5)


def test_a_masked_lm_distils_at_its_masked_positions_inside_the_window():
    torch.manual_seed(0)
    model = CASES[1].build()  # BERT
    hf_posenc.convert(model, "alibi")
    recovery = Recovery.setup(TrainConfig(distill_weight=1.0, lm_weight=0.0, distill_temperature=1.0), model)
    recovery.attach(model, steps=1)
    ids = torch.randint(3, VOCAB, (1, WINDOW))
    labels = torch.full_like(ids, -100)
    labels[0, 5] = ids[0, 5]
    with torch.no_grad():
        loss = recovery.training_loss(model, {"input_ids": ids, "labels": labels})
        expected = logit_kl(model(ids).logits[:, 5:6], recovery.teacher(ids).logits[:, 5:6], torch.ones(1, 1), 1.0)
    assert float(loss) == pytest.approx(float(expected)) and float(loss) > 0
    with pytest.raises(RecipeError, match="must see the whole block"):
        recovery.training_loss(model, {"input_ids": torch.cat((ids, ids), 1), "labels": torch.cat((labels,) * 2, 1)})


def bart_batch(length: int = WINDOW, seed: int = 4) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (2, length), generator=torch.Generator().manual_seed(seed))
    noised = ids.masked_fill(torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed + 1)) < 0.3, 3)
    start = torch.full((2, 1), 2)
    return {"input_ids": noised, "decoder_input_ids": torch.cat((start, ids[:, :-1]), 1), "labels": ids}


def test_an_encoder_decoder_distils_its_decoder_and_transfers_every_stacks_attention():
    """BART: exactly 0 before the swap; after it, the distillation term is the KL on the decoder's logits at the
    labelled positions, and attention transfer the mean of the encoder's, the decoder's and the cross-attention's."""
    from tests.cases import BART_CASE

    batch = bart_batch()
    batch["labels"][:, -3:] = -100  # padding in the labels: left out of the distillation
    cfg = TrainConfig(distill_weight=1.0, attention_transfer_weight=1.0, lm_weight=0.0, distill_temperature=1.0)
    for encoding in (None, "rope"):
        torch.manual_seed(0)
        model = BART_CASE.build().eval()
        if encoding:
            hf_posenc.convert(model, encoding)
        recovery = Recovery.setup(cfg, model)
        recovery.attach(model, steps=1)
        with torch.no_grad():
            loss = float(recovery.training_loss(model, batch))
            if encoding is None:
                assert loss == 0.0
                continue
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            mine, theirs = model(**inputs, output_attentions=True), recovery.teacher(**inputs, output_attentions=True)
        kept = batch["labels"] != -100
        distilled = logit_kl(mine.logits, theirs.logits, kept, 1.0)
        rows = torch.ones_like(kept)
        stacks = [
            attention_kl(mine.encoder_attentions, theirs.encoder_attentions, rows, {0: None, 1: None}),
            attention_kl(mine.decoder_attentions, theirs.decoder_attentions, kept, {0: None, 1: None}),
            attention_kl(mine.cross_attentions, theirs.cross_attentions, kept, {0: None, 1: None}),
        ]
        assert all(float(term) > 0 for term in stacks)
        assert loss == pytest.approx(float(distilled + sum(stacks) / 3), rel=1e-5)
        assert len(mine.encoder_attentions) == 2  # every layer counted
        with pytest.raises(RecipeError, match="must see the whole input"):
            recovery.training_loss(model, bart_batch(length=2 * WINDOW))
        recovery.close()
    with pytest.raises(RecipeError, match="transfers every head"):
        Recovery.setup(TrainConfig(attention_transfer_weight=1.0, attention_transfer_heads="0"), model)


def test_cross_attention_transfer_reads_every_encoder_key_and_both_models_decode_the_labels():
    """A source longer than the target: the cross-attention term is the whole rows' KL (computed here by hand); and
    with no decoder_input_ids and lm_weight 0, student and teacher decode the same shifted labels (exactly 0 on the
    unconverted model)."""
    from tests.cases import BART_CASE

    source = torch.randint(3, VOCAB, (2, WINDOW), generator=torch.Generator().manual_seed(5))
    target = torch.randint(3, VOCAB, (2, WINDOW // 4), generator=torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    original = BART_CASE.build().eval()
    recovery = Recovery.setup(TrainConfig(distill_weight=1.0, lm_weight=0.0), original)
    recovery.attach(original, steps=1)
    with torch.no_grad():
        assert float(recovery.training_loss(original, {"input_ids": source, "labels": target})) == 0.0
    recovery.close()
    model = hf_posenc.convert(copy.deepcopy(original), "rope").eval()
    recovery = Recovery.setup(TrainConfig(attention_transfer_weight=1.0, lm_weight=0.0), model)
    recovery.attach(model, steps=1)
    shifted = model.prepare_decoder_input_ids_from_labels(labels=target)
    inputs = {"input_ids": source, "decoder_input_ids": shifted}
    with torch.no_grad():
        loss = float(recovery.training_loss(model, {"input_ids": source, "labels": target}))
        mine, theirs = model(**inputs, output_attentions=True), recovery.teacher(**inputs, output_attentions=True)

    def by_hand(student, teacher):  # mean over layers, heads and queries of the whole rows' KL
        tiny = torch.finfo(torch.float32).tiny
        rows = [(t * (t.clamp(min=tiny).log() - s.clamp(min=tiny).log())).sum(-1).mean()
                for s, t in zip(student, teacher)]  # fmt: skip
        return float(sum(rows) / len(rows))

    stacks = [by_hand(mine.encoder_attentions, theirs.encoder_attentions),
              by_hand(mine.decoder_attentions, theirs.decoder_attentions),
              by_hand(mine.cross_attentions, theirs.cross_attentions)]  # fmt: skip
    assert mine.cross_attentions[0].shape[-1] == WINDOW > target.shape[1]
    assert loss == pytest.approx(sum(stacks) / 3, rel=1e-4)


def test_a_bart_trained_with_every_method_saves_a_plain_conversion(tmp_path):
    from hf_posenc.training import DenoisingCollator
    from tests.cases import BART_CASE

    torch.manual_seed(0)
    model = hf_posenc.convert(BART_CASE.build(), "rope")
    expected = set(hf_posenc.convert(BART_CASE.build(), "rope").state_dict())
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), block_size=WINDOW, batch_size=2, max_steps=3, log_every=1,
                      learning_rate=1e-3, distill_weight=1.0, attention_transfer_weight=1.0, gradual_swap_steps=2,
                      progress=False)  # fmt: skip
    result = train(model.train(), blocks(), None, cfg, DenoisingCollator(mask_id=3, decoder_start_token_id=2))
    losses = logged_losses(tmp_path / "run")
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert set(saved) <= expected and not any("teacher" in key for key in saved)
    assert "embed" not in vars(result["model"].model.encoder.position_encoding)  # the swap's wrapper is gone
    assert result["model"].config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"distill_weight": -1.0}, "--distill_weight must be a number >= 0"),
        ({"lm_weight": 0.0}, "nothing to train on"),
        ({"distill_weight": 1.0, "distill_temperature": 0.0}, "--distill_temperature must be positive"),
        ({"teacher_name_or_path": "gpt2"}, "--teacher_name_or_path is only read by"),
    ],
)
def test_bad_recovery_settings_are_refused(settings, message):
    with pytest.raises(RecipeError, match=message):
        TrainConfig(**settings).check()


# ---- in the training loop ----


def test_train_with_distillation_saves_a_plain_converted_model(tmp_path):
    """The first step's loss is the distillation loss alone (lm_weight 0); the saved weights are those of a plain
    converted model (no teacher), and the run's model is the saved one."""
    model = hf_posenc.convert(tiny_gpt2(), "rope")
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), block_size=WINDOW, batch_size=2, max_steps=2, log_every=1,
                      learning_rate=1e-3, distill_weight=1.0, lm_weight=0.0, progress=False)  # fmt: skip
    data = blocks()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed)).tolist()  # epoch 0's order
    first = data.select(order[:2])[:]["input_ids"]  # the first step's blocks
    expected = Recovery.setup(cfg, model)
    expected.attach(model, steps=2)
    with torch.no_grad():
        expected_loss = float(expected.training_loss(model, {"input_ids": first, "labels": first}))
    result = train(model.train(), data, None, cfg, CausalCollator())
    assert logged_losses(tmp_path / "run")[0] == pytest.approx(expected_loss, rel=1e-5)
    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert set(saved) == plain_keys("rope")
    assert result["model"] is model


def test_train_with_lora_keeps_the_teacher_unwrapped(tmp_path):
    from hf_posenc.training import select_trainable

    model = hf_posenc.convert(tiny_gpt2(), "t5_bias")
    cfg = TrainConfig(output_dir=str(tmp_path / "lora"), block_size=WINDOW, batch_size=2, max_steps=2,
                      trainable="lora", distill_weight=1.0, gradual_swap_steps=1, progress=False)  # fmt: skip
    recovery = Recovery.setup(cfg, model)
    wrapped = select_trainable(copy.deepcopy(model), "lora")
    assert any("lora" in name for name, _ in wrapped.named_modules())
    assert not any("lora" in name for name, _ in recovery.teacher.named_modules())
    probe = lambda m: {"hooked": "embed" in m.transformer.position_encoding.__dict__}  # noqa: E731
    result = train(model, blocks(), None, cfg, CausalCollator(), probe=probe, probe_steps=[0, 1])
    assert [record["hooked"] for record in result["probes"]] == [True, False]  # on PEFT's trained copy's wrapper
    assert not hasattr(result["model"], "peft_config") and result["finished"]
    saved = load_file(tmp_path / "lora" / "model.safetensors")
    assert set(saved) == plain_keys("t5_bias")


TWO_PROCESSES = textwrap.dedent(
    """
    import json, sys
    import datasets, torch
    from accelerate import PartialState
    import hf_posenc
    from hf_posenc.training import CausalCollator, TrainConfig, train
    from tests.test_conversion_training import blocks, tiny_gpt2

    state = PartialState(cpu=True)
    model = hf_posenc.convert(tiny_gpt2(), "rope")
    cfg = TrainConfig(output_dir=sys.argv[1], block_size=32, batch_size=2, max_steps=2, log_every=1, cpu=True,
                      progress=False, **json.loads(sys.argv[2]))
    result = train(model, blocks(), None, cfg, CausalCollator())
    if state.is_main_process:
        print(json.dumps({"processes": state.num_processes, "finished": result["finished"]}))
    state.destroy_process_group()
    """
)


ALL_METHODS = {"lm_weight": 0.0, "distill_weight": 1.0, "attention_transfer_weight": 1.0, "gradual_swap_steps": 1}


def test_recovery_under_two_processes(tmp_path):
    """Each process compares with its own teacher on its own blocks: the first logged loss (the mean over the two
    processes) is the one process's loss on all four blocks of that step."""
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESSES)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
              str(tmp_path / "two"), json.dumps(ALL_METHODS)]  # fmt: skip
    done = subprocess.run(launch, capture_output=True, text=True, timeout=600, env={**ENV, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"processes": 2, "finished": True}
    saved = load_file(tmp_path / "two" / "model.safetensors")
    assert set(saved) == plain_keys("rope")
    # one process, batch 4 (the two processes' batches of 2 together): the same first loss, as the mean of equal-size
    # per-process means
    cfg = TrainConfig(output_dir=str(tmp_path / "one"), block_size=WINDOW, batch_size=4, max_steps=1, log_every=1,
                      progress=False, **ALL_METHODS)  # fmt: skip
    two_first = logged_losses(tmp_path / "two")[0]
    assert two_first > 0
    train(hf_posenc.convert(tiny_gpt2(), "rope"), blocks(), None, cfg, CausalCollator())
    assert logged_losses(tmp_path / "one")[0] == pytest.approx(two_first, rel=1e-5)


# ---- a transformers Trainer ----


@pytest.mark.parametrize(
    "recovery",
    [
        {"distill_weight": 1.0, "lm_weight": 0.0},
        {"attention_transfer_weight": 1.0, "lm_weight": 0.0},
        {"gradual_swap_steps": 1, "distill_weight": 1.0},
    ],
)
def test_conversion_trainer_trains_with_the_recovery_loss(tmp_path, recovery):
    from transformers import TrainingArguments

    model = hf_posenc.convert(tiny_gpt2(dropout=0.1), "rope")
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=2, max_steps=2,
                             logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                             learning_rate=1e-3, disable_tqdm=True)  # fmt: skip
    data = blocks().map(lambda row: {"labels": row["input_ids"]})
    trainer = ConversionTrainer(model=model, args=args, train_dataset=data, recovery=recovery)
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 2 and all(x > 0 for x in losses)
    assert model.config._attn_implementation == "sdpa" and model.transformer.h[0].attn.attn_dropout.p == 0.1
    assert "embed" not in model.transformer.position_encoding.__dict__
    batch = {key: torch.stack([row[key] for row in data.select(range(2))]) for key in ("input_ids", "labels")}
    with torch.no_grad():  # the training loss is the recovery loss, not the model's own
        recovery_loss = float(trainer.compute_loss(model.train(), batch))
        assert recovery_loss != pytest.approx(float(model(**batch).loss))
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert set(saved) == plain_keys("rope")
    with pytest.raises(TypeError, match="Unknown recovery setting"):
        ConversionTrainer(model=model, args=args, train_dataset=data, recovery={"distil_weight": 1.0})


def test_conversion_trainer_keeps_frozen_anchors_under_weight_decay(tmp_path):
    """The Trainer's AdamW decays what it decays, but not position encodings: frozen rows stay bit for bit."""
    from transformers import TrainingArguments

    model = hf_posenc.convert(tiny_gpt2(), "learned", max_positions=2 * WINDOW)
    before = model.transformer.position_encoding.weight.detach().clone()
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=2, max_steps=2,
                             report_to=[], use_cpu=True, save_strategy="no", learning_rate=1e-2, weight_decay=0.1,
                             disable_tqdm=True)  # fmt: skip
    data = blocks(length=2 * WINDOW).map(lambda row: {"labels": row["input_ids"]})
    trainer = ConversionTrainer(model=model, args=args, train_dataset=data, recovery={"freeze_trained_positions": True})
    assert not any("position_encoding" in name for name in trainer.get_decay_parameter_names(model))
    assert any("c_attn.weight" in name for name in trainer.get_decay_parameter_names(model))
    trainer.train()
    after = model.transformer.position_encoding.weight.detach()
    assert torch.equal(after[:WINDOW], before[:WINDOW]) and not torch.equal(after[WINDOW:], before[WINDOW:])


# ---- the recipes' flags ----


@pytest.mark.parametrize(
    ("encoding", "settings"),
    [
        ("rope", {"distill_weight": 1.0, "lm_weight": 0.5, "distill_temperature": 1.5}),
        ("t5_bias", {"attention_transfer_weight": 1.0, "attention_transfer_heads": "0,1:2"}),
        ("rope", {"gradual_swap_steps": 1, "gradual_swap_schedule": "cosine"}),
        ("learned", {"freeze_trained_positions": True}),
    ],
)
def test_finetune_clm_recovery_flags(workspace, tmp_path, encoding, settings):  # noqa: F811
    """Each method from the recipe's flags: the run records them, finishes and saves a plain converted model."""
    root, files = workspace
    out = tmp_path / "run"
    extra = [str(item) for key, value in settings.items() for item in (f"--{key}", value)[: 1 if value is True else 2]]
    run_cli(finetune_clm.main, flags(root, files, out, "--encoding", encoding, "--max_steps", "2", *extra))
    config = json.loads((out / "train_config.json").read_text())
    assert {key: config[key] for key in settings} == settings
    assert all(loss > 0 for loss in logged_losses(out))
    assert not any("wpe" in key for key in load_file(out / "model.safetensors"))


def test_finetune_clm_teacher_from_a_folder(workspace, tmp_path, capsys):  # noqa: F811
    """A model converted earlier (saved, not converted by the recipe) has no original in memory: distillation asks
    for --teacher_name_or_path and then reads the original from there."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, files = workspace
    converted = hf_posenc.convert(AutoModelForCausalLM.from_pretrained(root / "base"), "rope")
    converted.save_pretrained(tmp_path / "rope")
    AutoTokenizer.from_pretrained(root / "base").save_pretrained(tmp_path / "rope")  # a checkpoint with its tokenizer
    argv = flags(root, files, tmp_path / "out", "--max_steps", "1", "--distill_weight", "1")
    argv[argv.index("--model_name_or_path") + 1] = str(tmp_path / "rope")
    with pytest.raises(SystemExit):
        run_cli(finetune_clm.main, argv)
    assert "was not converted in this process" in capsys.readouterr().err
    run_cli(finetune_clm.main, [*argv, "--teacher_name_or_path", str(root / "base")])
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_finetune_mlm_distillation_flags(tmp_path, capsys):
    from hf_posenc import data

    book = data.text("austen_persuasion")
    wordpiece_bert(tmp_path / "bert", book[:20000], max_positions=64)
    (tmp_path / "train.txt").write_text(book[20000:30000])
    (tmp_path / "held.txt").write_text(book[30000:32000])
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", str(tmp_path / "bert"), "--encoding", "alibi", "--output_dir", str(out),
        "--train_files", str(tmp_path / "train.txt"), "--eval_files", str(tmp_path / "held.txt"),
        "--block_size", "64", "--batch_size", "2", "--max_steps", "2", "--log_every", "1", "--no-progress",
        "--distill_weight", "2", "--lm_weight", "0",
    ]  # fmt: skip
    run_cli(finetune_mlm.main, argv)
    assert all(loss > 0 for loss in logged_losses(out))
    argv[argv.index("--block_size") + 1] = "128"  # past the original's 64 positions: its teacher cannot see the block
    with pytest.raises(SystemExit):
        run_cli(finetune_mlm.main, [*argv[:5], str(tmp_path / "long"), *argv[6:]])
    assert "must see the whole block" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", ["finetune_clm", "finetune_mlm"])
def test_recipe_configs_carry_the_recovery_keys(recipe):
    import yaml

    from hf_posenc.training import build_parser, parse_config
    from hf_posenc.training.recovery.settings import FIELDS

    path = RECIPES / "configs" / f"{recipe}.yaml"
    keys = set(yaml.safe_load(path.read_text()))
    assert set(FIELDS) - {"teacher_name_or_path"} <= keys
    cfg, _ = parse_config(build_parser(recipe), ["--config", str(path)])
    assert {name: getattr(cfg, name) for name in FIELDS} == {name: getattr(TrainConfig(), name) for name in FIELDS}
    assert cfg.recovery is True and "recovery" in keys


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"encoding": "rope"}, {"attention_transfer_weight": 1.0}),
        ({"encoding": "alibi", "attention_transfer_heads": "0,1:2"}, {"attention_transfer_weight": 1.0}),
        ({"encoding": "learned"}, {"attention_transfer_weight": 1.0}),  # the model decides (a copy keeps the window)
        ({"encoding": "rope", "recovery": False}, {}),
        ({"encoding": None}, {}),  # no conversion in this run
        ({"encoding": "rope", "distill_weight": 1.0}, {}),  # a method is set: it alone runs
        ({"encoding": "rope", "gradual_swap_steps": 2}, {}),
        ({"encoding": "rope", "lm_weight": 0.5, "distill_weight": 1.0}, {}),
    ],
)
def test_the_default_method_comes_only_after_a_swap_with_no_method_set(settings, expected):
    from hf_posenc.training.recovery.settings import DEFAULT_METHOD, default_method

    assert DEFAULT_METHOD == {"attention_transfer_weight": 1.0}
    assert default_method(TrainConfig(**settings)) == expected


@pytest.mark.parametrize(
    ("encoding", "options", "block", "applies"),
    [
        ("rope", {}, WINDOW, True),
        ("learned", {"method": "copy"}, WINDOW, False),  # in-window outputs unchanged: nothing to recover
        ("learned", {"method": "interpolate"}, WINDOW, True),
        ("rope", {}, 2 * WINDOW, False),  # past the window: warned, plain
    ],
)
def test_the_default_follows_the_converted_model(encoding, options, block, applies, recwarn):
    from hf_posenc.training.recovery import with_default_recovery

    model = hf_posenc.convert(tiny_gpt2(), encoding, **options)
    cfg = with_default_recovery(TrainConfig(encoding=encoding, output_dir="unused").check(), model, block)
    assert (cfg.recovery, cfg.attention_transfer_weight) == ((True, 1.0) if applies else (False, 0.0))
    warned = [str(w.message) for w in recwarn if "Plain fine-tuning after the swap" in str(w.message)]
    assert len(warned) == (block > WINDOW)
    assert not warned or f"{2 * WINDOW} tokens are past the original's {WINDOW} positions" in warned[0]


def test_the_default_needs_the_original_and_leaves_no_setting_unread(tmp_path):
    from hf_posenc.training.recovery import with_default_recovery

    converted = hf_posenc.convert(tiny_gpt2(), "rope")
    converted.save_pretrained(tmp_path / "rope")
    loaded = type(converted).from_pretrained(tmp_path / "rope")  # converted elsewhere: its original is not in memory
    with pytest.warns(UserWarning, match="not converted in this process.*--teacher_name_or_path"):
        cfg = with_default_recovery(TrainConfig(encoding="rope").check(), loaded, WINDOW)
    assert cfg.attention_transfer_weight == 0.0
    tiny_gpt2().save_pretrained(tmp_path / "original")
    cfg = TrainConfig(encoding="rope", teacher_name_or_path=str(tmp_path / "original")).check()
    assert with_default_recovery(cfg, loaded, WINDOW).attention_transfer_weight == 1.0
    heads = TrainConfig(encoding="rope", attention_transfer_heads="0").check()  # accepted: the default may read it
    with pytest.raises(RecipeError, match="--attention_transfer_heads is given but"), pytest.warns(UserWarning):
        with_default_recovery(heads, loaded, WINDOW)  # the default did not apply: nothing reads the heads


def test_finetune_clm_recovers_by_default_and_no_recovery_is_plain(workspace, tmp_path, capsys):  # noqa: F811
    """After a swap the recipe trains exactly as with --attention_transfer_weight 1, unless --no-recovery; the run
    records what ran and says so on stderr."""
    root, files = workspace
    runs = {}
    arms = {"default": [], "explicit": ["--attention_transfer_weight", "1"], "plain": ["--no-recovery"]}
    for name, extra in arms.items():
        out = tmp_path / name
        run_cli(finetune_clm.main, flags(root, files, out, "--encoding", "rope", "--max_steps", "2", *extra))
        runs[name] = json.loads((out / "train_config.json").read_text()), logged_losses(out)
    printed = capsys.readouterr().err
    assert printed.count("Fine-tuning after the swap to rope with attention transfer from the original (weight 1") == 1
    assert runs["default"][1] == runs["explicit"][1]  # the same loss, bit for bit, at every step
    assert runs["plain"][1] != runs["default"][1]
    assert (runs["default"][0]["recovery"], runs["default"][0]["attention_transfer_weight"]) == (True, 1.0)
    assert (runs["explicit"][0]["recovery"], runs["plain"][0]["recovery"]) == (False, False)  # the default not added
    assert runs["plain"][0]["attention_transfer_weight"] == 0.0
    assert not any("wpe" in key for key in load_file(tmp_path / "default" / "model.safetensors"))


def test_finetune_mlm_past_the_window_warns_and_fine_tunes_plainly(tmp_path):
    from hf_posenc import data

    book = data.text("austen_persuasion")
    wordpiece_bert(tmp_path / "bert", book[:20000], max_positions=64)
    (tmp_path / "train.txt").write_text(book[20000:30000])
    (tmp_path / "held.txt").write_text(book[30000:32000])
    argv = [
        "--model_name_or_path", str(tmp_path / "bert"), "--encoding", "rope", "--train_files",
        str(tmp_path / "train.txt"), "--eval_files", str(tmp_path / "held.txt"), "--batch_size", "2",
        "--max_steps", "1", "--no-progress",
    ]  # fmt: skip
    run_cli(finetune_mlm.main, [*argv, "--output_dir", str(tmp_path / "in"), "--block_size", "64"])
    assert json.loads((tmp_path / "in" / "train_config.json").read_text())["attention_transfer_weight"] == 1.0
    with pytest.warns(UserWarning, match="128 tokens are past the original's 64 positions.*--no-recovery"):
        run_cli(finetune_mlm.main, [*argv, "--output_dir", str(tmp_path / "past"), "--block_size", "128"])
    assert json.loads((tmp_path / "past" / "train_config.json").read_text())["attention_transfer_weight"] == 0.0


# ---- attention transfer ----


def test_attention_kl_is_zero_for_identical_attention_and_reads_the_chosen_heads():
    generator = torch.Generator().manual_seed(0)
    teacher = [torch.softmax(4 * torch.randn(2, 3, 6, 6, generator=generator), -1) for _ in range(2)]
    student = [torch.softmax(4 * torch.randn(2, 3, 6, 6, generator=generator), -1) for _ in range(2)]
    rows = torch.ones(2, 6, dtype=torch.bool)
    every = {0: None, 1: None}
    assert float(attention_kl([t.clone() for t in teacher], teacher, rows, every)) == 0.0
    assert float(attention_kl(student, teacher, rows, every)) > 0
    t, s = teacher[1][:, 2], student[1][:, 2]  # layer 1, head 2
    manual = (t * (t.log() - s.log())).sum(-1).mean()
    assert float(attention_kl(student, teacher, rows, {1: [2]})) == pytest.approx(float(manual), rel=1e-5)
    rows[:, 3:] = False  # only the first three queries count (padding)
    manual = (t * (t.log() - s.log())).sum(-1)[:, :3].mean()
    assert float(attention_kl(student, teacher, rows, {1: [2]})) == pytest.approx(float(manual), rel=1e-5)
    window = rows[:, :3]  # a window of three tokens: queries and keys cut to it
    t, s = t[:, :3, :3], s[:, :3, :3]
    manual = (t * (t.log() - s.log())).sum(-1).mean()
    assert float(attention_kl(student, teacher, window, {1: [2]})) == pytest.approx(float(manual), rel=1e-5)


def test_attention_transfer_is_zero_before_the_swap_and_positive_after():
    """On the unconverted model the loss is exactly 0; converted to RoPE (q/k scaled up, so attention depends on
    positions) it is positive. Both run on eager attention during the run, and get their backend back after."""
    cfg = TrainConfig(attention_transfer_weight=1.0, lm_weight=0.0)
    ids = torch.randint(3, VOCAB, (2, WINDOW), generator=torch.Generator().manual_seed(3))
    for encoding, positive in ((None, False), ("rope", True)):
        model = tiny_gpt2().eval()
        if encoding:
            hf_posenc.convert(model, encoding)
        recovery = Recovery.setup(cfg, model)
        recovery.attach(model, steps=1)
        assert model.config._attn_implementation == recovery.teacher.config._attn_implementation == "eager"
        with torch.no_grad():
            loss = float(recovery.training_loss(model, {"input_ids": ids}))
        assert (loss > 0) if positive else loss == 0.0
        recovery.close()
        assert model.config._attn_implementation == "sdpa"


def test_attention_transfer_turns_attention_dropout_off_for_the_run(tmp_path):
    model = hf_posenc.convert(tiny_gpt2(dropout=0.1), "alibi")
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), block_size=WINDOW, batch_size=2, max_steps=2, progress=False,
                      attention_transfer_weight=1.0, attention_transfer_heads="0,1:3")  # fmt: skip
    seen = []
    hook = model.transformer.h[0].attn.register_forward_hook(
        lambda module, args, output: seen.append((module.attn_dropout.p, module.config._attn_implementation))
    )
    result = train(model, blocks(), None, cfg, CausalCollator())
    hook.remove()
    assert seen and set(seen) == {(0.0, "eager")}
    assert model.transformer.h[0].attn.attn_dropout.p == 0.1 and model.config._attn_implementation == "sdpa"
    assert set(load_file(tmp_path / "run" / "model.safetensors")) == plain_keys("alibi") and result["finished"]


@pytest.mark.parametrize(
    ("heads", "message"),
    [("x", "is not L or L:H"), ("0,-1:2", "negative layer or head"), ("2", "the model has 2 layers of 4 heads"),
     ("1:4", "the model has 2 layers of 4 heads")],
)  # fmt: skip
def test_bad_attention_heads_are_refused(heads, message):
    with pytest.raises(RecipeError, match=message):
        cfg = TrainConfig(attention_transfer_weight=1.0, attention_transfer_heads=heads).check()
        Recovery.setup(cfg, hf_posenc.convert(tiny_gpt2(), "rope"))
    with pytest.raises(RecipeError, match="--attention_transfer_weight is 0"):
        TrainConfig(attention_transfer_heads="0").check()


# ---- the gradual swap ----


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("linear", [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]), ("cosine", [1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0])],
)
def test_the_swap_scale_follows_its_schedule(schedule, expected):
    assert [swap_scale(step, 4, schedule) for step in range(6)] == pytest.approx(expected, abs=1e-6)


def swapped_nope(steps: float = 2, schedule: str = "linear", total: int = 4):
    """The original tiny_gpt2 (eval) and its NoPE conversion with a gradual swap attached: NoPE adds nothing, so at
    scale s the model is the original with its table scaled by s."""
    original = tiny_gpt2().eval()
    model = hf_posenc.convert(copy.deepcopy(original), "nope")
    recovery = Recovery.setup(TrainConfig(gradual_swap_steps=steps, gradual_swap_schedule=schedule), model)
    recovery.attach(model, steps=total)
    return original, model, recovery


def test_the_gradual_swap_adds_the_scaled_old_table_and_is_gone_at_the_end():
    original, model, recovery = swapped_nope()
    ids = torch.randint(3, VOCAB, (2, WINDOW), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original(ids).logits)  # scale 1: the original exactly
        recovery.at_step(1)  # scale 0.5
        halved = copy.deepcopy(original)
        halved.transformer.wpe.weight.mul_(0.5)
        assert torch.allclose(model(ids).logits, halved(ids).logits, atol=1e-5)
        recovery.at_step(2)  # scale 0: the plain NoPE model, the wrapper gone
        assert "embed" not in model.transformer.position_encoding.__dict__
        plain = hf_posenc.convert(copy.deepcopy(original), "nope")
        assert torch.equal(model(ids).logits, plain(ids).logits)


def test_the_gradual_swap_keeps_kv_cached_generation_exact():
    """Generation with the cache gives the tokens of generation without it, at any scale; at scale 1 (NoPE) the
    original's tokens, with left padding too."""
    original, model, recovery = swapped_nope()
    prompts = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(prompts)
    mask[1, :2] = 0  # the second prompt is left-padded
    settings = {"attention_mask": mask, "max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        assert torch.equal(model.generate(prompts, **settings), original.generate(prompts, **settings))
        recovery.at_step(1)
        cached = model.generate(prompts, **settings)
        assert torch.equal(cached, model.generate(prompts, use_cache=False, **settings))


@pytest.mark.parametrize("encoding", ["rope", "sinusoidal"])
def test_a_model_trained_with_a_gradual_swap_saves_as_a_plain_conversion(tmp_path, encoding):
    """The swap changes training (another first loss than without it), and the model it leaves is bit for bit a
    plain conversion with the trained weights: the same saved tensors and config, no wrapper."""
    from transformers import AutoModelForCausalLM

    common = {"block_size": WINDOW, "batch_size": 2, "max_steps": 3, "log_every": 1, "progress": False}
    probe = lambda m: {"hooked": "embed" in m.transformer.position_encoding.__dict__}  # noqa: E731
    cfg = TrainConfig(output_dir=str(tmp_path / "swap"), gradual_swap_steps=2, **common)
    result = train(hf_posenc.convert(tiny_gpt2(), encoding), blocks(), None, cfg, CausalCollator(), probe=probe,
                   probe_steps=[0, 1, 2, 3])  # fmt: skip
    hooked = [record["hooked"] for record in result["probes"]]
    assert hooked == [True, True, False, False]
    plain_cfg = TrainConfig(output_dir=str(tmp_path / "plain"), **common)
    train(hf_posenc.convert(tiny_gpt2(), encoding), blocks(), None, plain_cfg, CausalCollator())
    assert logged_losses(tmp_path / "swap")[0] != pytest.approx(logged_losses(tmp_path / "plain")[0])

    saved = load_file(tmp_path / "swap" / "model.safetensors")
    assert set(saved) == plain_keys(encoding)
    config = json.loads((tmp_path / "swap" / "config.json").read_text())
    assert config == json.loads((tmp_path / "plain" / "config.json").read_text())
    fresh = hf_posenc.convert(tiny_gpt2(), encoding).eval()
    fresh.load_state_dict(saved, strict=False)  # lm_head is tied to the embeddings
    ids = torch.randint(3, VOCAB, (2, WINDOW))
    trained, loaded = result["model"].eval(), AutoModelForCausalLM.from_pretrained(tmp_path / "swap").eval()
    assert "embed" not in trained.transformer.position_encoding.__dict__
    with torch.no_grad():
        assert torch.equal(trained(ids).logits, fresh(ids).logits)
        assert torch.equal(loaded(ids).logits, fresh(ids).logits)


def test_probes_of_a_gradual_swap_score_the_model_without_the_table_and_change_no_training(tmp_path):
    common = {"block_size": WINDOW, "batch_size": 2, "max_steps": 4, "log_every": 1, "progress": False}
    positions = torch.arange(WINDOW)[None]

    def probe(m):
        added = m.transformer.position_encoding.embed(positions)  # the wrapper: NoPE's nothing + the scaled table
        return {"table": float(added.abs().max())}

    cfg = TrainConfig(output_dir=str(tmp_path / "probed"), gradual_swap_steps=4, **common)
    result = train(hf_posenc.convert(tiny_gpt2(), "nope"), blocks(), None, cfg, CausalCollator(), probe=probe,
                   probe_steps=[0, 1, 2, 3])  # fmt: skip
    assert [record["table"] for record in result["probes"]] == [0.0] * 4  # mid-swap, yet out for every probe
    quiet = TrainConfig(output_dir=str(tmp_path / "quiet"), gradual_swap_steps=4, **common)
    train(hf_posenc.convert(tiny_gpt2(), "nope"), blocks(), None, quiet, CausalCollator())
    assert logged_losses(tmp_path / "probed") == logged_losses(tmp_path / "quiet")  # the scale came back each time


def test_a_fractional_gradual_swap_and_its_refusals(tmp_path):
    probe = lambda m: {"hooked": "embed" in m.transformer.position_encoding.__dict__}  # noqa: E731
    cfg = TrainConfig(output_dir=str(tmp_path / "half"), block_size=WINDOW, batch_size=2, max_steps=4,
                      progress=False, gradual_swap_steps=0.5, gradual_swap_schedule="cosine")  # fmt: skip
    result = train(hf_posenc.convert(tiny_gpt2(), "alibi"), blocks(), None, cfg, CausalCollator(), probe=probe,
                   probe_steps=[1, 2])  # fmt: skip
    assert [record["hooked"] for record in result["probes"]] == [True, False]  # half of 4 steps
    too_long = TrainConfig(output_dir=str(tmp_path / "long"), block_size=WINDOW, batch_size=2, max_steps=2,
                           progress=False, gradual_swap_steps=3)  # fmt: skip
    with pytest.raises(RecipeError, match="past the run's 2 optimizer steps"):
        train(hf_posenc.convert(tiny_gpt2(), "alibi"), blocks(), None, too_long, CausalCollator())
    with pytest.raises(RecipeError, match="count twice"):
        Recovery.setup(TrainConfig(gradual_swap_steps=1), hf_posenc.convert(tiny_gpt2(), "learned"))
    with pytest.raises(RecipeError, match="count twice"):
        TrainConfig(gradual_swap_steps=1, encoding="learned").check()
    with pytest.raises(RecipeError, match="convert the model first"):
        Recovery.setup(TrainConfig(gradual_swap_steps=1), tiny_gpt2())
    with pytest.raises(RecipeError, match="--gradual_swap_schedule must be one of"):
        TrainConfig(gradual_swap_steps=1, gradual_swap_schedule="step").check()


def test_a_loaded_conversion_fades_out_the_teachers_table(tmp_path):
    """A converted model loaded from disk has no record of its table: a gradual swap takes the original's."""
    from transformers import AutoModelForCausalLM

    original = tiny_gpt2().eval()
    hf_posenc.convert(copy.deepcopy(original), "nope").save_pretrained(tmp_path / "nope")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "nope").eval()
    with pytest.raises(RecipeError, match="needs the table the conversion removed"):
        Recovery.setup(TrainConfig(gradual_swap_steps=1), model)
    recovery = Recovery.setup(TrainConfig(gradual_swap_steps=1), model, teacher=original)
    recovery.attach(model, steps=1)
    assert recovery.teacher is None  # only its table was needed
    ids = torch.randint(3, VOCAB, (1, WINDOW))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original(ids).logits)


# ---- frozen anchors ----


@pytest.mark.parametrize("trainable", ["all", "lora"])
def test_frozen_anchors_keep_the_pretrained_rows_of_a_learned_table(tmp_path, trainable):
    """With freeze_trained_positions the rows conversion copied from the old table stay bit for bit while the new
    rows train; without it, they move too."""
    table = tiny_gpt2().transformer.wpe.weight.detach().clone()

    def trained_table(freeze: bool) -> torch.Tensor:
        model = hf_posenc.convert(tiny_gpt2(), "learned", max_positions=2 * WINDOW)
        cfg = TrainConfig(output_dir=str(tmp_path / str(freeze)), block_size=2 * WINDOW, batch_size=2, max_steps=2,
                          learning_rate=1e-2, trainable=trainable, freeze_trained_positions=freeze,
                          progress=False)  # fmt: skip
        result = train(model, blocks(length=2 * WINDOW), None, cfg, CausalCollator())
        return result["model"].transformer.position_encoding.weight.detach()

    frozen, free = trained_table(True), trained_table(False)
    assert torch.equal(frozen[:WINDOW], table) and not torch.equal(frozen[WINDOW:], table)
    assert not torch.equal(free[:WINDOW], table)


def test_frozen_anchors_are_refused_where_no_row_was_kept():
    with pytest.raises(RecipeError, match="is for --encoding learned"):
        TrainConfig(freeze_trained_positions=True, encoding="rope").check()
    for encoding, options in (("rope", {}), ("learned", {"method": "interpolate"})):
        with pytest.raises(RecipeError, match="keeps the pretrained rows"):
            model = hf_posenc.convert(tiny_gpt2(), encoding, **options)
            Recovery.setup(TrainConfig(freeze_trained_positions=True), model)
    model = hf_posenc.convert(tiny_gpt2(), "learned", method="keep_stretch", keep=5)
    assert Recovery.setup(TrainConfig(freeze_trained_positions=True), model).anchors == list(range(5))


def test_frozen_anchors_of_an_anchor_table_are_every_stride_th_row(tmp_path):
    from tests.cases import tiny_bert

    model = hf_posenc.convert(tiny_bert(), "learned", max_positions=4 * WINDOW, method="anchor")
    assert Recovery.setup(TrainConfig(freeze_trained_positions=True), model).anchors == list(range(0, 4 * WINDOW, 4))
    table = model.bert.position_encoding.weight
    before = table.detach().clone()
    handles = freeze_rows(model, list(range(0, 4 * WINDOW, 4)))
    model(input_ids=torch.randint(3, 100, (2, 2 * WINDOW))).logits.sum().backward()
    assert (table.grad[::4] == 0).all() and (table.grad[1::4] != 0).any()
    torch.optim.SGD([table], lr=1.0).step()
    assert torch.equal(table[::4], before[::4]) and not torch.equal(table[1::4], before[1::4])
    for handle in handles:
        handle.remove()


def test_a_resumed_run_gives_the_losses_of_an_uninterrupted_one(tmp_path):
    """Stopped after one step and resumed: the teacher is the original again, the swap resumes at its scale."""
    methods = {"distill_weight": 1.0, "gradual_swap_steps": 2}
    common = {"block_size": WINDOW, "batch_size": 2, "max_steps": 3, "log_every": 1, "progress": False, **methods}
    full = TrainConfig(output_dir=str(tmp_path / "full"), **common)
    train(hf_posenc.convert(tiny_gpt2(dropout=0.1), "rope"), blocks(), None, full, CausalCollator())
    split = TrainConfig(output_dir=str(tmp_path / "split"), stop_after_steps=1, **common)
    train(hf_posenc.convert(tiny_gpt2(dropout=0.1), "rope"), blocks(), None, split, CausalCollator())
    split.stop_after_steps, split.resume_from_checkpoint = None, "latest"
    train(hf_posenc.convert(tiny_gpt2(dropout=0.1), "rope"), blocks(), None, split, CausalCollator())
    assert logged_losses(tmp_path / "split") == pytest.approx(logged_losses(tmp_path / "full"), rel=1e-6)
    with pytest.raises(RecipeError, match="no method reads it"):
        Recovery.setup(TrainConfig(), hf_posenc.convert(tiny_gpt2(), "rope"), teacher=tiny_gpt2())
