"""The swap study: take a GPT-2 with learned absolute positions (by default the shipped study base), convert it to
every encoding, fine-tune each with several seeds while probing its in-window perplexity along the way (the recovery
curve), then measure perplexity at 1x/2x/4x/8x its window (chunked and sliding), RoPE with inference-time scaling
past the window, and passkey retrieval by length and depth. Writes results.json, results.md and PNG plots to
--out_dir (no absolute path of this machine in them); the fine-tuned models go to the hf_posenc cache (or
--models_dir), not next to them.

    python recipes/swap_study.py --out_dir results/swap_study   # the default setting (under 30 minutes, 2 CPU cores)
    python recipes/swap_study.py --setting quick                # under 3 minutes (CI)
    python recipes/swap_study.py --setting full                 # GPU scale: gpt2 from the Hub, wikitext-103
    python recipes/swap_study.py --config my.yaml --set finetune.learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hf_posenc.training import RecipeError, TrainConfig, run_cli, silence_progress_bars
from hf_posenc.training.config import load_settings as load_settings_file

HERE = Path(__file__).resolve().parent
SETTINGS = ("quick", "default", "long", "full", "recovery_validation", "recovery")
MIXTURE_KEYS = {"retrieval_fraction", "retrieval_seed", "retrieval_packed", "copy_fraction"}
CURVE_KEYS = {"points", "windows_per_book", "passkey_trials"}
EVAL_KEYS = {
    "factors", "spans_per_book", "sliding", "passkey_trials", "passkey_depths", "passkey_factors", "precision"
}  # fmt: skip
SECTIONS = {
    "base_model", "data", "seeds", "workers", "encodings", "finetune", "mixture", "curve", "eval", "scaling",
    "comparisons",
}  # fmt: skip


def load_settings(setting: str | None, config: str | None, overrides: list[str]) -> dict[str, Any]:
    """The study settings: a named YAML under recipes/configs (or --config), then --set key.sub=value overrides."""
    path = Path(config) if config else HERE / "configs" / f"swap_study_{setting}.yaml"
    settings = load_settings_file(path, overrides)
    unknown = sorted(set(settings) - SECTIONS)
    if unknown:
        raise RecipeError(f"Unknown study setting(s) {unknown} in {path.name}; known: {sorted(SECTIONS)}.")
    for section, known in (("curve", CURVE_KEYS), ("eval", EVAL_KEYS)):
        unknown = sorted(set(settings.get(section) or {}) - known)
        if unknown:
            raise RecipeError(f"{section}: unknown key(s) {unknown}; known: {sorted(known)}.")
    if (settings.get("eval") or {}).get("precision", "fp32") not in ("fp32", "bf16"):
        raise RecipeError("eval.precision: 'fp32' or 'bf16'.")
    return settings


def train_config(section: dict[str, Any], output_dir: Path, progress: bool) -> TrainConfig:
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise RecipeError(f"Unknown training setting(s) {unknown}.")
    return TrainConfig(**{**section, "output_dir": str(output_dir), "progress": progress}).check()


def encoding_specs(spec: Any, lengths: list[int]) -> dict[str, dict[str, Any]]:
    """{arm: {"encoding": name, "options": convert options, "finetune": training overrides}}. An arm is named after
    its encoding unless it says `encoding:` (arms that differ from another in one setting, e.g. a frozen table); a
    learned table is extended (copied, as LED does) to the longest evaluated length."""
    from hf_posenc import available_encodings

    spec = {name: {} for name in spec} if isinstance(spec, list) else dict(spec or {})
    known = set(available_encodings())
    out = {}
    for name, entry in spec.items():
        entry = dict(entry or {})
        unknown = sorted(set(entry) - {"encoding", "options", "finetune"})
        if unknown:
            raise RecipeError(f"encodings.{name}: unknown key(s) {unknown}; use encoding:, options: and finetune:.")
        encoding = entry.get("encoding", name)
        if encoding not in known:
            raise RecipeError(f"encodings.{name}: unknown encoding {encoding!r}; known: {sorted(known)}.")
        options = dict(entry.get("options") or {})
        if encoding == "learned":
            options.setdefault("max_positions", max(lengths))
        out[name] = {"encoding": encoding, "options": options, "finetune": dict(entry.get("finetune") or {})}
    if not out:
        raise RecipeError("No encodings to study.")
    return out


class Bench:
    """What every run shares: the base, tokenizer, held-out texts, training blocks (with the retrieval mixture), the
    fine-tuning settings and probe steps. Built once per process (the main one, and each worker)."""

    def __init__(self, settings: dict[str, Any]):
        from transformers import AutoConfig

        from hf_posenc.data import study_base_dir
        from hf_posenc.evaluation import heldout_windows
        from hf_posenc.evaluation.recovery import log_spaced_steps
        from hf_posenc.training import load_documents, load_tokenizer, tokenize_and_pack
        from hf_posenc.training.retrieval_mix import mix_retrieval

        s = self.settings = settings
        self.base_dir = str(s.get("base_model") or study_base_dir())
        config = AutoConfig.from_pretrained(self.base_dir)
        if config.model_type != "gpt2" or getattr(config, "position_encoding", None):
            raise RecipeError(f"The study converts a GPT-2 with learned positions; {self.base_dir} is not one.")
        self.window = window = int(config.max_position_embeddings)
        self.lengths = [window * int(f) for f in s["eval"]["factors"]]
        keyed = s["eval"].get("passkey_factors")  # passkey at these factors only (default: every one)
        self.passkey_lengths = self.lengths if keyed is None else [window * int(f) for f in keyed]
        if not self.passkey_lengths or not set(self.passkey_lengths) <= set(self.lengths):
            raise RecipeError(
                f"eval.passkey_factors {keyed} must be one or more of eval.factors {s['eval']['factors']}."
            )
        self.specs = encoding_specs(s["encodings"], self.lengths)
        self.finetune = {**s["finetune"], "block_size": window}
        accumulation = self.finetune.get("gradient_accumulation_steps", 1)
        self.tokens_per_step = window * self.finetune["batch_size"] * accumulation
        self.steps = -(-int(self.finetune.pop("token_budget")) // self.tokens_per_step)
        try:
            self.probe_steps = log_spaced_steps(self.steps, int(s["curve"]["points"]))
        except ValueError as err:
            raise RecipeError(f"curve.points: {err} Raise finetune.token_budget or lower curve.points.") from None
        for spec in self.specs.values():  # every run's training settings, checked before anything runs
            train_config({**self.finetune, **spec["finetune"], "max_steps": self.steps}, Path("."), False)
        self.tokenizer = load_tokenizer(self.base_dir)
        raw = load_documents(**(s.get("data") or {}))
        self.train_texts = list(raw["train"]["text"])
        self.texts = list(raw["eval"]["text"])  # the held-out books, whole
        self.windows = heldout_windows(self.tokenizer, self.texts, window, s["curve"]["windows_per_book"])
        self.spans = spread_spans(self.tokenizer, self.texts, max(self.lengths), s["eval"]["spans_per_book"])
        data = tokenize_and_pack(raw, self.tokenizer, window, max_eval_blocks=1)
        mixture = s.get("mixture") or {}
        unknown = sorted(set(mixture) - MIXTURE_KEYS)
        if unknown:
            raise RecipeError(f"mixture: unknown key(s) {unknown}; known: {sorted(MIXTURE_KEYS)}.")
        self.train_set, self.mixture = mix_retrieval(
            data.train, self.tokenizer, window, mixture.get("retrieval_fraction", 0.0),
            mixture.get("retrieval_seed", 1), packed=bool(mixture.get("retrieval_packed", False)),
            copy_fraction=mixture.get("copy_fraction", 0.0),
        )  # fmt: skip

    def precision(self, model: Any) -> Any:
        """The evaluation's precision (eval.precision): bf16 autocast, as the runs train, or fp32."""
        import torch

        bf16 = self.settings["eval"].get("precision", "fp32") == "bf16"
        device = next(model.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)

    def probe(self, model: Any, keys_seed: int) -> dict[str, Any]:
        """In-window quality on windows spread over the held-out books (perplexity and bits per character, each
        window's loss for the bootstrap) and passkey at the window over the evaluation's depths, with keys drawn by
        `keys_seed` (each seed its own keys)."""
        from hf_posenc.evaluation import passkey_retrieval, score_windows

        curve = self.settings["curve"]
        with self.precision(model):
            scored = score_windows(model, self.tokenizer, self.windows)
            out = {key: scored[key] for key in ("perplexity", "bpc", "loss", "window_losses")}
            if curve.get("passkey_trials"):
                depths = tuple(self.settings["eval"]["passkey_depths"])
                found = passkey_retrieval(
                    model, self.tokenizer, [self.window], depths, curve["passkey_trials"], seed=keys_seed
                )
        if curve.get("passkey_trials"):
            out["passkey"] = found["accuracy_by_length"][0]
            out["passkey_hits"] = [hit for cell in found["hits"][0] for hit in cell]
            out["passkey_first_key_token"] = [hit for cell in found["first_key_token"][0] for hit in cell]
            out["passkey_seed"] = keys_seed
        return out

    def evaluate(self, model: Any, lengths: list[int], label: str, keys_seed: int, progress: bool = False) -> dict:
        """Chunked perplexity at each length on the spans spread over the held-out books (each span's loss for the
        bootstrap) and passkey retrieval with keys drawn by `keys_seed`."""
        from hf_posenc.evaluation import evaluate_long_context

        e = self.settings["eval"]
        with self.precision(model):
            return evaluate_long_context(
                model, self.tokenizer, self.spans, lengths, passkey=True, max_tokens=sum(s.numel() for s in self.spans),
                sliding=e.get("sliding", False), passkey_trials=e["passkey_trials"],
                passkey_depths=tuple(e["passkey_depths"]), passkey_seed=keys_seed, passkey_lengths=self.passkey_lengths,
                name=label, progress=progress,
            )  # fmt: skip

    def run(self, name: str, seed: int, models_dir: Path, progress: bool = False) -> dict[str, Any]:
        """Convert, fine-tune with probes, evaluate; rope also with inference-time scaling. A JSON-able record."""
        from functools import partial

        from transformers import AutoModelForCausalLM

        import hf_posenc
        from hf_posenc.training import CausalCollator, train

        spec = self.specs[name]
        model = AutoModelForCausalLM.from_pretrained(self.base_dir)
        model = hf_posenc.convert(model, spec["encoding"], **spec["options"])
        before = position_table(model)
        section = {**self.finetune, **spec["finetune"], "max_steps": self.steps, "seed": seed}
        cfg = train_config(section, models_dir / name / f"seed{seed}", progress)
        probe_keys, eval_keys = passkey_seeds(seed)
        result = train(model, self.train_set, None, cfg, CausalCollator(), self.tokenizer,
                       probe=partial(self.probe, keys_seed=probe_keys), probe_steps=self.probe_steps,
                       project_name="swap_study")  # fmt: skip
        model = result.pop("model")
        out = {"training": result, "long_context": self.evaluate(model, self.lengths, f"{name} seed {seed}", eval_keys)}
        if before is not None:
            out["position_table"] = {"before": before, "after": position_table(model)}
        if spec["encoding"] == "rope" and name == "rope":
            out["scaling"] = self.scaled(model, seed)
        return out

    def scaled(self, model: Any, seed: int) -> dict[str, dict[str, Any]]:
        """The fine-tuned rope model past its window with inference-time scaling (factor = length / window):
        {kind: {length: result}}."""
        import hf_posenc

        out: dict[str, dict[str, Any]] = {}
        for kind in self.settings.get("scaling") or []:
            for length in (n for n in self.lengths if n > self.window):
                hf_posenc.set_rope_scaling(model, {"rope_type": kind, "factor": length / self.window})
                label = f"rope + {kind} seed {seed}"
                out.setdefault(kind, {})[str(length)] = self.evaluate(model, [length], label, passkey_seeds(seed)[1])
        hf_posenc.set_rope_scaling(model, None)
        return out


def passkey_seeds(seed: int) -> tuple[int, int]:
    """The passkey key seeds of a run with training seed `seed`: (its probes', its final evaluation's). Every seed
    draws its own keys, and the final evaluation others than the probes; the base uses BASE_KEYS."""
    return 10_000 + seed, 20_000 + seed


BASE_KEYS = (30_000, 40_000)  # the base's probe and evaluation keys


def spread_spans(tokenizer: Any, texts: list[str], length: int, per_text: int) -> list[Any]:
    """Up to `per_text` non-overlapping spans of `length` tokens from each text, evenly spaced from its start to its
    end (1-D LongTensors): the scored text of the long-context evaluation, the same for every length (each span is cut
    into chunks of the shorter lengths), and the units of its bootstrap."""
    from hf_posenc.evaluation import tokenize_documents
    from hf_posenc.evaluation.bpc import window_starts

    spans = []
    for ids in tokenize_documents(tokenizer, texts):  # a text shorter than `per_text` spans gives what it holds
        spans.extend(ids[start : start + length] for start in window_starts(ids.numel(), length, per_text))
    if not spans:
        raise RecipeError(f"No held-out text holds {length} tokens: lower eval.factors.")
    return spans


_BENCH: Bench | None = None  # a worker process's own bench


def _start_worker(settings: dict[str, Any], threads: int) -> None:
    import torch

    global _BENCH
    torch.set_num_threads(threads)
    silence_progress_bars()
    _BENCH = Bench(settings)


def _run_in_worker(name: str, seed: int, models_dir: Path) -> dict[str, Any]:
    assert _BENCH is not None
    return _BENCH.run(name, seed, models_dir)


class Study:
    """Measures the base, then every (encoding, seed) run, `workers` at a time (each with its share of the torch
    threads), and rewrites the report after each run, so an interrupted study keeps what it measured."""

    def __init__(self, settings: dict[str, Any], out_dir: Path, models_dir: Path, progress: bool, resume: bool = False):
        self.settings, self.out_dir, self.models_dir, self.progress = settings, out_dir, models_dir, progress
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "settings": settings,
            "models_dir": str(models_dir),
            "machine": machine(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        self.earlier = self.resumed_record() if resume else None
        self.done: dict[tuple[str, int], dict[str, Any]] = finished_runs(self.earlier) if self.earlier else {}

    def resumed_record(self) -> dict[str, Any] | None:
        """The report of an interrupted study in out_dir with the same settings, or None when there is none; a
        different study there is an error (resuming must not mix settings)."""
        import json

        path = self.out_dir / "results.json"
        if not path.is_file():
            return None
        earlier = json.loads(path.read_text())
        if earlier.get("settings") != portable(self.settings):
            raise RecipeError(f"{path} holds a study with other settings; use another --out_dir to start afresh.")
        if earlier.get("finished"):
            raise RecipeError(f"{path} holds a finished study; there is nothing to resume.")
        return earlier if "base_result" in earlier else None

    def run(self) -> None:
        from transformers import AutoModelForCausalLM

        from hf_posenc.evaluation import unigram_bpc

        bench = Bench(self.settings)
        jobs = [(name, int(seed)) for name in bench.specs for seed in self.settings["seeds"]]
        if self.earlier:  # the base's measurements and the finished runs come from the interrupted study
            keep = ("date", "base", "window", "lengths", "mixture", "steps", "tokens_per_step", "probe_steps",
                    "base_pretraining_tokens", "base_result")  # fmt: skip
            self.record.update({key: self.earlier[key] for key in keep})
            self.record["sessions"] = self.earlier.get("sessions", 1) + 1
            self.file(jobs)
            self.run_jobs(bench, jobs)
            return
        base = AutoModelForCausalLM.from_pretrained(bench.base_dir)
        self.record.update(
            base=portable(bench.base_dir), window=bench.window, lengths=bench.lengths, mixture=bench.mixture,
            steps=bench.steps, tokens_per_step=bench.tokens_per_step, probe_steps=bench.probe_steps,
            base_pretraining_tokens=pretraining_tokens(bench.base_dir), base_result=bench.probe(base, BASE_KEYS[0]),
            runs={}, scaling={}, position_tables={},
        )  # fmt: skip
        from hf_posenc.evaluation import score_windows
        from hf_posenc.evaluation.study import BASE

        fp32 = score_windows(base.eval(), bench.tokenizer, bench.windows)  # as the study base's own report measures it
        self.record["base_result"]["fp32"] = {key: fp32[key] for key in ("perplexity", "bpc", "windows")}
        self.record["base_result"]["long_context"] = bench.evaluate(
            base, bench.lengths, BASE, BASE_KEYS[1], self.progress
        )
        self.record["base_result"]["unigram_bpc"] = unigram_bpc(bench.tokenizer, bench.train_texts, bench.texts)["bpc"]
        self.write()
        self.run_jobs(bench, jobs)

    def run_jobs(self, bench: Bench, jobs: list[tuple[str, int]]) -> None:
        """Every (encoding, seed) run not yet done, `workers` at a time."""
        todo = [job for job in jobs if job not in self.done]
        workers = max(1, min(int(self.settings.get("workers", 1)), len(todo)))
        if workers == 1:
            results = ((job, bench.run(*job, self.models_dir, self.progress)) for job in todo)
            self.collect(results, jobs)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import torch

        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # no fork of a process whose OpenMP threads are running
        with ProcessPoolExecutor(workers, context, _start_worker, (self.settings, threads)) as pool:
            futures = {pool.submit(_run_in_worker, *job, self.models_dir): job for job in todo}
            try:
                self.collect(((futures[f], f.result()) for f in as_completed(futures)), jobs)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # a failed run: do not start the others
                raise

    def collect(self, results: Any, jobs: list[tuple[str, int]]) -> None:
        """File each finished run and rewrite the report after each."""
        from tqdm.auto import tqdm

        bar = tqdm(results, total=len(jobs), initial=len(self.done), desc="swap study runs", disable=not self.progress)
        for job, result in bar:
            self.done[job] = result
            self.file(jobs)

    def file(self, jobs: list[tuple[str, int]]) -> None:
        """Put the finished runs under their encoding and seed (in the order of `jobs`) and rewrite the report."""
        runs, tables, scaling = {}, {}, {}
        for (name, seed), run in ((job, self.done[job]) for job in jobs if job in self.done):
            runs.setdefault(name, {})[str(seed)] = {k: run[k] for k in ("training", "long_context")}
            if "position_table" in run:
                tables.setdefault(name, {})[str(seed)] = run["position_table"]
            for kind, by_length in (run.get("scaling") or {}).items():
                scaling.setdefault(kind, {})[str(seed)] = by_length
        self.record.update(runs=runs, position_tables=tables, scaling=scaling)
        self.write()

    def write(self) -> None:
        from report_swap_study import write_study_report

        earlier = self.earlier or {}
        self.record["wall_seconds"] = earlier.get("wall_seconds", 0.0) + time.perf_counter() - self.started
        self.record["cpu_seconds"] = earlier.get("cpu_seconds", 0.0) + cpu_seconds()
        self.record["cpu_complete"] = self.earlier is None or bool(earlier.get("cpu_complete"))
        # how busy the machine was (1-minute load average, highest seen at a report write): wall time means little
        # on a machine shared with other jobs, the CPU time does
        self.record["load_average_max"] = max(self.record.get("load_average_max", 0.0), os.getloadavg()[0],
                                              earlier.get("load_average_max", 0.0))  # fmt: skip
        write_study_report(portable(self.record), self.out_dir)


def cpu_seconds() -> float:
    """CPU seconds of this process and its children so far: the ones that ended and the running fine-tuning
    workers, so that a report rewritten mid-study (and kept when the study is interrupted) counts them."""
    import resource

    import psutil

    ended = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    total = sum(u.ru_utime + u.ru_stime for u in ended)
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted with RUSAGE_CHILDREN once reaped
            continue
        total += times.user + times.system
    return total


def finished_runs(record: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The runs an interrupted study's report holds, by (encoding, seed), as `Bench.run` returned them."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for name, by_seed in (record.get("runs") or {}).items():
        for seed, run in by_seed.items():
            table = (record.get("position_tables") or {}).get(name, {}).get(seed)
            scaled = record.get("scaling") or {}
            scaling = {kind: seeds[seed] for kind, seeds in scaled.items() if seed in seeds}
            done[(name, int(seed))] = {
                **run,
                **({"position_table": table} if table is not None else {}),
                **({"scaling": scaling} if name == "rope" and scaling else {}),
            }
    return done


def pretraining_tokens(base_dir: str) -> int | None:
    """The base's pretraining tokens, from the base_report.json that `recipes/pretrain_study_base.py` writes."""
    import json

    report = Path(base_dir) / "base_report.json"
    return json.loads(report.read_text()).get("tokens_trained") if report.is_file() else None


def position_table(model: Any) -> list[list[float]] | None:
    """A T5 bias table as [bucket][head] (the first layer's, when each layer has its own), else None."""
    encoding = getattr(model.base_model, "position_encoding", None)
    bias = getattr(encoding, "relative_attention_bias", None)
    if bias is None:
        return None
    heads = model.config.num_attention_heads
    return bias.weight.detach().float()[:, :heads].tolist()


def default_models_dir(out_dir: Path) -> Path:
    """Where a study that reports to `out_dir` keeps its fine-tuned models by default: in the hf_posenc cache, one
    folder per report folder, so that a report folder inside a repository never fills it with weights."""
    from hf_posenc.data import cache_dir

    resolved = out_dir.expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return cache_dir() / "swap_study_models" / f"{resolved.name}-{key}"


def portable(value: Any) -> Any:
    """A copy of `value` (the study record) without absolute paths of this machine, for results.json and results.md:
    a path in the hf_posenc cache reads `<cache>/...`, the installed package `<hf_posenc>/...`, one under the working
    directory is relative to it, one under the home folder reads `~/...`, and any other absolute path is cut to
    `.../<its last part>`."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if not isinstance(value, str):
        return value
    import hf_posenc
    from hf_posenc.data import cache_dir

    package = Path(hf_posenc.__file__).parent
    roots = []  # (folder without trailing separator, label), as written and with links resolved; never "/" itself
    for folder, label in ((cache_dir(), "<cache>"), (package, "<hf_posenc>"), (Path.cwd(), "."), (Path.home(), "~")):
        for form in dict.fromkeys((os.path.abspath(folder.expanduser()), os.path.realpath(folder.expanduser()))):
            if form.rstrip(os.sep):
                roots.append((form.rstrip(os.sep), label))
    if os.path.isabs(value) and "\n" not in value:
        for root, label in roots:
            if value == root:
                return label
            if value.startswith(root + os.sep):
                rest = value[len(root) + 1 :].replace(os.sep, "/")
                return rest if label == "." else f"{label}/{rest}"
        return f".../{Path(value).name}"
    for root, label in roots:  # paths inside messages
        value = value.replace(root + os.sep, f"{label}/")
    return value


def machine() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=SETTINGS, default="default", help="Named settings (recipes/configs).")
    parser.add_argument(
        "--config", help="A settings YAML of your own (same keys as recipes/configs/swap_study_*.yaml)."
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Override: key.sub=value.")
    parser.add_argument("--out_dir", default="outputs/swap_study", help="Report folder (results.json, .md, PNGs).")
    parser.add_argument(
        "--models_dir",
        help="Where the fine-tuned models are saved (default: a folder for OUT_DIR in the hf_posenc cache, "
        "$HF_POSENC_CACHE or ~/.cache/hf_posenc).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue an interrupted study in OUT_DIR (same settings): keep its base measurements and finished runs.",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide progress bars.")
    args = parser.parse_args(argv)
    if not args.progress:
        silence_progress_bars()
    settings = load_settings(args.setting, args.config, args.overrides)
    out_dir = Path(args.out_dir)
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir(out_dir)
    study = Study(settings, out_dir, models_dir, args.progress, args.resume)
    study.run()
    study.record["finished"] = True
    study.write()
    print(f"wrote {out_dir / 'results.md'} in {study.record['wall_seconds'] / 60:.1f} min; models in {models_dir}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    run_cli(main)
