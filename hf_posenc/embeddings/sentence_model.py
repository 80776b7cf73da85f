"""A sentence-transformers model folder, read and written without sentence-transformers: the transformer, its
pooling config, whether embeddings are normalised, and the length it reads (`max_seq_length`).

The layout is sentence-transformers' own: `modules.json` lists the modules (Transformer, Pooling, Normalize),
`1_Pooling/config.json` holds the pooling mode and `sentence_bert_config.json` the length. A converted model saves
the same layout around an hf_posenc checkpoint, so `SentenceTransformer(path, trust_remote_code=True)` loads it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling.posenc_base import PositionEncodingError

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")
# sentence-transformers' pooling keys (1_Pooling/config.json, version 2 and 3 names) -> the mode they switch on
POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass
class SentenceEncoder:
    """A BERT-family transformer with sentence-transformers' pooling: what `encode` needs, and what `save` writes."""

    model: Any
    tokenizer: Any
    pooling: dict[str, Any]  # 1_Pooling/config.json as it was
    normalize: bool
    max_seq_length: int
    extra_files: dict[str, bytes] = field(default_factory=dict)  # config_sentence_transformers.json and the like

    @property
    def pooling_modes(self) -> tuple[str, ...]:
        return pooling_modes(self.pooling)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """sentence-transformers' pooling of `hidden` [B, T, H] over the unmasked tokens, then the L2 norm if the
        model normalises."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        parts = []
        for mode in self.pooling_modes:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode == "max":
                parts.append(hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values)
            else:
                summed, count = (hidden * mask).sum(1), mask.sum(1).clamp(min=1e-9)
                parts.append(summed / (count if mode == "mean" else count.sqrt()))
        pooled = torch.cat(parts, dim=-1)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """The modes a pooling config switches on (sentence-transformers 2-3 flags, or 5+'s `pooling_mode`)."""
    if "pooling_mode" in config and isinstance(config["pooling_mode"], (str, list, tuple)):
        modes = (config["pooling_mode"],) if isinstance(config["pooling_mode"], str) else tuple(config["pooling_mode"])
    else:
        modes = tuple(mode for key, mode in POOLING_FLAGS.items() if config.get(key))
    other = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
    unsupported = [mode for mode in modes if mode not in POOLING_MODES] + [
        key for key in other if key not in POOLING_FLAGS
    ]
    if unsupported or not modes:
        raise PositionEncodingError(
            f"Pooling {unsupported or 'none'} is not supported; hf_posenc pools with {', '.join(POOLING_MODES)}."
        )
    return modes


def resolve_folder(name_or_path: str | os.PathLike) -> Path:
    """A local sentence-transformers folder, or a Hub repository downloaded with huggingface_hub."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise PositionEncodingError(f"{path} is not a folder: a sentence-transformers model is a folder.")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(name_or_path)))


def load_sentence_encoder(name_or_path: str | os.PathLike, model: Any = None) -> SentenceEncoder:
    """Read a sentence-transformers folder (or Hub id) whose transformer is BERT-family, converted or not.

    `model`: use this transformer instead of the folder's weights (e.g. a converted copy). Refuses, before loading
    any weight, a folder without modules.json or a pooling config, and a transformer that is not BERT-family.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = resolve_folder(name_or_path)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise PositionEncodingError(f"{folder} has no modules.json: it is not a sentence-transformers model.")
    modules = json.loads(modules_file.read_text())
    kinds = {_kind(module["type"]): module for module in modules}
    unknown = [module["type"] for module in modules if _kind(module["type"]) not in KNOWN_MODULES]
    if unknown:
        raise PositionEncodingError(f"Modules {unknown} are not supported: hf_posenc reads {', '.join(KNOWN_MODULES)}.")
    if "Transformer" not in kinds:
        raise PositionEncodingError(f"{folder}/modules.json lists no Transformer module.")
    pooling_file = folder / kinds.get("Pooling", {}).get("path", "1_Pooling") / "config.json"
    if "Pooling" not in kinds or not pooling_file.is_file():
        raise PositionEncodingError(f"{folder} has no pooling config (1_Pooling/config.json): nothing says how to pool")
    pooling = json.loads(pooling_file.read_text())
    pooling_modes(pooling)
    transformer_dir = folder / kinds["Transformer"].get("path", "")
    config = AutoConfig.from_pretrained(transformer_dir, trust_remote_code=True)
    family = str(config.model_type).removeprefix("posenc_")
    if family not in BERT_FAMILY:
        raise PositionEncodingError(
            f"{folder} holds a {config.model_type!r} transformer; hf_posenc extends BERT-family sentence encoders "
            f"({', '.join(BERT_FAMILY)})."
        )
    st_config_file = transformer_dir / "sentence_bert_config.json"
    st_config = json.loads(st_config_file.read_text()) if st_config_file.is_file() else {}
    tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
    if model is None:
        model = AutoModel.from_pretrained(transformer_dir, trust_remote_code=True).eval()
    max_seq_length = st_config.get("max_seq_length") or min(
        tokenizer.model_max_length, getattr(config, "max_position_embeddings", tokenizer.model_max_length)
    )
    extra = {
        name: (folder / name).read_bytes()
        for name in ("config_sentence_transformers.json",)
        if (folder / name).is_file()
    }
    return SentenceEncoder(model, tokenizer, pooling, "Normalize" in kinds, int(max_seq_length), extra)


def _kind(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def save_sentence_encoder(
    encoder: SentenceEncoder, out_dir: str | os.PathLike, max_seq_length: int, overwrite: bool = False, **save_kwargs
) -> Path:
    """Write a converted encoder as a sentence-transformers folder reading `max_seq_length` tokens.

    The transformer goes through `hf_posenc.save_converted` (weights, config with remote code, tokenizer with the
    new `model_max_length`, model card), then the modules, the pooling config as it was and
    sentence_bert_config.json are added. All of it is written to a temporary sibling folder that is moved into
    place at the end, so a failed save leaves nothing half-written.
    """
    from ..hub.save import _move_into_place, _new_folder, save_converted

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose another or overwrite it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    holder = _new_folder(out.parent, f".{out.name}.partial-")
    staging = holder / "model"
    try:
        save_converted(encoder.model, staging, tokenizer=encoder.tokenizer, max_length=max_seq_length, **save_kwargs)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING},
        ]
        if encoder.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": NORMALIZE})
            (staging / "2_Normalize").mkdir()
        (staging / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
        (staging / "1_Pooling").mkdir()
        (staging / "1_Pooling" / "config.json").write_text(json.dumps(encoder.pooling, indent=2) + "\n")
        do_lower_case = bool(getattr(encoder.tokenizer, "do_lower_case", False))
        st_config = {"max_seq_length": int(max_seq_length), "do_lower_case": do_lower_case}
        (staging / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
        for name, content in encoder.extra_files.items():
            (staging / name).write_bytes(content)
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return out
