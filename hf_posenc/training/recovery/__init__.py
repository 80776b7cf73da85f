"""Conversion-aware fine-tuning: the unconverted original guides the converted model while it trains.

- Self-distillation (`distill_weight`, `distill_temperature`, `lm_weight`): KL(original || converted) on the logits
  inside the trained window, mixed with or replacing the LM loss.
- Attention transfer (`attention_transfer_weight`, `attention_transfer_heads`): KL between their attention
  distributions inside the window, per layer and head (eager attention while it is on).
- A gradual swap (`gradual_swap_steps`, `gradual_swap_schedule`): the old learned table stays in the input, scaled
  from 1 to 0 over the first steps, while the new encoding is already active.
- Frozen anchors (`freeze_trained_positions`): a `learned` table's pretrained rows stay as they were while the new
  rows train (E5-Base-4k).

After a swap, the fine-tuning recipes turn on `settings.DEFAULT_METHOD` (attention transfer) when no method is set,
unless `recovery` is off (`with_default_recovery`).

The teacher is the model before conversion (`teacher_from`, `teacher_name_or_path`), frozen; it is never saved.
`hf_posenc.training.train` runs these methods through `Recovery`; `ConversionTrainer` is the transformers Trainer
that does.
"""

from .attention import attention_kl
from .default import with_default_recovery
from .distill import logit_kl
from .objective import Recovery
from .swap import GradualSwap, swap_scale
from .teacher import teacher_from
from .trainer import ConversionTrainer

__all__ = [
    "ConversionTrainer",
    "GradualSwap",
    "Recovery",
    "attention_kl",
    "logit_kl",
    "swap_scale",
    "teacher_from",
    "with_default_recovery",
]
