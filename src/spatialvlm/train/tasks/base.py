"""``TrainingTask``: the few model-family-specific pieces the model-agnostic trainer core needs.

A task says how to build and load its model, which parameter names each tunable part covers,
where the language model sits (for LoRA), and how to turn its data into batches. VLM² video
question answering is one task; SHIRG-X mixed-budget image training is another built the same way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import PretrainedConfig

from ..arguments import DataArguments, ModelArguments
from ..trainer import SpatialTrainer
from ..tunable import PartMap, language_model_lora_config

__all__ = ["TrainingTask"]


class TrainingTask(ABC):
    """Base class of training tasks; subclasses fill in the class attributes and methods.

    Class attributes:
        name: registry key, recorded in checkpoints so ``load_trained_model`` finds the task.
        part_map: tunable part name → parameter-name prefixes on the unwrapped model.
        language_model_part: the part holding the language model (LoRA replaces full tuning).
        language_model_prefix: module path of the language model (LoRA targets live under it).
        trainer_class: ``SpatialTrainer`` or a subclass that changes how a step runs.
        model_arguments_class, data_arguments_class: the argument dataclasses ``spatialvlm train
            --task <name>`` parses (subclasses of ``ModelArguments`` / ``DataArguments`` adding the
            task's own flags).
    """

    name: ClassVar[str]
    part_map: ClassVar[PartMap]
    language_model_part: ClassVar[str] = "mm_language_model"
    language_model_prefix: ClassVar[str] = "model.language_model"
    trainer_class: ClassVar[type[SpatialTrainer]] = SpatialTrainer
    model_arguments_class: ClassVar[type[ModelArguments]] = ModelArguments
    data_arguments_class: ClassVar[type[DataArguments]] = DataArguments

    @abstractmethod
    def build_config(self, model_args: ModelArguments) -> PretrainedConfig:
        """The config to train with: the base directory's config with the run's flags applied."""
        ...

    @abstractmethod
    def load_config(self, directory: str | os.PathLike) -> PretrainedConfig:
        """The config a checkpoint directory saved."""
        ...

    @abstractmethod
    def load_model(
        self, model_path: str, config: PretrainedConfig, torch_dtype: torch.dtype | None = None
    ) -> tuple[nn.Module, list[str]]:
        """Load ``model_path``'s weights into a model built from ``config``.

        Returns:
            ``(model, new_parameter_names)``: the names the base checkpoint lacked (freshly
            initialised; checkpoints store them).
        """
        ...

    @abstractmethod
    def default_parts(self, model: nn.Module, model_args: ModelArguments) -> tuple[str, ...]:
        """Parts to train when the user names none."""
        ...

    @abstractmethod
    def build_processor(self, model_args: ModelArguments, config: PretrainedConfig) -> Any:
        """The tokenizer / processor, saved with every checkpoint."""
        ...

    @abstractmethod
    def build_train_data(
        self, processor: Any, data_args: DataArguments, config: PretrainedConfig
    ) -> tuple[Dataset, Any]:
        """``(train_dataset, data_collator)``."""
        ...

    def trainer_kwargs(self, data_args: DataArguments) -> dict[str, Any]:
        """Extra keyword arguments for ``trainer_class``."""
        return {}

    def lora_config(self, model_args: ModelArguments):
        """The peft ``LoraConfig`` of the run, or None. Default: LoRA on the language model's
        ``lora_target_modules`` when ``lora_enable``."""
        if not model_args.lora_enable:
            return None
        return language_model_lora_config(
            self.language_model_prefix,
            model_args.lora_targets,
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            bias=model_args.lora_bias,
        )

    def lora_parts(self, model_args: ModelArguments) -> tuple[str, ...]:
        """Parts that, with ``lora_config``, train through their adapters only (base weights frozen)."""
        return (self.language_model_part,)

    def learning_rate_groups(self, model_args: ModelArguments) -> dict[str, tuple[tuple[str, ...], float]]:
        """Optimiser groups with their own learning rate: group name → (parameter-name prefixes on
        the unwrapped model, learning rate). Parameters in no group use ``--learning_rate``."""
        return {}
