"""The registration list: importing this module registers every encoding shipped with hf_posenc."""

from .posenc_alibi import ALiBi
from .posenc_base import get_encoding_class, registered_encodings
from .posenc_learned import LearnedEncoding
from .posenc_nope import NoPositionEncoding
from .posenc_rope import RotaryEncoding
from .posenc_sinusoidal import SinusoidalEncoding
from .posenc_t5_bias import T5RelativeBias

__all__ = [
    "ALiBi",
    "LearnedEncoding",
    "NoPositionEncoding",
    "RotaryEncoding",
    "SinusoidalEncoding",
    "T5RelativeBias",
    "get_encoding_class",
    "registered_encodings",
]
