"""VLM² video question answering: the task-specific pieces of training.

- ``VLM2_PART_MAP``: tunable part → parameter-name prefixes of ``VLM2ForConditionalGeneration``.
- ``VideoConversationDataset`` / ``VideoConversationCollator``: LLaVA-format records with a video
  (and a per-frame geometry folder) → padded batches of the model's inputs.
- ``VLM2Trainer``: ``SpatialTrainer`` with the two memory modes:

  * ``per_sample`` (default): every sample's memory starts empty and the loss back-propagates
    through all its frames (the seed's option A);
  * ``stream`` (option B): the sampled frames run as consecutive chunks; the earlier chunks only
    fill the memory (no graph is kept), the memory is detached and carried into the last chunk,
    which the prompt's video tokens show and the loss trains: truncated back-propagation through
    time with a one-chunk window. Activation memory stays that of one chunk however long the video.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...data.video import read_video
from ...geometry import check_metric_scale, load_geometry_source, read_frames
from ..arguments import DataArguments, ModelArguments
from ...models.processing import llava_video_time_instruction
from ..conversation import (
    IGNORE_INDEX,
    add_video_prompt,
    load_conversation_records,
    pad_sequences,
    to_chat_messages,
    tokenize_conversation,
)
from ..trainer import SpatialTrainer
from ..tunable import PartMap
from . import register_task
from .base import TrainingTask

__all__ = [
    "VLM2_PART_MAP",
    "FRAME_INPUT_NAMES",
    "VideoConversationDataset",
    "VideoConversationCollator",
    "VLM2Trainer",
    "VLM2Task",
]

VLM2_PART_MAP: PartMap = {
    "mm_vision_tower": ("model.vision_tower",),
    # The newline token is a learnt visual embedding that enters with the projected tokens.
    "mm_mlp_adapter": ("model.multi_modal_projector", "model.image_newline"),
    "mm_language_model": ("model.language_model", "lm_head"),
    "fusion": ("model.spatial_fusion",),
    "dual_memory": ("model.dual_memory",),
}

# Batch entries with a frame axis at dim 1 (B, T, ...): what a stream chunk slices.
FRAME_INPUT_NAMES: tuple[str, ...] = (
    "pixel_values_videos",
    "video_frame_mask",
    "geometry_coords",
    "geometry_coords_valid",
    "geometry_tokens",
    "geometry_padding_mask",
    "camera_tokens",
    "camera_poses",
)

_GEOMETRY_NAMES = frozenset(FRAME_INPUT_NAMES[2:])


class VideoConversationDataset(Dataset):
    """LLaVA-format video conversations as model inputs, read lazily.

    Args:
        records: LLaVA-format records (``load_conversation_records``), each with a ``video`` path
            and, when the config needs geometry, a ``geometry`` folder.
        processor: ``VLM2Processor`` (tokenizer, frame preprocessing, geometry preprocessing,
            video token count).
        data_args: frame count, memory mode, folders, length limit.
        config: the model's ``VLM2Config`` (whether geometry is needed, its preprocessing).
        root: folder relative paths start from when ``video_folder`` / ``geometry_folder`` are unset.
        video_cache: a dict to keep each video's decoded frames (float16) and geometry in, keyed
            by path, so the questions of one video decode it once; share one dict between datasets
            over the same videos. None (default): read every item from disk.

    Items: ``input_ids`` (L,), ``labels`` (L,), ``pixel_values_videos`` (T, 3, S, S) and the
    geometry inputs with a leading (T,). In ``stream`` mode the prompt holds the visual tokens of the
    last ``stream_chunk_frames`` frames only (see the module docstring).
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        processor: Any,
        data_args: DataArguments,
        config: Any,
        root: str | os.PathLike = ".",
        video_cache: dict | None = None,
    ) -> None:
        self.records = list(records)
        self.video_cache = video_cache
        self.processor = processor
        self.data_args = data_args
        self.config = config
        root = Path(root)
        self.video_folder = Path(data_args.video_folder) if data_args.video_folder else root
        self.geometry_folder = Path(data_args.geometry_folder) if data_args.geometry_folder else root
        for index, record in enumerate(self.records):
            if not record.get("video"):
                raise ValueError(f"record {index} ({record.get('id', 'no id')}) has no 'video'; VLM² trains on videos")
            if config.needs_geometry and not record.get("geometry"):
                raise ValueError(
                    f"record {index} ({record.get('id', 'no id')}) has no 'geometry' folder but the model's "
                    "config needs geometry (use_spatial_fusion=True)"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        record = self.records[index]
        stream = self.data_args.memory_mode == "stream"
        # Stream chunks need every sample to have all its frames; per-sample batches pad shorter videos.
        clip, pixels = self._frames(self.video_folder / record["video"], stream)
        item: dict[str, Tensor] = {"pixel_values_videos": pixels}
        if self.config.needs_geometry:
            item.update(self._geometry(self.geometry_folder / record["geometry"], clip.indices))
        shown_frames = self.data_args.stream_chunk_frames if stream else pixels.shape[0]
        messages = to_chat_messages(
            record["conversations"], self.processor.video_token, aliases=(self.processor.image_token,)
        )
        # Converted LLaVA-Video / VLM-3R models were trained with qwen_1_5's system prompt and the
        # time instruction; their processor settings say so (spatialvlm.convert).
        timing = None
        if self.processor.time_instruction and clip.fps > 0 and not stream:
            timing = llava_video_time_instruction(clip.total_frames / clip.fps, (clip.indices / clip.fps).tolist())
        messages = add_video_prompt(messages, self.processor.video_token, self.processor.system_prompt, timing)
        try:
            input_ids, labels = tokenize_conversation(
                self.processor.tokenizer,
                messages,
                {self.processor.video_token_id: self.processor.num_video_tokens(shown_frames)},
                max_length=self.data_args.model_max_length,
            )
        except ValueError as error:
            raise ValueError(f"record {index} ({record.get('id', 'no id')}): {error}") from error
        item.update(input_ids=input_ids, labels=labels)
        return item

    def _frames(self, path: Path, stream: bool) -> tuple[Any, Tensor]:
        """The sampled clip (frames dropped once cached) and its preprocessed pixels (T, 3, S, S)."""
        processor = self.processor
        preprocessing = (processor.image_size, tuple(processor.image_mean), tuple(processor.image_std), processor.resample)
        key = ("video", str(path), self.data_args.num_frames, self.data_args.frame_sampling, stream, preprocessing)
        if self.video_cache is not None and key in self.video_cache:
            clip, pixels = self.video_cache[key]
            return clip, pixels.float()
        clip = read_video(path, self.data_args.num_frames, allow_fewer=not stream, sampling=self.data_args.frame_sampling)
        pixels = processor.preprocess_frames(clip.frames)
        if self.video_cache is not None:
            # float16 halves the memory; its 11-bit mantissa is far below one 8-bit level of a pixel.
            # The first read returns the rounded pixels too, so an item does not depend on access order.
            self.video_cache[key] = (dataclasses.replace(clip, frames=clip.frames[:0]), pixels.half())
            pixels = self.video_cache[key][1].float()
        return clip, pixels

    def _geometry(self, folder: Path, indices: Any) -> dict[str, Tensor]:
        """The model's geometry inputs for the sampled frames of one video's geometry folder."""
        processor = self.processor
        settings = (processor.coordinate_normalization, processor.coordinate_clip, processor.patches_per_side,
                    processor.point_confidence_threshold)
        key = ("geometry", str(folder), tuple(indices.tolist()), settings)
        if self.video_cache is not None and key in self.video_cache:
            return dict(self.video_cache[key])
        source = load_geometry_source(folder)
        check_metric_scale(source, processor.coordinate_normalization)
        geometry, _ = processor.prepare_geometry(read_frames(source, indices.tolist()))
        if self.video_cache is not None:
            self.video_cache[key] = dict(geometry)
        return geometry


class VideoConversationCollator:
    """Pads a list of dataset items into one batch.

    Text is right-padded (``pad_token_id``, labels ``IGNORE_INDEX``); frames are padded to the
    longest video with ``video_frame_mask`` (B, T) marking the real ones; geometry inputs are
    padded as ``VLM2Processor`` pads them (``collate_video_geometry``).

    The batch carries no ``attention_mask``: under the causal LM a real token never sees the pads
    after it and the pads' outputs carry no loss, so the mask changes nothing the loss depends on,
    while passing it makes the LM build a (B, 1, L, L) mask and run its masked attention kernel
    (dropping it: 93 % of the CPU time of a VLM² (8, 32) training step at the ablation's sizes;
    benchmarks/bench_vlm2_train_step.py).
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        from ...models.processing import collate_video_geometry

        input_ids = pad_sequences([item["input_ids"] for item in items], self.pad_token_id)
        videos = [item["pixel_values_videos"] for item in items]
        frames = torch.tensor([video.shape[0] for video in videos])
        max_frames = int(frames.max())
        pixel_values = videos[0].new_zeros((len(videos), max_frames, *videos[0].shape[1:]))
        for row, video in enumerate(videos):
            pixel_values[row, : video.shape[0]] = video
        batch = {
            "input_ids": input_ids,
            "labels": pad_sequences([item["labels"] for item in items], IGNORE_INDEX),
            "pixel_values_videos": pixel_values,
            "video_frame_mask": torch.arange(max_frames)[None, :] < frames[:, None],
        }
        geometry = [{k: v for k, v in item.items() if k in _GEOMETRY_NAMES} for item in items]
        if geometry[0]:
            batch.update(collate_video_geometry(geometry, max_frames))
        return batch


class VLM2Trainer(SpatialTrainer):
    """``SpatialTrainer`` that runs VLM²'s memory per sample or as a detached stream of chunks.

    Args:
        memory_mode: "per_sample" or "stream" (see the module docstring).
        stream_chunk_frames: frames per chunk in stream mode.
    """

    def __init__(self, *args, memory_mode: str = "per_sample", stream_chunk_frames: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory_mode = memory_mode
        self.stream_chunk_frames = stream_chunk_frames

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        if self.memory_mode == "stream":
            inputs = stream_warm_up(self._video_model(model), inputs, self.stream_chunk_frames)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _video_model(self, model: nn.Module) -> nn.Module:
        model = self.accelerator.unwrap_model(model)
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        return model.model


def stream_warm_up(video_model: nn.Module, inputs: Mapping[str, Any], chunk_frames: int) -> dict[str, Any]:
    """Run all but the last chunk of each video through the memory and hand on the last chunk.

    Args:
        video_model: the ``VLM2Model`` (``model.model``), whose ``get_video_features`` takes and
            returns ``memory_state``.
        inputs: a batch with per-frame inputs (B, T, ...), T a multiple of ``chunk_frames``.
        chunk_frames: frames per chunk.

    Returns:
        ``inputs`` with the per-frame entries cut to the last chunk (B, chunk_frames, ...) and
        ``memory_state`` set to the detached memory after the earlier chunks.
    """
    frames = inputs["pixel_values_videos"].shape[1]
    if frames % chunk_frames:
        raise ValueError(
            f"pixel_values_videos has {frames} frames, not a multiple of stream_chunk_frames={chunk_frames}"
        )
    present = [name for name in FRAME_INPUT_NAMES if inputs.get(name) is not None]
    state = inputs.get("memory_state")
    with torch.no_grad():
        for start in range(0, frames - chunk_frames, chunk_frames):
            chunk = {name: inputs[name][:, start : start + chunk_frames] for name in present}
            state = video_model.get_video_features(**chunk, memory_state=state).memory_state
    result = dict(inputs)
    result.update({name: inputs[name][:, frames - chunk_frames :] for name in present})
    result["memory_state"] = state.detach() if state is not None else None
    return result


@register_task
class VLM2Task(TrainingTask):
    """``VLM2ForConditionalGeneration`` on LLaVA-format video conversations."""

    name = "vlm2"
    part_map = VLM2_PART_MAP
    trainer_class = VLM2Trainer

    def build_config(self, model_args: ModelArguments):
        from ...models.vlm2 import VLM2Config

        path = Path(model_args.model_name_or_path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} has no config.json; --model_name_or_path must be a local checkpoint directory")
        if json.loads(config_file.read_text()).get("model_type") == VLM2Config.model_type:
            base = VLM2Config.from_pretrained(path)
        else:
            from transformers import AutoConfig

            base = AutoConfig.from_pretrained(path)
        return VLM2Config.from_base(base, **model_args.model_flags())

    def load_config(self, directory: str | os.PathLike):
        from ...models.vlm2 import VLM2Config

        return VLM2Config.from_pretrained(directory)

    def load_model(self, model_path: str, config: Any, torch_dtype: torch.dtype | None = None):
        """The model to train: a checkpoint directory, or a ``spatialvlm train`` output / its
        ``checkpoint-N`` (no model.safetensors there: its base, its LoRA adapters merged and its
        trained VLM² parts, as ``load_vlm2`` rebuilds it), so one run continues from another."""
        from ...models.vlm2 import VLM2ForConditionalGeneration
        from ..checkpoint import MANIFEST_NAME, CheckpointManifest, load_trained_model

        if (Path(model_path) / MANIFEST_NAME).is_file():
            task = CheckpointManifest.load(model_path).task
            if task != self.name:
                raise ValueError(
                    f"--model_name_or_path {model_path} is a '{task}' training output; --task {self.name} "
                    "continues from a 'vlm2' one or a model directory"
                )
            model = load_trained_model(model_path, merge_lora=True, torch_dtype=torch_dtype, config=config)
            return model.train(), list(model.vlm2_new_weights)
        extra = {} if torch_dtype is None else {"dtype": torch_dtype}
        model = VLM2ForConditionalGeneration.from_pretrained(model_path, config=config, **extra)
        return model, list(model.vlm2_new_weights)

    def default_parts(self, model: nn.Module, model_args: ModelArguments) -> tuple[str, ...]:
        config = model.config
        parts = ["mm_mlp_adapter"]
        if config.use_spatial_fusion:
            parts.append("fusion")
        if config.use_dual_memory:
            parts.append("dual_memory")
        return tuple(parts)

    def build_processor(self, model_args: ModelArguments, config: Any):
        from ...models.processing import VLM2Processor

        return VLM2Processor.from_pretrained(
            model_args.model_name_or_path, coordinate_normalization=config.coordinate_normalization
        )

    def build_train_data(self, processor: Any, data_args: DataArguments, config: Any):
        if data_args.data_path is None:
            raise ValueError("data_args.data_path is required")
        records = load_conversation_records(data_args.data_path)
        dataset = VideoConversationDataset(records, processor, data_args, config, root=Path(data_args.data_path).parent)
        return dataset, VideoConversationCollator(processor.tokenizer.pad_token_id)

    def trainer_kwargs(self, data_args: DataArguments) -> dict[str, Any]:
        return {"memory_mode": data_args.memory_mode, "stream_chunk_frames": data_args.stream_chunk_frames}
