"""``run_training``: the model-agnostic training driver every task and the ``train`` command use.

Steps: build the config from the base directory plus the run's flags → load the base weights
(reporting which are new) → freeze all but the tunable parts, LoRA adapters (the task's) → build the
task's data → ``SpatialTrainer.train()`` → save the final checkpoint in ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from transformers import TrainingArguments

from .arguments import DataArguments, ModelArguments
from .checkpoint import CheckpointManifest, parameters_to_save
from .tasks import TrainingTask, get_task
from .trainer import SpatialTrainer
from .tunable import TrainableSummary, prepare_tunable_model, trainable_parameter_names

__all__ = ["TrainingRun", "prepare_training", "run_training"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """Everything ``prepare_training`` built, ready to ``trainer.train()``.

    Attributes:
        trainer: the configured ``SpatialTrainer`` (or the task's subclass).
        summary: what trains.
        new_parameters: weights the base checkpoint lacked (freshly initialised).
    """

    trainer: SpatialTrainer
    summary: TrainableSummary
    new_parameters: list[str]


def prepare_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    task: str | TrainingTask | None = None,
) -> TrainingRun:
    """Build model, data and trainer for one run (nothing trains yet).

    ``task`` defaults to ``model_args.task``.
    """
    task = task if task is not None else model_args.task
    task = get_task(task) if isinstance(task, str) else task
    if model_args.model_name_or_path is None:
        raise ValueError("model_args.model_name_or_path is required")
    config = task.build_config(model_args)
    model, new_parameters = task.load_model(model_args.model_name_or_path, config)
    parts = model_args.requested_parts() or task.default_parts(model, model_args)
    lora_config = task.lora_config(model_args)
    model, summary = prepare_tunable_model(model, parts, task.part_map, task.lora_parts(model_args), lora_config)
    trainable = trainable_parameter_names(model)
    frozen_new = sorted(set(new_parameters) - set(trainable))
    if frozen_new:
        logger.warning(
            "%d freshly initialised weights stay frozen (e.g. %s); checkpoints keep their random values",
            len(frozen_new),
            frozen_new[:3],
        )
    if training_args.activation_checkpointing:
        # With a frozen embedding table the checkpointed blocks would see inputs without grad.
        model.enable_input_require_grads()
    manifest = CheckpointManifest(
        task=task.name,
        base_model=str(model_args.model_name_or_path),
        model_arguments=dataclasses.asdict(model_args),
        tunable_parts=list(summary.parts),
        lora=lora_config is not None,
        saved_parameters=parameters_to_save(model, trainable, new_parameters),
    )
    processor = task.build_processor(model_args, config)
    train_dataset, collator = task.build_train_data(processor, data_args, config)
    trainer = task.trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
        manifest=manifest,
        learning_rate_groups=task.learning_rate_groups(model_args),
        **task.trainer_kwargs(data_args),
    )
    if training_args.should_log:
        logger.info("%s", summary)
    return TrainingRun(trainer=trainer, summary=summary, new_parameters=new_parameters)


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    task: str | TrainingTask | None = None,
) -> TrainingRun:
    """Train and save the final checkpoint to ``training_args.output_dir`` (task: ``model_args.task``)."""
    run = prepare_training(model_args, data_args, training_args, task)
    run.trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    run.trainer.save_model()
    run.trainer.save_state()
    return run
