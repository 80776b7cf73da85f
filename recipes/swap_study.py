"""The swap study: pretrain (or reuse) a small GPT-2 with learned absolute positions on the shipped books, convert it
to every encoding, fine-tune each for the same token budget, and evaluate all of them and the original on held-out
books at 1x/2x/4x/8x the training window. Writes results.json, results.md and PNG plots to --out_dir (no absolute
path of this machine in them); the fine-tuned models go to the hf_posenc cache (or --models_dir), not next to them.

    python recipes/swap_study.py                      # the default setting (about 30 minutes on 2 CPU cores)
    python recipes/swap_study.py --setting quick      # under 3 minutes (CI)
    python recipes/swap_study.py --setting full       # GPU scale: gpt2 from the Hub, wikitext-103
    python recipes/swap_study.py --config my.yaml --set finetune.learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
SETTINGS = ("quick", "default", "full")


def load_settings(setting: str | None, config: str | None, overrides: list[str]) -> dict[str, Any]:
    """The study settings: a named YAML under recipes/configs (or --config), then --set key.sub=value overrides."""
    return load_settings_file(Path(config) if config else HERE / "configs" / f"swap_study_{setting}.yaml", overrides)


def train_config(section: dict[str, Any], output_dir: Path, progress: bool) -> TrainConfig:
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise RecipeError(f"Unknown training setting(s) {unknown}.")
    return TrainConfig(**{**section, "output_dir": str(output_dir), "progress": progress}).check()


class Study:
    """Runs the phases and rewrites the report after every model, so an interrupted study keeps what it measured."""

    def __init__(self, settings: dict[str, Any], out_dir: Path, models_dir: Path, progress: bool):
        self.settings, self.out_dir, self.models_dir, self.progress = settings, out_dir, models_dir, progress
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "settings": settings,
            "models_dir": str(models_dir),
            "machine": machine(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "gpt2": {"models": {}, "training": {}},
        }

    # ---------------- GPT-2 part ----------------
    def gpt2_part(self) -> None:
        from transformers import AutoModelForCausalLM

        from hf_posenc.training import CausalCollator, load_documents, load_tokenizer, tokenize_and_pack, train
        from hf_posenc.training.model import convert_if_asked

        s = self.settings
        data_settings = s.get("data") or {}
        base_dir, pretrained = self.base_model()
        tokenizer = load_tokenizer(str(base_dir))
        base = AutoModelForCausalLM.from_pretrained(str(base_dir))
        window = int(base.config.max_position_embeddings)
        block = int(s["finetune"].get("block_size", window))
        lengths = [window * f for f in s["eval"]["factors"]]
        self.record["gpt2"].update(base=str(base_dir), window=window, lengths=lengths, pretraining=pretrained)
        raw = load_documents(**data_settings)
        data = tokenize_and_pack(raw, tokenizer, block, max_eval_blocks=s["finetune"].get("max_eval_blocks", 64))
        texts = needed_text(list(raw["eval"]["text"]), lengths, s["eval"]["max_tokens"])
        self.evaluate("original (no fine-tuning)", base, tokenizer, texts, lengths)
        for name, options in self.encodings(s["encodings"], lengths).items():
            model = AutoModelForCausalLM.from_pretrained(str(base_dir))
            encoding = None if name == "original" else name
            model = convert_if_asked(model, encoding, options)
            label = "original + fine-tuning" if encoding is None else name
            swapped = self.in_window(model, tokenizer, texts, window) if encoding else None
            cfg = train_config({**s["finetune"], "block_size": block}, self.models_dir / "gpt2" / name, self.progress)
            result = train(model, data.train, data.eval, cfg, CausalCollator(), tokenizer)
            model = result.pop("model")
            self.record["gpt2"]["training"][label] = {**result, "in_window_ppl_right_after_swap": swapped}
            self.evaluate(label, model, tokenizer, texts, lengths)

    def base_model(self) -> tuple[Path, dict[str, Any]]:
        """The pretrained GPT-2 to convert: a Hub id / folder from the settings, or a cached small pretraining run."""
        from hf_posenc.data import cache_dir

        s = self.settings
        if s.get("base_model"):
            return Path(s["base_model"]), {"source": s["base_model"]}
        pre = dict(s["pretrain"])
        shape = {k: pre.pop(k) for k in ("n_layer", "n_embd", "n_head")}
        key = hashlib.sha256(json.dumps([pre, shape, s.get("data")], sort_keys=True).encode()).hexdigest()[:12]
        folder = cache_dir() / "study_base" / key
        summary_path = folder / "pretraining.json"
        if (folder / "config.json").is_file() and summary_path.is_file():
            return folder, {**json.loads(summary_path.read_text()), "reused_cache": True}
        sys.path.insert(0, str(HERE))
        from pretrain_clm import pretrain_clm

        cfg = train_config({**pre, **(s.get("data") or {})}, folder, self.progress)
        result = pretrain_clm(cfg, **shape)
        result.pop("model", None)
        summary = {**result, **shape, "block_size": cfg.block_size, "token_budget": cfg.token_budget}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        return folder, {**summary, "reused_cache": False}

    @staticmethod
    def encodings(spec: Any, lengths: list[int]) -> dict[str, dict[str, Any]]:
        """{"original": {}, name: options...}; a learned table is extended to the longest evaluated length."""
        spec = {name: {} for name in spec} if isinstance(spec, list) else dict(spec or {})
        out: dict[str, dict[str, Any]] = {"original": {}}
        for name, options in spec.items():
            options = dict(options or {})
            if name == "learned":
                options.setdefault("max_positions", max(lengths))
            out[name] = options
        return out

    def in_window(self, model: Any, tokenizer: Any, texts: list[str], window: int) -> float | None:
        from hf_posenc.evaluation import chunked_perplexity, tokenize_documents

        docs = tokenize_documents(tokenizer, texts)
        record = chunked_perplexity(model.eval(), docs, window, max_tokens=self.settings["eval"]["max_tokens"])
        model.train()
        return record.get("perplexity")

    def evaluate(self, label: str, model: Any, tokenizer: Any, texts: list[str], lengths: list[int]) -> None:
        from hf_posenc.evaluation import evaluate_long_context

        e = self.settings["eval"]
        result = evaluate_long_context(
            model,
            tokenizer,
            texts,
            lengths,
            stride=e.get("stride"),
            passkey=e.get("passkey", True),
            max_tokens=e["max_tokens"],
            sliding=e.get("sliding", True),
            passkey_trials=e.get("passkey_trials", 2),
            name=label,
            progress=self.progress,
        )
        self.record["gpt2"]["models"][label] = result
        self.write()

    # ---------------- report ----------------
    def write(self) -> None:
        import resource

        from report_swap_study import write_study_report

        self.record["wall_seconds"] = time.perf_counter() - self.started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.record["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        write_study_report(portable(self.record), self.out_dir)


def default_models_dir(out_dir: Path) -> Path:
    """Where a study that reports to `out_dir` keeps its fine-tuned models by default: in the hf_posenc cache, one
    folder per report folder, so that a report folder inside a repository never fills it with weights."""
    from hf_posenc.data import cache_dir

    resolved = out_dir.expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return cache_dir() / "swap_study_models" / f"{resolved.name}-{key}"


def portable(value: Any) -> Any:
    """A copy of `value` (the study record) without absolute paths of this machine, for results.json and results.md:
    a path in the hf_posenc cache reads `<cache>/...`, one under the working directory is relative to it, one under
    the home folder reads `~/...`, and any other absolute path is cut to `.../<its last part>`."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if not isinstance(value, str):
        return value
    from hf_posenc.data import cache_dir

    roots = []  # (folder without trailing separator, label), as written and with links resolved; never "/" itself
    for folder, label in ((cache_dir(), "<cache>"), (Path.cwd(), "."), (Path.home(), "~")):
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


def needed_text(texts: list[str], lengths: list[int], max_tokens: int) -> list[str]:
    """The start of each held-out document, long enough for every measurement (at most `max_tokens` tokens are
    scored per length, taken from the start of each document), so that tokenising is not the slow part."""
    chars = 8 * (max_tokens + 2 * max(lengths))  # English runs at about 4-5 characters per token
    return [text[:chars] for text in texts]


def machine() -> dict[str, Any]:
    import os

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
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide progress bars.")
    args = parser.parse_args(argv)
    if not args.progress:
        silence_progress_bars()
    settings = load_settings(args.setting, args.config, args.overrides)
    out_dir = Path(args.out_dir)
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir(out_dir)
    study = Study(settings, out_dir, models_dir, args.progress)
    study.gpt2_part()
    study.record["finished"] = True
    study.write()
    print(f"wrote {out_dir / 'results.md'} in {study.record['wall_seconds'] / 60:.1f} min; models in {models_dir}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    run_cli(main)
