"""Training: LLaVA-style arguments, a model-agnostic ``Trainer`` core, and task-specific pieces.

Core (any model): ``ModelArguments`` / ``DataArguments`` (+ transformers ``TrainingArguments``),
``prepare_tunable_model`` (named parts, LoRA on the language model through peft),
``SpatialTrainer`` (transformers ``Trainer`` whose checkpoints hold only what trained),
``load_trained_model``, ``run_training``. Task pieces: ``spatialvlm.train.tasks`` (``vlm2``: VLM² video
QA; ``shirgx``: SHIRG-X mixed-budget image QA), picked by ``--task`` / ``ModelArguments.task``.
"""

from .arguments import (
    MEMORY_MODES,
    QWEN2_LORA_TARGETS,
    TUNABLE_PART_NAMES,
    DataArguments,
    ModelArguments,
    SpatialTrainingArguments,
    parse_train_args,
)
from .checkpoint import CheckpointManifest, load_trained_model, load_trained_parameters, save_trained_checkpoint
from .conversation import IGNORE_INDEX, load_conversation_records, pad_sequences, to_chat_messages, tokenize_conversation
from .run import TrainingRun, prepare_training, run_training
from .tasks import TrainingTask, get_task, register_task
from .trainer import SpatialTrainer
from .tunable import (
    TrainableSummary,
    canonical_parameter_name,
    language_model_lora_config,
    prepare_tunable_model,
    trainable_parameter_names,
)

__all__ = [
    "MEMORY_MODES",
    "QWEN2_LORA_TARGETS",
    "TUNABLE_PART_NAMES",
    "DataArguments",
    "ModelArguments",
    "SpatialTrainingArguments",
    "parse_train_args",
    "CheckpointManifest",
    "load_trained_model",
    "load_trained_parameters",
    "save_trained_checkpoint",
    "IGNORE_INDEX",
    "load_conversation_records",
    "pad_sequences",
    "to_chat_messages",
    "tokenize_conversation",
    "TrainingRun",
    "prepare_training",
    "run_training",
    "TrainingTask",
    "get_task",
    "register_task",
    "SpatialTrainer",
    "TrainableSummary",
    "canonical_parameter_name",
    "language_model_lora_config",
    "prepare_tunable_model",
    "trainable_parameter_names",
]
