"""Saving, describing and publishing converted checkpoints: safe saves, model cards, `push_to_hub`."""

from .card import build_model_card, pipeline_tag_for, read_training_run, training_record
from .checkpoint import checkpoint_info, remote_code_problems, verify_loads_without_hf_posenc
from .push import UploadError, push_folder, push_to_hub
from .save import save_converted

__all__ = [
    "UploadError",
    "build_model_card",
    "checkpoint_info",
    "pipeline_tag_for",
    "push_folder",
    "push_to_hub",
    "read_training_run",
    "remote_code_problems",
    "save_converted",
    "training_record",
    "verify_loads_without_hf_posenc",
]
