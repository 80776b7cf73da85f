"""What a converted checkpoint folder is, and whether plain transformers can load it (remote code)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from .card import auto_class_for


def checkpoint_info(folder: str | Path) -> dict[str, Any]:
    """Base model, encoding, options, trained context length and remote-code status of a saved checkpoint."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a saved checkpoint.")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}).") from None
    if "position_encoding" not in config:
        raise ValueError(
            f"{folder} is a {config.get('model_type', 'unknown')!r} checkpoint, not one converted by hf_posenc."
        )
    card = _card_data(folder)
    problems = remote_code_problems(folder, config)
    return {
        "path": str(folder.resolve()),
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures") or [],
        "base_model": card.get("base_model"),
        "license": card.get("license"),
        "position_encoding": config["position_encoding"],
        "position_encoding_options": config.get("position_encoding_options") or {},
        "trained_context_length": config.get("trained_context_length"),
        "declared_max_length": config.get("max_position_embeddings", config.get("n_positions")),
        "tokenizer_max_length": _tokenizer_max_length(folder),
        "loads_without_hf_posenc": not problems,
        "remote_code_problems": problems,
    }


def remote_code_problems(folder: str | Path, config: dict[str, Any] | None = None) -> list[str]:
    """Static check that `from_pretrained(folder, trust_remote_code=True)` needs nothing but transformers:
    an `auto_map`, every module it names present, and only relative imports of files that are present."""
    folder = Path(folder)
    config = config if config is not None else json.loads((folder / "config.json").read_text())
    auto_map = config.get("auto_map") or {}
    if not auto_map:
        return ["config.json has no auto_map"]
    problems = []
    modules = {reference.split(".")[0] for reference in auto_map.values() if isinstance(reference, str)}
    pending, seen = sorted(modules), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            problems.append(f"missing {path.name}")
            continue
        for level, name in _imports(path):
            if level == 0 and name.split(".")[0] == "hf_posenc":
                problems.append(f"{path.name} imports hf_posenc")
            elif level == 1 and name:
                pending.append(name.split(".")[0])
            elif level > 1 or (level == 1 and not name):
                problems.append(f"{path.name} has an import transformers cannot resolve as remote code")
    return problems


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def _tokenizer_max_length(folder: Path) -> int | None:
    """The saved tokenizer's `model_max_length` (None without tokenizer_config.json)."""
    try:
        return json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length")
    except (OSError, ValueError, AttributeError):
        return None


def _card_data(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        return ModelCard.load(readme).data.to_dict()
    except Exception:  # an unreadable card only means the base model is unknown
        return {}


VERIFY_SCRIPT = """
import sys
sys.modules["hf_posenc"] = None  # make sure nothing comes from the plugin
import torch, transformers
folder, auto_name = sys.argv[1], sys.argv[2]
model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True)
ids = torch.arange(4).unsqueeze(0) % model.config.vocab_size
with torch.no_grad():
    model(input_ids=ids)
print(type(model).__name__, "from", type(model).__module__.split(".")[0])
"""


def verify_loads_without_hf_posenc(folder: str | Path, timeout: float = 600) -> tuple[bool, str]:
    """Load the checkpoint in a fresh Python where `import hf_posenc` fails, and run one forward pass.
    Returns (ok, the loaded class or the last line of the error)."""
    folder = Path(folder).resolve()
    config = json.loads((folder / "config.json").read_text())
    auto_name = auto_class_for(config.get("architectures"))
    command = [sys.executable, "-c", textwrap.dedent(VERIFY_SCRIPT), str(folder), auto_name]
    try:
        with tempfile.TemporaryDirectory() as empty:  # an empty working directory: nothing importable by accident
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=empty)
    except subprocess.TimeoutExpired:
        return False, f"loading took longer than {timeout:.0f} s"
    if result.returncode == 0:
        return True, result.stdout.strip().splitlines()[-1]
    lines = result.stderr.strip().splitlines()
    return False, lines[-1] if lines else f"exit code {result.returncode}"
