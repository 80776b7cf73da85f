"""Training helpers shared by the recipes: settings, data (load, tokenise, pack), model preparation, the loop."""

from .config import TrainConfig, build_parser, parse_config, silence_progress_bars
from .data import CausalCollator, DenoisingCollator, MaskedCollator, TextData, load_documents, tokenize_and_pack
from .errors import RecipeError, run_cli
from .loop import latest_checkpoint, train
from .model import check_block_size, convert_if_asked, load_model, load_tokenizer, select_trainable
from .recovery import ConversionTrainer, teacher_from

__all__ = [
    "CausalCollator",
    "ConversionTrainer",
    "DenoisingCollator",
    "MaskedCollator",
    "RecipeError",
    "TextData",
    "TrainConfig",
    "build_parser",
    "check_block_size",
    "convert_if_asked",
    "latest_checkpoint",
    "load_documents",
    "load_model",
    "load_tokenizer",
    "parse_config",
    "run_cli",
    "select_trainable",
    "silence_progress_bars",
    "teacher_from",
    "tokenize_and_pack",
    "train",
]
