"""``SpatialTrainer``: transformers' ``Trainer`` that saves and resumes only what trains.

Everything else (data parallelism, gradient accumulation, mixed precision, DeepSpeed ZeRO, FSDP,
logging, schedules) is the stock ``Trainer``, so ``torchrun`` / ``accelerate launch`` / DeepSpeed
configs scale it as they scale any Hugging Face model. Model-agnostic: tasks subclass it only to
change how one step runs (e.g. VLM²'s streaming memory).
"""

from __future__ import annotations

import copy
import os

import torch
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from .checkpoint import CheckpointManifest, load_trained_parameters, save_trained_checkpoint

__all__ = ["SpatialTrainer"]


class SpatialTrainer(Trainer):
    """A ``Trainer`` whose checkpoints are ``spatialvlm.train.checkpoint`` directories.

    Args:
        manifest: how to rebuild the model and which parameter names each checkpoint holds.
        *args, **kwargs: as ``transformers.Trainer``. ``remove_unused_columns`` is turned off (the
            collators build exactly the model's inputs, and multimodal inputs such as
            ``pixel_values_videos`` would otherwise be dropped by a signature check).
    """

    def __init__(self, *args, manifest: CheckpointManifest, **kwargs) -> None:
        self.manifest = manifest
        super().__init__(*args, **kwargs)
        self.args.remove_unused_columns = False
        if self.args.label_names is None:
            self.args.label_names = ["labels"]

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

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            super()._load_best_model()
            return
        load_trained_parameters(self.model, self.state.best_model_checkpoint)
