"""``run_training``: the model-agnostic training driver every task and the ``train`` command use.

Steps: build the config from the base directory plus the run's flags → load the base weights
(reporting which are new) → freeze all but the tunable parts, LoRA adapters (the task's) → build the
task's data → ``SpatialTrainer.train()`` → save the final checkpoint in ``output_dir``.

Before anything loads, ``run_training`` checks ``output_dir``: a run that does not resume refuses to
write over an earlier run's checkpoints unless ``overwrite_output_dir`` (then they are removed, so
``--resume_from_checkpoint True`` can never pick a stale one), and ``resume_from_checkpoint`` may be
a path or ``True`` / ``"True"`` (the latest ``checkpoint-N`` of ``output_dir``, transformers'
convention).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainingArguments

from .arguments import DataArguments, ModelArguments
from .checkpoint import (
    ADAPTER_WEIGHTS_NAME,
    MANIFEST_NAME,
    TRAINED_WEIGHTS_NAME,
    CheckpointManifest,
    parameters_to_save,
    verify_checkpoint_files,
)
from .tasks import TrainingTask, get_task
from .trainer import SpatialTrainer
from .tunable import TrainableSummary, prepare_tunable_model, trainable_parameter_names

__all__ = ["TrainingRun", "prepare_training", "run_training", "resolve_resume_checkpoint", "check_output_dir"]

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
        # Absolute, so the checkpoint loads from any working directory (load_trained_model, ask --model).
        base_model=os.path.abspath(model_args.model_name_or_path),
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
    """Train and save the final checkpoint to ``training_args.output_dir`` (task: ``model_args.task``).

    ``output_dir`` is checked first (``check_output_dir``); ``resume_from_checkpoint`` may be a
    checkpoint path or ``True`` / ``"True"`` for the latest ``checkpoint-N`` of ``output_dir``.
    """
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    check_output_dir(
        training_args.output_dir,
        resuming=resume is not None,
        overwrite=bool(getattr(training_args, "overwrite_output_dir", False)),
        is_main_process=training_args.should_save,
    )
    run = prepare_training(model_args, data_args, training_args, task)
    run.trainer.train(resume_from_checkpoint=resume)
    run.trainer.save_model()
    run.trainer.save_state()
    return run


_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
# What a finished run writes at the top of output_dir besides the tokenizer files.
_RUN_FILES = (MANIFEST_NAME, TRAINED_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME, "adapter_config.json", "trainer_state.json")


def _checkpoint_dirs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and _CHECKPOINT_DIR.match(path.name)]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def resolve_resume_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """What to resume from: None (a fresh run), or a checkpoint directory.

    ``True`` / ``"True"`` (any case) is the latest ``checkpoint-N`` in ``output_dir`` (an error
    when it has none); ``False`` / ``"False"`` / ``""`` is a fresh run; anything else is a path,
    which must be a training checkpoint. The chosen checkpoint's weight files are checked here, so a
    corrupt one fails before the model loads.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
        found = _checkpoint_dirs(Path(output_dir))
        if not found:
            raise ValueError(
                f"--resume_from_checkpoint True resumes the latest checkpoint-N in {output_dir}, but it has none; "
                "drop the flag to start afresh or give a checkpoint path"
            )
        path = found[-1]
    else:
        path = Path(value)
    if not (path / MANIFEST_NAME).is_file():
        what = "does not exist" if not path.exists() else f"is not a training checkpoint ({MANIFEST_NAME} is missing)"
        raise ValueError(f"--resume_from_checkpoint {path} {what}; give a checkpoint-N folder or True (the latest)")
    verify_checkpoint_files(path)
    return str(path)


def check_output_dir(
    output_dir: str | os.PathLike, resuming: bool, overwrite: bool, is_main_process: bool = True
) -> None:
    """Refuse to write a fresh run over an earlier run's checkpoints in ``output_dir``.

    A resumed run continues its own checkpoints. A fresh run into a folder holding ``checkpoint-N``
    folders or a finished run's ``spatialvlm_training.json`` is an error unless ``overwrite``; then
    the old ``checkpoint-N`` folders and run files are removed (by the main process), so a later
    ``--resume_from_checkpoint True`` cannot pick a checkpoint of the old run.
    """
    output_dir = Path(output_dir)
    if resuming:
        return
    old = _checkpoint_dirs(output_dir)
    finished = (output_dir / MANIFEST_NAME).is_file()
    if not old and not finished:
        return
    found = ", ".join(path.name for path in old[:3]) + (f", … ({len(old)} in all)" if len(old) > 3 else "")
    found = found or MANIFEST_NAME
    if not overwrite:
        raise ValueError(
            f"output_dir {output_dir} already holds an earlier run ({found}); pass --resume_from_checkpoint True "
            "to continue it, --overwrite_output_dir True to replace it, or choose another --output_dir"
        )
    if not is_main_process:
        return
    logger.warning("--overwrite_output_dir: removing the earlier run in %s (%s)", output_dir, found)
    for path in old:
        shutil.rmtree(path)
    for name in _RUN_FILES:
        (output_dir / name).unlink(missing_ok=True)
