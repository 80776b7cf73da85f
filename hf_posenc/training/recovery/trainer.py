"""`ConversionTrainer`: transformers' Trainer with the conversion-aware methods of `hf_posenc.training.recovery`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from transformers import Trainer

from ..config import TrainConfig
from .objective import Recovery
from .settings import FIELDS


def recovery_config(recovery: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
    """A checked TrainConfig from the recovery settings given (a dict of its recovery fields, or a TrainConfig)."""
    if isinstance(recovery, TrainConfig):
        return recovery.check()
    unknown = sorted(set(recovery or {}) - set(FIELDS))
    if unknown:
        raise TypeError(f"Unknown recovery setting(s) {unknown}; the settings are {', '.join(FIELDS)}.")
    return TrainConfig(**dict(recovery or {})).check()


class ConversionTrainer(Trainer):
    """A transformers `Trainer` whose training loss is the conversion-aware one of `hf_posenc.training.train`.

    `recovery` holds the settings, TrainConfig's recovery fields (`{"distill_weight": 1.0, "lm_weight": 0.5}`);
    `teacher` is the unconverted original (default: rebuilt from `model`, which must then be converted in this
    process and not changed since; a PEFT-wrapped model needs `teacher=`, built before wrapping). The teacher is
    built before the Trainer moves the model. Evaluation uses the model's own loss. The loss is a per-batch mean,
    divided by the gradient accumulation steps as transformers does for such losses.

        trainer = ConversionTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                                    recovery={"distill_weight": 1.0})
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it by the gradient accumulation steps

    def __init__(
        self,
        model: nn.Module | None = None,
        *args: Any,
        recovery: Mapping[str, Any] | TrainConfig | None = None,
        teacher: nn.Module | None = None,
        **kwargs: Any,
    ):
        if model is None:
            raise TypeError("ConversionTrainer needs the model (model=): its teacher is built from it.")
        self.recovery = Recovery.setup(recovery_config(recovery), model, teacher)
        super().__init__(model, *args, **kwargs)
        self._attached = False

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self._attached:
            self.recovery.attach(model, self.state.max_steps, self.state.global_step, self.accelerator.autocast)
            self._attached = True
        self.recovery.at_step(self.state.global_step)
        return self.recovery.training_loss(model, inputs, return_outputs)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Transformers' choice, less the position encodings' parameters: as in `hf_posenc.training.train`, a table
        or bias gets no weight decay (frozen anchor rows would otherwise shrink with no gradient)."""
        return [name for name in super().get_decay_parameter_names(model) if "position_encoding" not in name]

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._attached = False  # attached at the first step, when the run's length is known
        try:
            return super().train(*args, **kwargs)
        finally:
            self.recovery.close()
            self._attached = False
