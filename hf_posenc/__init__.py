"""hf_posenc: swap the learned absolute positions of GPT-2/BERT-style transformers for RoPE, T5 bias, ALiBi and more."""

from .convert import convert, declare_max_length, family_of, set_rope_scaling
from .encodings import available_encodings, encodings_table
from .families import FAMILIES, families_table, register_with_auto_classes
from .modeling.posenc_base import PositionEncoding, PositionEncodingError, register_encoding
from .modeling.posenc_family import position_encodings

register_with_auto_classes()

__version__ = "0.1.0"

# Subpackages with heavier or optional dependencies load on first use: `import hf_posenc; hf_posenc.hub.push_to_hub`.
_LAZY_SUBMODULES = ("data", "embeddings", "evaluation", "hub", "training")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_SUBMODULES})


__all__ = [
    "FAMILIES",
    "PositionEncoding",
    "PositionEncodingError",
    "available_encodings",
    "convert",
    "declare_max_length",
    "encodings_table",
    "families_table",
    "family_of",
    "position_encodings",
    "register_encoding",
    "set_rope_scaling",
]
