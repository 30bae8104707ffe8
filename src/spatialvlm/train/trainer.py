"""``SpatialTrainer``: transformers' ``Trainer`` that saves and resumes only what trains.

Everything else (data parallelism, gradient accumulation, mixed precision, DeepSpeed ZeRO, FSDP,
logging, schedules) is the stock ``Trainer``, so ``torchrun`` / ``accelerate launch`` / DeepSpeed
configs scale it as they scale any Hugging Face model. Model-agnostic: tasks subclass it only to
change how one step runs (e.g. VLM²'s streaming memory).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence

import torch
from transformers import Trainer
from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN, SCHEDULER_NAME, TRAINING_ARGS_NAME

from .checkpoint import CheckpointManifest, load_trained_parameters, save_trained_checkpoint
from .tunable import canonical_parameter_name

__all__ = ["SpatialTrainer", "learning_rate_group"]

logger = logging.getLogger(__name__)


class SpatialTrainer(Trainer):
    """A ``Trainer`` whose checkpoints are ``spatialvlm.train.checkpoint`` directories.

    Args:
        manifest: how to rebuild the model and which parameter names each checkpoint holds.
        learning_rate_groups: optimiser groups with their own learning rate, group name →
            (parameter-name prefixes on the unwrapped model, learning rate); LoRA adapters belong to
            the module they adapt. Trainable parameters in no group use ``args.learning_rate``. The
            schedule scales every group alike (warm-up, decay).
        *args, **kwargs: as ``transformers.Trainer``. ``remove_unused_columns`` is turned off (the
            collators build exactly the model's inputs, and multimodal inputs such as
            ``pixel_values_videos`` would otherwise be dropped by a signature check).
    """

    def __init__(
        self,
        *args,
        manifest: CheckpointManifest,
        learning_rate_groups: Mapping[str, tuple[Sequence[str], float]] | None = None,
        **kwargs,
    ) -> None:
        self.manifest = manifest
        self.learning_rate_groups = dict(learning_rate_groups or {})
        super().__init__(*args, **kwargs)
        self.args.remove_unused_columns = False
        if self.args.label_names is None:
            self.args.label_names = ["labels"]

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimiser, with a (decay, no-decay) pair of parameter groups per learning-rate
        group (``"name"`` in each group says which; ``"default"`` holds the rest)."""
        if self.optimizer is not None or not self.learning_rate_groups:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                key = (learning_rate_group(name, self.learning_rate_groups), name in decay)
                groups.setdefault(key, []).append(parameter)
        param_groups = [
            {
                "params": params,
                "name": group,
                "lr": self.learning_rate_groups[group][1] if group != "default" else self.args.learning_rate,
                "weight_decay": self.args.weight_decay if decays else 0.0,
            }
            for (group, decays), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        standard = isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)
        if not standard or {"params", "model", "optimizer_dict"} & optimizer_kwargs.keys():
            raise ValueError(f"learning_rate_groups cannot be combined with optimizer {self.args.optim!r}")
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        save_trained_checkpoint(self.model, output_dir, copy.deepcopy(self.manifest), state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        load_trained_parameters(model if model is not None else self.model, resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        # The stock Trainer silently starts a fresh optimiser when a checkpoint lacks these files.
        if checkpoint is not None and not self.is_deepspeed_enabled:
            missing = [name for name in (OPTIMIZER_NAME, SCHEDULER_NAME) if not _has_state(checkpoint, name)]
            if missing:
                logger.warning(
                    "checkpoint %s has no %s: training resumes with a fresh optimizer and learning-rate "
                    "schedule (Adam moments restart at zero)",
                    checkpoint,
                    " or ".join(missing),
                )
        super()._load_optimizer_and_scheduler(checkpoint)

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            super()._load_best_model()
            return
        load_trained_parameters(self.model, self.state.best_model_checkpoint)


def _has_state(checkpoint: str, name: str) -> bool:
    """Whether ``checkpoint`` holds ``name`` as the Trainer looks for it (``optimizer.pt``, its
    ``.bin`` form, or an FSDP ``optimizer*`` folder)."""
    if os.path.isfile(os.path.join(checkpoint, name)):
        return True
    if name != OPTIMIZER_NAME:
        return False
    if os.path.isfile(os.path.join(checkpoint, OPTIMIZER_NAME_BIN)):
        return True
    stem = OPTIMIZER_NAME_BIN.split(".")[0]
    return os.path.isdir(checkpoint) and any(
        stem in entry and os.path.isdir(os.path.join(checkpoint, entry)) for entry in os.listdir(checkpoint)
    )


def learning_rate_group(name: str, learning_rate_groups: Mapping[str, tuple[Sequence[str], float]]) -> str:
    """The learning-rate group of the parameter ``name`` (as ``named_parameters`` gives it, peft
    prefixes allowed), or ``"default"``. A parameter under two groups' prefixes is an error."""
    canonical = canonical_parameter_name(name)
    matches = [
        group
        for group, (prefixes, _) in learning_rate_groups.items()
        if any(canonical == prefix or canonical.startswith(prefix + ".") for prefix in prefixes)
    ]
    if len(matches) > 1:
        raise ValueError(f"parameter {canonical} is in several learning-rate groups: {matches}")
    return matches[0] if matches else "default"
