"""hf_posenc: swap the learned absolute positions of GPT-2/BERT-style transformers for RoPE, T5 bias, ALiBi and more."""

from .convert import convert, declare_max_length, family_of
from .encodings import available_encodings, encodings_table
from .families import FAMILIES, families_table, register_with_auto_classes
from .modeling.posenc_base import PositionEncoding, PositionEncodingError, register_encoding

register_with_auto_classes()

__version__ = "0.1.0"
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
    "register_encoding",
]
