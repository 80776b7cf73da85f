"""Conversion-aware fine-tuning: the unconverted original guides the converted model while it trains.

- Self-distillation (`distill_weight`, `distill_temperature`, `lm_weight`): KL(original || converted) on the logits
  inside the trained window, mixed with or replacing the LM loss.

The teacher is the model before conversion (`teacher_from`, `teacher_name_or_path`), frozen; it is never saved.
`hf_posenc.training.train` runs these methods through `Recovery`; `ConversionTrainer` is the transformers Trainer
that does.
"""

from .distill import logit_kl
from .objective import Recovery
from .teacher import teacher_from
from .trainer import ConversionTrainer

__all__ = ["ConversionTrainer", "Recovery", "logit_kl", "teacher_from"]
