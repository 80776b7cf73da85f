"""The Accelerate training loop of the recipes: schedule, accumulation, logging, evaluation, checkpoints, resume."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import TrainConfig, trackers
from .errors import RecipeError
from .model import select_trainable, trainable_count, unwrap_for_saving
from .recovery import Recovery


def make_accelerator(cfg: TrainConfig):
    """An Accelerator for this run. Accelerate keeps one state per process and refuses a second Accelerator with
    another mixed precision; a later `train` call in the same process with another precision (a study of several
    runs) resets that state, keeping the process group and device (PartialState) as they are. The trackers of
    `cfg.report_to` write under cfg.output_dir (TensorBoard: output_dir/<project name>)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    log_with = trackers(cfg.report_to)
    tracking = {"log_with": log_with, "project_dir": cfg.output_dir} if log_with else {}

    def build() -> Accelerator:
        return Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision=cfg.mixed_precision,
            cpu=cfg.cpu,
            **tracking,
        )

    try:
        return build()
    except ValueError as err:
        if "already been initialized" not in str(err) or "mixed_precision=" not in str(err):
            raise  # e.g. cpu=True after a GPU run: a real conflict, not a new precision
        AcceleratorState._reset_state(reset_partial_state=False)
        return build()


def declare_loss_type(model: nn.Module) -> None:
    """Give a transformers causal-LM head whose class name names no loss (`GPT2LMHeadModel`) the causal-LM loss it
    computes as its `loss_type`, so that its `loss_function` does not warn (see `causal_lm_loss_type`)."""
    from ..modeling.posenc_family import causal_lm_loss_type

    if getattr(model, "loss_type", "") is None:
        model.loss_type = causal_lm_loss_type(type(model))


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step:07d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = sorted((Path(output_dir) / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def total_steps(cfg: TrainConfig, blocks: int, processes: int) -> int:
    """Optimizer steps: from the token budget if given, else max_steps, else one epoch."""
    tokens_per_step = cfg.block_size * cfg.batch_size * cfg.gradient_accumulation_steps * processes
    if cfg.token_budget:
        return max(1, math.ceil(cfg.token_budget / tokens_per_step))
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, blocks // (cfg.batch_size * cfg.gradient_accumulation_steps * processes))


NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups as transformers' Trainer makes them: weights decay; biases, norms and the new position-encoding
    parameters do not. The position encoding's parameters get `position_lr_multiplier` x the learning rate; with an
    `attention_lr_multiplier` other than 1, the attention layers' parameters (the modules transformers records
    attentions from) get that factor, in groups of their own ("attention_decay", "attention_no_decay")."""
    from transformers.trainer_pt_utils import get_parameter_names

    decaying = set(get_parameter_names(model, [nn.LayerNorm], list(NO_DECAY_PATTERNS)))
    attention = attention_parameters(model) if cfg.attention_lr_multiplier != 1 else set()
    decay, no_decay, position, attention_decay, attention_no_decay = [], [], [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if "position_encoding" in name:
            position.append(parameter)
        elif id(parameter) in attention:
            (attention_decay if name in decaying else attention_no_decay).append(parameter)
        else:
            (decay if name in decaying else no_decay).append(parameter)
    if not (decay or no_decay or position or attention_decay or attention_no_decay):
        raise RecipeError("No parameter would train with these settings.")
    attention_lr = cfg.learning_rate * cfg.attention_lr_multiplier
    groups = [
        {"name": "decay", "params": decay, "weight_decay": cfg.weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        {"name": "position_encoding", "params": position, "weight_decay": 0.0,
         "lr": cfg.learning_rate * cfg.position_lr_multiplier},
        {"name": "attention_decay", "params": attention_decay, "weight_decay": cfg.weight_decay, "lr": attention_lr},
        {"name": "attention_no_decay", "params": attention_no_decay, "weight_decay": 0.0, "lr": attention_lr},
    ]  # fmt: skip
    return [group for group in groups if group["params"]]


def attention_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters inside the model's attention layers (self- and cross-attention; LoRA's inside them too),
    the position encoding's left out."""
    from .recovery.attention import attention_layers

    return {
        id(parameter)
        for layer in attention_layers(model)
        for name, parameter in layer.named_parameters()
        if "position_encoding" not in name
    }


def epoch_loader(dataset: Any, cfg: TrainConfig, epoch: int, collate: Callable) -> DataLoader:
    """The blocks of one epoch in a seeded order (the same on every process, so resuming replays it exactly)."""
    generator = torch.Generator().manual_seed(cfg.seed + epoch)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    # the loader's own generator: creating its iterator must not draw from the global RNG (dropout), or a resumed
    # run would diverge from an uninterrupted one
    return DataLoader(
        dataset.select(order), batch_size=cfg.batch_size, shuffle=False, collate_fn=collate, generator=generator
    )


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset: Any, cfg: TrainConfig, collate: Callable, accelerator: Any) -> float:
    """Mean loss per predicted token over the held-out blocks (masked LM: with a fixed masking seed).

    Each process sums its token losses and counts them per block; the sums and counts of all processes are gathered
    (`gather_for_metrics` drops the blocks repeated to even out the last batch) and divided once, so a causal LM's
    result is the same for any number of processes (a masked LM's masks depend on which process masks a block).
    The global RNG is left as it was (`fork_rng`).
    """
    model.eval()
    with torch.random.fork_rng(devices=[accelerator.device] if accelerator.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed + 12345)
        loss = _token_mean_loss(model, dataset, cfg, collate, accelerator)
    model.train()
    return loss


def _token_mean_loss(model: nn.Module, dataset: Any, cfg: TrainConfig, collate: Callable, accelerator: Any) -> float:
    """Summed token loss over summed token count, across processes."""
    # the loader's own generator: creating its iterator must not draw from the global RNG that the masking uses
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = accelerator.prepare_data_loader(
        DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate, generator=generator)
    )
    shift = getattr(collate, "causal", True)
    sums, counts = [], []
    for batch in loader:
        batch.pop("block", None)
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        if shift:
            logits, labels = logits[:, :-1], labels[:, 1:]
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        block_sums, block_counts = losses.sum(-1).double(), (labels != -100).sum(-1)
        sums.append(accelerator.gather_for_metrics(block_sums))
        counts.append(accelerator.gather_for_metrics(block_counts))
    if not sums:
        return float("nan")
    return float(torch.cat(sums).sum() / torch.cat(counts).sum().clamp(min=1))


class MetricsLog:
    """Appends JSON lines to output_dir/metrics.jsonl on the main process (never truncates earlier lines), and logs
    the numbers of each train, eval and probe record to the Accelerator's trackers at the record's optimizer step,
    as "train/loss", "train/learning_rate", "train/tokens_per_second", "eval/loss", "probe/perplexity"..."""

    TRACKED = ("train", "eval", "probe")
    NAMES = {"lr": "learning_rate"}

    def __init__(self, path: Path, enabled: bool, accelerator: Any = None):
        self.path, self.enabled, self.accelerator = path, enabled, accelerator

    def write(self, **record: Any) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        event = record["event"]
        if self.accelerator is not None and self.accelerator.trackers and event in self.TRACKED:
            values = {
                f"{event}/{self.NAMES.get(key, key.removeprefix(event + '_'))}": value
                for key, value in record.items()
                if key not in ("event", "step") and isinstance(value, (int, float)) and not isinstance(value, bool)
            }
            self.accelerator.log(values, step=record["step"])


def tracker_config(cfg: TrainConfig, **run: Any) -> dict[str, Any]:
    """The run's settings (and `run`'s facts) as a tracker config: TensorBoard's hparams take numbers, text,
    booleans and None, so anything else (a list of files) goes as JSON text."""
    values = {**vars(cfg), **run}
    plain = (bool, int, float, str, type(None))
    return {key: value if isinstance(value, plain) else json.dumps(value, default=str) for key, value in values.items()}


def end_tracking(accelerator: Any) -> None:
    """Close the run's trackers, as `accelerator.end_training()` does, but without destroying the process group: a
    later `train` in the same process (a study of several runs) still needs it; `run_cli` destroys it at the end."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def check_same_recovery(cfg: TrainConfig, saved: Path) -> None:
    """A resumed run trains with the recovery settings it began with (the run's train_config.json), or it would
    silently change its objective halfway (e.g. resumed without --no-recovery)."""
    from .recovery.settings import FIELDS

    if not saved.is_file():
        return
    before = json.loads(saved.read_text())
    changed = [f"--{name} {before[name]!r} -> {getattr(cfg, name)!r}" for name in FIELDS
               if name in before and before[name] != getattr(cfg, name)]  # fmt: skip
    if changed:
        raise RecipeError(
            f"Resuming with other recovery settings than the run began with ({', '.join(changed)}; "
            f"{saved}): give the run's own settings (--no-recovery if it began plainly)."
        )


def train(
    model: nn.Module,
    train_set: Any,
    eval_set: Any,
    cfg: TrainConfig,
    collate: Callable,
    tokenizer: Any = None,
    probe: Callable[[nn.Module], dict[str, Any]] | None = None,
    probe_steps: Sequence[int] = (),
    project_name: str = "hf_posenc",
    teacher: nn.Module | None = None,
) -> dict[str, Any]:
    """Train `model` on `train_set` blocks with Accelerate; save it (LoRA merged) to cfg.output_dir.

    With `cfg.report_to`, the trackers get the run's config (`tracker_config`) under `project_name`, and the loss,
    learning rate, tokens/s, evaluation and probe metrics of metrics.jsonl at each logged optimizer step.

    `probe(model)` (in eval mode, no gradients, without autocast) is called before the first step if 0 is in
    `probe_steps` and after each listed optimizer step: a recovery curve measured along one run. Its records, with
    "step" and "tokens", go to metrics.jsonl (event "probe") and to the result's "probes"; a resumed run returns only
    the probes of its own session (the earlier ones are in metrics.jsonl). A gradual swap's old table is out while a
    probe runs (it scores the model a run stopped there would save). Probes call the unwrapped model on every
    process, so they are refused under FSDP, whose parameters are sharded.

    The conversion-aware methods cfg turns on (`hf_posenc.training.recovery`: distillation and attention transfer
    from `teacher`, by default the model as it was before conversion, and a gradual swap) shape the training loss;
    the saved model carries no trace of them.

    Returns {"steps", "tokens", "train_loss", "eval_loss", "seconds", "tokens_per_second", "output_dir", "probes",
    "learning_rates" (each parameter group's peak learning rate, by group name), "cpu_seconds" and
    "cpu_seconds_per_token" (this process's CPU time, every thread, over its share of the tokens; probes left out,
    periodic evaluations and checkpoints counted: what a method costs per token, teacher included)}.
    """
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    accelerator = make_accelerator(cfg)
    if probe is not None and probe_steps and accelerator.distributed_type.name == "FSDP":
        raise RecipeError("Probes during training are not supported under FSDP (the parameters are sharded).")
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    if cfg.resume_from_checkpoint:
        check_same_recovery(cfg, out / "train_config.json")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(vars(cfg), indent=2, default=str) + "\n")
    recovery = Recovery.setup(cfg, model, teacher)  # before PEFT wraps the model: it may rebuild the original
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    declare_loss_type(model)
    model = select_trainable(model, cfg.trainable, cfg.lora_r, cfg.lora_alpha)
    trained, total = trainable_count(model)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = total_steps(cfg, len(train_set), accelerator.num_processes)
    # Accelerate steps a prepared scheduler once per process at every optimizer step (unless split_batches), so it
    # is sized in those steps, as transformers' run_clm_no_trainer does: the schedule per optimizer step is then the
    # same for any number of processes.
    processes = accelerator.num_processes
    try:
        scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=cfg.warmup_steps * processes,
            num_training_steps=steps * processes,
        )
    except ValueError as err:
        raise RecipeError(f"--lr_scheduler: {err}") from None
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step, resumed_micro = 0, 0
    if cfg.resume_from_checkpoint:
        path = latest_checkpoint(out) if cfg.resume_from_checkpoint == "latest" else Path(cfg.resume_from_checkpoint)
        if path is None or not path.is_dir():
            raise RecipeError(f"No checkpoint to resume from: {cfg.resume_from_checkpoint} (in {out / 'checkpoints'}).")
        accelerator.load_state(str(path))
        progress = json.loads((path / "progress.json").read_text())
        step, resumed_micro = progress["step"], progress["micro"]
    recovery.attach(model, steps, step, accelerator.autocast)

    facts = {"steps": steps, "trainable_parameters": trained, "parameters": total, "processes": processes}
    accelerator.init_trackers(project_name, config=tracker_config(cfg, **facts))
    log = MetricsLog(out / "metrics.jsonl", accelerator.is_main_process, accelerator)
    log.write(event="start", step=step, steps=steps, trainable_parameters=trained, parameters=total)
    micro_per_epoch = len(epoch_loader(train_set, cfg, 0, collate))
    micro_per_epoch = math.ceil(micro_per_epoch / accelerator.num_processes)
    if micro_per_epoch < cfg.gradient_accumulation_steps:
        raise RecipeError(
            f"Too little training data: {len(train_set)} blocks cannot fill one step of "
            f"{cfg.batch_size} x {cfg.gradient_accumulation_steps} x {accelerator.num_processes} blocks."
        )
    seen_blocks: list[int] = []
    stop_at = min(steps, cfg.stop_after_steps) if cfg.stop_after_steps else steps
    bar = tqdm(total=steps, initial=step, desc="train", disable=not (cfg.progress and accelerator.is_main_process))
    probes: list[dict[str, Any]] = []
    tokens_per_step = cfg.block_size * cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes

    def run_probe(at: int) -> tuple[float, float]:
        """Probe after step `at` if it is listed; returns the wall-clock and CPU seconds it took."""
        if probe is None or at not in probe_steps:
            return 0.0, 0.0
        began, began_cpu = time.perf_counter(), time.process_time()
        inner = accelerator.unwrap_model(model)
        inner.eval()
        try:
            with torch.no_grad(), full_precision(inner), recovery.as_saved():
                record = {"step": at, "tokens": at * tokens_per_step, **probe(inner)}
        finally:
            inner.train()
        probes.append(record)
        log.write(event="probe", **record)
        return time.perf_counter() - began, time.process_time() - began_cpu

    if step == 0:
        run_probe(0)
    model.train()
    start_time, tokens, window_tokens, window_start = time.perf_counter(), 0, 0, time.perf_counter()
    start_cpu = time.process_time()
    probe_seconds = probe_cpu = 0.0  # not training time: left out of the run's seconds and of the logged tokens/s
    train_loss, last_eval, running = float("nan"), None, []
    micro = resumed_micro
    while step < stop_at:
        epoch, skip = divmod(micro, micro_per_epoch)
        loader = accelerator.prepare_data_loader(epoch_loader(train_set, cfg, epoch, collate))
        loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in loader:
            blocks = batch.pop("block", None)
            if cfg.record_batches and blocks is not None:
                seen_blocks.extend(int(b) for b in blocks)
            with accelerator.accumulate(model):
                loss = recovery.training_loss(model, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            micro += 1
            running.append(float(accelerator.reduce(loss.detach(), reduction="mean")))
            batch_tokens = int(batch["input_ids"].numel()) * accelerator.num_processes
            tokens += batch_tokens
            window_tokens += batch_tokens
            if not accelerator.sync_gradients:
                continue
            step += 1
            recovery.at_step(step)
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop_at:
                now = time.perf_counter()
                train_loss = sum(running) / len(running)
                rate = window_tokens / max(1e-9, now - window_start)
                lr = scheduler.get_last_lr()[0]
                log.write(event="train", step=step, loss=train_loss, lr=lr, tokens=tokens, tokens_per_second=rate)
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{rate:,.0f}")
                running, window_tokens, window_start = [], 0, now
            if cfg.eval_every and step % cfg.eval_every == 0 and eval_set is not None and len(eval_set):
                last_eval = evaluate_loss(model, eval_set, cfg, collate, accelerator)
                log.write(event="eval", step=step, eval_loss=last_eval, eval_perplexity=math.exp(min(last_eval, 50)))
            probed, probed_cpu = run_probe(step)
            probe_seconds += probed
            probe_cpu += probed_cpu
            window_start += probed
            if cfg.save_every and step % cfg.save_every == 0:
                save_checkpoint(accelerator, out, step, micro)
            if step >= stop_at:
                break
    bar.close()
    recovery.close()
    seconds = time.perf_counter() - start_time - probe_seconds
    cpu_seconds = time.process_time() - start_cpu - probe_cpu  # this process's CPU time, every thread
    if cfg.record_batches:
        path = out / f"batches_rank{accelerator.process_index}.json"
        path.write_text(json.dumps(seen_blocks) + "\n")
    result = {"steps": step, "tokens": tokens, "train_loss": train_loss, "seconds": seconds, "probes": probes}
    result["learning_rates"] = {group["name"]: group["initial_lr"] for group in optimizer.param_groups}
    result["tokens_per_second"] = tokens / max(seconds, 1e-9)
    result["cpu_seconds"] = cpu_seconds
    result["cpu_seconds_per_token"] = cpu_seconds / max(tokens / accelerator.num_processes, 1)  # this process's
    if step < steps:  # stopped early on purpose: keep a checkpoint to resume from, do not save a final model
        save_checkpoint(accelerator, out, step, micro)
        log.write(event="stopped", step=step)
        end_tracking(accelerator)
        return {**result, "eval_loss": last_eval, "output_dir": str(out), "finished": False}
    if eval_set is not None and len(eval_set):
        last_eval = evaluate_loss(model, eval_set, cfg, collate, accelerator)
        log.write(event="eval", step=step, eval_loss=last_eval, eval_perplexity=math.exp(min(last_eval, 50)))
    accelerator.wait_for_everyone()
    final = unwrap_for_saving(without_autocast(accelerator.unwrap_model(model)))
    if accelerator.is_main_process:
        final.save_pretrained(str(out))
        if tokenizer is not None:
            from ..hub.save import declared_max_length, save_tokenizer  # model_max_length: the declared length

            save_tokenizer(tokenizer, out, declared_max_length(final.config))
    log.write(event="end", step=step, eval_loss=last_eval, seconds=seconds)
    end_tracking(accelerator)
    accelerator.wait_for_everyone()
    return {**result, "eval_loss": last_eval, "output_dir": str(out), "finished": True, "model": final}


def without_autocast(model: nn.Module) -> nn.Module:
    """`model` with its class's own forward back in place of the autocast wrapper that Accelerate's mixed precision
    sets on the instance (it keeps the original as `_original_forward`). Unwrapping with keep_fp32_wrapper=False
    would also strip transformers' own decorators from forward (return_dict=False would fail)."""
    if model.__dict__.pop("_original_forward", None) is not None:
        model.__dict__.pop("forward", None)
    return model


@contextlib.contextmanager
def full_precision(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` without the autocast wrapper of Accelerate's mixed precision for a while (a probe measures the
    model as a float32 evaluation would), then put the wrapper back."""
    original = model.__dict__.get("_original_forward")
    if original is None:
        yield model
        return
    wrapped = model.__dict__["forward"]
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


def save_checkpoint(accelerator: Any, output_dir: Path, step: int, micro: int) -> None:
    """accelerator.save_state into checkpoints/step_N (model, optimizer, scheduler, RNG states) + the position."""
    path = checkpoint_dir(output_dir, step)
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "progress.json").write_text(json.dumps({"step": step, "micro": micro}) + "\n")
    accelerator.wait_for_everyone()
