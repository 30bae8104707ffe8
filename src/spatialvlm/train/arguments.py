"""LLaVA-style argument dataclasses, parsed with transformers' ``HfArgumentParser``.

Three groups, as in LLaVA's ``train.py``: ``ModelArguments`` (what to build and what to train),
``DataArguments`` (where the conversations and videos are, how frames are sampled, how the memory
runs) and transformers' own ``TrainingArguments`` (optimiser, schedule, precision, DeepSpeed/FSDP,
saving). Flag names users already pass to LLaVA / VLM-3R scripts keep their spelling
(``mm_tunable_parts``, ``lora_enable``, ``memory_L_w``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

__all__ = [
    "TUNABLE_PART_NAMES",
    "QWEN2_LORA_TARGETS",
    "MEMORY_MODES",
    "MODEL_FLAG_NAMES",
    "ModelArguments",
    "DataArguments",
    "SpatialTrainingArguments",
    "parse_train_args",
    "requested_task",
    "train_argument_parser",
]

# Every part name ``mm_tunable_parts`` accepts; which modules each covers is the task's part map
# (``spatialvlm.train.tasks``).
TUNABLE_PART_NAMES: tuple[str, ...] = (
    "dual_memory",
    "fusion",
    "mm_mlp_adapter",
    "mm_language_model",
    "mm_vision_tower",
    "coord_embed",
    "budget_head",
)

# Qwen2's linear layers (attention and MLP), the modules VLM-3R puts LoRA on.
QWEN2_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

MEMORY_MODES: tuple[str, ...] = ("per_sample", "stream")

# ModelArguments fields that are model-config flags (same names in VLM2Config).
MODEL_FLAG_NAMES: tuple[str, ...] = (
    "use_dual_memory",
    "memory_L_w",
    "memory_L_e",
    "memory_num_heads",
    "memory_dropout",
    "memory_output",
    "memory_read_order",
    "coordinate_normalization",
    "use_spatial_fusion",
    "use_coordinate_injection",
    "use_viewpoint_alignment",
    "coordinate_gate_type",
    "geometry_dim",
    "view_dim",
    "fusion_num_heads",
    "fusion_dropout",
)


def _split_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(item.strip() for item in value if item.strip())


@dataclass
class ModelArguments:
    """What model to build and which of its parts to train."""

    task: str = field(
        default="vlm2",
        metadata={
            "help": "Training task (spatialvlm.train.tasks): 'vlm2' (VLM² video QA) or 'shirgx' (SHIRG-X "
            "mixed-budget image QA). A task may add its own flags (spatialvlm train --task shirgx -h)."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local directory of a LLaVA-OneVision / LLaVA-Video / VLM² checkpoint (config.json "
            "and safetensors). New VLM² modules missing from it are freshly initialised."
        },
    )
    # VLM² flags. None keeps the value the checkpoint's config has (a plain LLaVA-OneVision
    # checkpoint gets VLM2Config's defaults: memory off, fusion on), so continuing from a VLM²
    # checkpoint never silently drops a module. Booleans take a value: ``--use_dual_memory True``.
    use_dual_memory: bool | None = field(
        default=None, metadata={"help": "Run the dual memory on video frames (VLM2Config default: False)."}
    )
    memory_L_w: int | None = field(default=None, metadata={"help": "Working-memory capacity in frames (8)."})
    memory_L_e: int | None = field(default=None, metadata={"help": "Episodic-memory capacity in entries (32)."})
    memory_num_heads: int | None = field(default=None, metadata={"help": "Heads of the memory attentions (8)."})
    memory_dropout: float | None = field(default=None, metadata={"help": "Dropout of the memory attentions (0.1)."})
    memory_output: str | None = field(
        default=None,
        metadata={"help": "'paper' (Algorithm 1's M_t, default) or 'residual' (H_t + zero-initialised out(M_t))."},
    )
    memory_read_order: str | None = field(
        default=None, metadata={"help": "'read_then_write' (Algorithm 1, default) or 'write_then_read'."}
    )
    coordinate_normalization: str | None = field(
        default=None,
        metadata={"help": "'per_video' (default), 'metric' (metres, first camera's frame) or 'fixed'."},
    )
    tune_dual_memory: bool = field(
        default=False, metadata={"help": "Train the dual memory (same as adding 'dual_memory' to mm_tunable_parts)."}
    )
    use_spatial_fusion: bool | None = field(
        default=None, metadata={"help": "Run the semantic-geometric fusion block (True)."}
    )
    use_coordinate_injection: bool | None = field(
        default=None, metadata={"help": "Add gated 3D coordinate embeddings to the visual tokens (True)."}
    )
    use_viewpoint_alignment: bool | None = field(
        default=None, metadata={"help": "Condition the geometry tokens on the camera (view) token (True)."}
    )
    coordinate_gate_type: str | None = field(
        default=None, metadata={"help": "Gate of the coordinate injection: 'sigmoid' (default) or 'softmax'."}
    )
    geometry_dim: int | None = field(
        default=None, metadata={"help": "Width of the 3D model's geometry tokens (CUT3R: 768)."}
    )
    view_dim: int | None = field(default=None, metadata={"help": "Width of the 3D model's camera token (768)."})
    fusion_num_heads: int | None = field(
        default=None, metadata={"help": "Heads of the fusion cross-attention (18; must divide the vision width)."}
    )
    fusion_dropout: float | None = field(default=None, metadata={"help": "Dropout of the fusion block (0.1)."})
    # What trains.
    mm_tunable_parts: str | None = field(
        default=None,
        metadata={
            "help": "Comma list of parts to train, from: " + ", ".join(TUNABLE_PART_NAMES) + ". Default: "
            "every VLM² module the model has (fusion, dual_memory when on) plus mm_mlp_adapter, and "
            "mm_language_model when lora_enable."
        },
    )
    # LoRA on the language model (peft).
    lora_enable: bool = field(default=False, metadata={"help": "Train the language model through LoRA adapters."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank (VLM-3R: 128)."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA scaling numerator (VLM-3R: 256)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(
        default=",".join(QWEN2_LORA_TARGETS),
        metadata={"help": "Comma list of language-model linear layer names that get adapters (Qwen2 names)."},
    )
    lora_bias: str = field(default="none", metadata={"help": "peft bias mode: 'none', 'all' or 'lora_only'."})

    def __post_init__(self) -> None:
        if self.coordinate_gate_type not in (None, "sigmoid", "softmax"):
            raise ValueError(f"coordinate_gate_type must be 'sigmoid' or 'softmax', got {self.coordinate_gate_type!r}")
        unknown = [part for part in _split_list(self.mm_tunable_parts) if part not in TUNABLE_PART_NAMES]
        if unknown:
            raise ValueError(f"mm_tunable_parts has unknown parts {unknown}; choose from {list(TUNABLE_PART_NAMES)}")
        for name in ("memory_L_w", "memory_L_e", "memory_num_heads", "geometry_dim", "view_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tune_dual_memory and self.use_dual_memory is False:
            raise ValueError("tune_dual_memory contradicts use_dual_memory=False (no dual memory to train)")
        if self.lora_enable and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if self.lora_bias not in ("none", "all", "lora_only"):
            raise ValueError(f"lora_bias must be 'none', 'all' or 'lora_only', got {self.lora_bias!r}")

    def model_flags(self) -> dict[str, Any]:
        """The model-config flags the user set (``None`` fields left out)."""
        return {name: getattr(self, name) for name in MODEL_FLAG_NAMES if getattr(self, name) is not None}

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return _split_list(self.lora_target_modules)

    def requested_parts(self) -> tuple[str, ...] | None:
        """The parts named by ``mm_tunable_parts`` (plus ``dual_memory`` when ``tune_dual_memory``),
        or None when the user named none and the task default applies."""
        parts = list(_split_list(self.mm_tunable_parts))
        if not parts and not self.tune_dual_memory:
            return None
        if self.tune_dual_memory and "dual_memory" not in parts:
            parts.append("dual_memory")
        return tuple(parts)


@dataclass
class DataArguments:
    """Where the training conversations and their media are, and how videos are read."""

    data_path: str | None = field(
        default=None,
        metadata={
            "help": "LLaVA-format JSON (a list of records with 'conversations', 'video' and optionally "
            "'geometry'); also accepts JSON Lines (.jsonl)."
        },
    )
    video_folder: str | None = field(
        default=None, metadata={"help": "Folder relative 'video' paths start from (default: the JSON's folder)."}
    )
    geometry_folder: str | None = field(
        default=None,
        metadata={"help": "Folder relative 'geometry' paths start from (default: the JSON's folder)."},
    )
    num_frames: int = field(
        default=32, metadata={"help": "Frames sampled uniformly from each video (VSI-Bench / VLM-3R: 32)."}
    )
    frame_sampling: str | None = field(
        default=None,
        metadata={
            "help": "Frame sampling policy instead of num_frames (spatialvlm.data.frame_sampling, as eval and the "
            "lmms-eval plugin use): a count ('16'), 'all', or '<fps>fps[:<cap>]' such as '1fps:64'."
        },
    )
    memory_mode: str = field(
        default="per_sample",
        metadata={
            "help": "'per_sample': memory reset for every sample, back-propagation through all frames. "
            "'stream': the sampled frames run as consecutive chunks of stream_chunk_frames with the "
            "memory carried across chunks and detached between them (truncated back-propagation)."
        },
    )
    stream_chunk_frames: int = field(
        default=8, metadata={"help": "Frames per chunk in memory_mode='stream' (must divide num_frames)."}
    )
    model_max_length: int = field(
        default=4096, metadata={"help": "Longest token sequence (text plus visual tokens) a sample may have."}
    )

    def __post_init__(self) -> None:
        if self.memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {list(MEMORY_MODES)}, got {self.memory_mode!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.frame_sampling is not None:
            from ..data.frame_sampling import FrameSampling

            policy = FrameSampling.parse(self.frame_sampling)  # a bad policy fails here, not mid-training
            if self.memory_mode == "stream" and policy.num_frames is None:
                raise ValueError(
                    f"frame_sampling {self.frame_sampling!r} gives a varying frame count; memory_mode='stream' needs "
                    "a fixed count that stream_chunk_frames divides (e.g. frame_sampling='32')"
                )
            if self.memory_mode == "stream" and policy.num_frames % max(self.stream_chunk_frames, 1):
                raise ValueError(
                    f"stream_chunk_frames ({self.stream_chunk_frames}) must divide the frame_sampling count "
                    f"({policy.num_frames}) in memory_mode='stream'"
                )
        if self.memory_mode == "stream" and (
            self.stream_chunk_frames < 1 or self.num_frames % self.stream_chunk_frames
        ):
            raise ValueError(
                f"stream_chunk_frames ({self.stream_chunk_frames}) must be >= 1 and divide num_frames "
                f"({self.num_frames}) in memory_mode='stream'"
            )


@dataclass
class SpatialTrainingArguments(TrainingArguments):
    """transformers' ``TrainingArguments`` plus the output-folder guard of ``run_training``."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an earlier run's checkpoints in output_dir. Without it a run that does not "
            "resume (--resume_from_checkpoint True or a path) refuses to write over them."
        },
    )


def requested_task(argv: Sequence[str] | None) -> str:
    """The ``--task`` an argument list (or its single ``.json`` file) names; ``"vlm2"`` when none."""
    import json
    import sys
    from pathlib import Path

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json") and Path(argv[0]).is_file():
        return str(json.loads(Path(argv[0]).read_text()).get("task", "vlm2"))
    for index, token in enumerate(argv):
        if token == "--task" and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith("--task="):
            return token.split("=", 1)[1]
    return "vlm2"


def train_argument_parser(task: str = "vlm2") -> HfArgumentParser:
    """``HfArgumentParser`` over the task's model and data argument classes and ``SpatialTrainingArguments``."""
    from .tasks import get_task

    task_class = type(get_task(task))
    return HfArgumentParser(
        (task_class.model_arguments_class, task_class.data_arguments_class, SpatialTrainingArguments)
    )


def parse_train_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, SpatialTrainingArguments]:
    """Parse ``--flag value`` arguments (or a single ``.json`` file path) into the three groups.

    ``--task`` picks the task first; its ``model_arguments_class`` / ``data_arguments_class``
    (subclasses of ``ModelArguments`` / ``DataArguments``) add the task's own flags.
    """
    argv = list(argv) if argv is not None else None
    parser = train_argument_parser(requested_task(argv))
    if argv is not None and len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(argv[0])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required (a local checkpoint directory)")
    if data_args.data_path is None:
        raise ValueError("--data_path is required (a LLaVA-format conversation JSON)")
    return model_args, data_args, training_args
