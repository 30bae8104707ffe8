"""``VLM2Processor``: tokenizer + SigLIP frame preprocessing for LLaVA-OneVision-style video prompts.

transformers' ``LlavaOnevisionVideoProcessor`` needs torchvision, which this project cannot use, so
frames go through ``spatialvlm.data.preprocess.siglip_preprocess`` (equal to ``SiglipImageProcessor``)
and this class expands each ``<video>`` placeholder into the number of language tokens the model
produces for it, from the same video token layout as the model's config (``video_pool_mode``,
``video_pool_stride``, ``video_newline_position``): LLaVA-OneVision-HF ``num_frames · ceil(side/2)²
+ 1`` (bilinear, one newline per video) or LLaVA-Video ``num_frames · 13 · 14`` at side 27 (2×2
average pooling, a newline after every row of every frame), where ``side = image_size // patch_size``.

Prompts: ``system_prompt`` (LLaVA-Video / VLM-3R train with qwen_1_5's "You are a helpful
assistant.") and ``time_instruction`` (LLaVA-Video's "The video lasts for X seconds, and N frames
are uniformly sampled from it. These frames are located at …") are settings, on by default in
directories written by ``spatialvlm convert``.

Batches may hold videos of different lengths: ``pixel_values_videos`` is padded to the longest
video and ``video_frame_mask`` (B, T) marks the real frames; each prompt gets the token count of its
own video.

Geometry (``spatialvlm.geometry.FrameGeometry``, batched over a video's frames) becomes the model's
geometry inputs here: point maps are cropped to the image region SigLIP's patches cover, pooled to
the patch grid (masked mean of valid points), and normalised with one frame of reference per video
(``normalize_world_coords``: median centre, median spread, clip); poses get the same normalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from ..data.preprocess import siglip_preprocess
from ..geometry import (
    COORDINATE_NORMALIZATIONS,
    CoordinateStats,
    FrameGeometry,
    normalize_pose,
    normalize_world_coords,
    points_to_patch_coords,
    video_coordinate_stats,
)

__all__ = [
    "VLM2Processor",
    "PROCESSOR_CONFIG_NAME",
    "QWEN_1_5_SYSTEM_PROMPT",
    "collate_video_geometry",
    "llava_video_time_instruction",
]

PROCESSOR_CONFIG_NAME = "vlm2_processor_config.json"

# LLaVA-NeXT conversation template qwen_1_5 (conv_qwen): its system message.
QWEN_1_5_SYSTEM_PROMPT = "You are a helpful assistant."

# Model-config fields that decide how many tokens a video becomes (read by from_pretrained so the
# processor always agrees with the model it sits beside).
LAYOUT_FIELDS: tuple[str, ...] = ("video_pool_mode", "video_pool_stride", "video_newline_position")


def llava_video_time_instruction(video_seconds: float, frame_seconds: Sequence[float]) -> str:
    """LLaVA-Video's time instruction, character for character as its train.py writes it
    (including the missing space before "Please")."""
    frame_time = ",".join(f"{t:.2f}s" for t in frame_seconds)
    return (
        f"The video lasts for {video_seconds:.2f} seconds, and {len(frame_seconds)} frames are uniformly sampled "
        f"from it. These frames are located at {frame_time}.Please answer the following questions related to this video."
    )

# A video is either decoded RGB frames (T, H, W, 3) uint8, a list of PIL images, or frames already
# preprocessed to (T, 3, S, S) float.
VideoInput = Any


class VLM2Processor:
    """Builds model inputs for VLM² / LLaVA-OneVision video questions.

    Args:
        tokenizer: the language model's tokenizer (with ``<video>`` and a chat template).
        image_size: SigLIP input side in pixels (384 for so400m-patch14-384).
        patch_size: SigLIP patch size (14).
        image_mean, image_std: per-channel normalisation (SigLIP: 0.5, 0.5).
        resample: Pillow filter name for resizing (SigLIP: "bicubic").
        video_token, image_token: placeholder strings in prompts.
        point_confidence_threshold: pixels whose confidence is below this do not count when point
            maps are pooled to patches (None: confidence ignored).
        coordinate_clip: normalised coordinates are clamped to ±clip spreads.
        coordinate_normalization: "per_video" (median centre and spread of each video), "metric"
            (metres in the first camera's frame over ``METRIC_COORDINATE_SCALE``) or "fixed"
            (``coordinate_stats``); see ``spatialvlm.geometry.normalize``.
        coordinate_stats: the statistics of "fixed" mode (``CoordinateStats.fixed`` or its
            ``to_dict()``).
        video_pool_mode, video_pool_stride, video_newline_position: the model's video token layout
            (``VLM2Config`` fields of the same names); defaults are LLaVA-OneVision-HF's.
        system_prompt: a system message put before every question (None: the chat template's own).
        time_instruction: put LLaVA-Video's time instruction before the question when the frame
            times are known (``video_prompt(..., frame_seconds=, video_seconds=)``).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_size: int = 384,
        patch_size: int = 14,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        resample: str = "bicubic",
        video_token: str = "<video>",
        image_token: str = "<image>",
        point_confidence_threshold: float | None = None,
        coordinate_clip: float = 8.0,
        coordinate_normalization: str = "per_video",
        coordinate_stats: CoordinateStats | dict | None = None,
        video_pool_mode: str = "bilinear",
        video_pool_stride: int = 2,
        video_newline_position: str = "one_token",
        system_prompt: str | None = None,
        time_instruction: bool = False,
    ) -> None:
        from .vlm2 import VIDEO_NEWLINE_POSITIONS, VIDEO_POOL_MODES

        if image_size < patch_size:
            raise ValueError(f"image_size {image_size} is smaller than patch_size {patch_size}")
        if video_pool_mode not in VIDEO_POOL_MODES or video_newline_position not in VIDEO_NEWLINE_POSITIONS:
            raise ValueError(
                f"unknown video layout ({video_pool_mode!r}, {video_newline_position!r}); pool modes are "
                f"{VIDEO_POOL_MODES}, newline positions {VIDEO_NEWLINE_POSITIONS}"
            )
        self.video_pool_mode = video_pool_mode
        self.video_pool_stride = int(video_pool_stride)
        self.video_newline_position = video_newline_position
        self.system_prompt = system_prompt
        self.time_instruction = bool(time_instruction)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.image_mean = tuple(float(x) for x in image_mean)
        self.image_std = tuple(float(x) for x in image_std)
        self.resample = resample
        self.video_token = video_token
        self.image_token = image_token
        self.point_confidence_threshold = point_confidence_threshold
        self.coordinate_clip = float(coordinate_clip)
        if coordinate_normalization not in COORDINATE_NORMALIZATIONS:
            raise ValueError(
                f"coordinate_normalization must be one of {COORDINATE_NORMALIZATIONS}, got {coordinate_normalization!r}"
            )
        self.coordinate_normalization = coordinate_normalization
        self.coordinate_stats = CoordinateStats.from_dict(coordinate_stats) if isinstance(coordinate_stats, dict) else coordinate_stats
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    # ---------------------------------------------------------------- sizes
    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Language tokens per frame after the pooling, the "grid" / "frame" newlines included."""
        from .vlm2 import video_grid_side, video_tokens_per_frame

        grid = video_grid_side(self.patches_per_side, self.video_pool_mode, self.video_pool_stride)
        return video_tokens_per_frame(grid, self.video_newline_position)

    @property
    def tokens_per_video(self) -> int:
        """Tokens a video has besides its frames' (the "one_token" layout's newline)."""
        return int(self.video_newline_position == "one_token")

    def num_video_tokens(self, num_frames: int) -> int:
        return num_frames * self.tokens_per_frame + self.tokens_per_video

    def num_frames_of(self, num_tokens: int) -> int:
        """Inverse of ``num_video_tokens``; ValueError when no frame count gives ``num_tokens``."""
        frames, rest = divmod(num_tokens - self.tokens_per_video, self.tokens_per_frame)
        if rest or frames < 1:
            raise ValueError(
                f"{num_tokens} video tokens is not T · {self.tokens_per_frame} + {self.tokens_per_video} for any T ≥ 1"
            )
        return frames

    # ---------------------------------------------------------------- frames
    def preprocess_frames(self, frames: VideoInput) -> torch.Tensor:
        """Frames → SigLIP pixel values (T, 3, image_size, image_size) float32.

        Already-preprocessed tensors (T, 3, S, S) pass through after a shape check.
        """
        if isinstance(frames, torch.Tensor) and frames.is_floating_point():
            expected = (3, self.image_size, self.image_size)
            if frames.ndim != 4 or tuple(frames.shape[1:]) != expected:
                raise ValueError(
                    f"preprocessed frames must have shape (T, {', '.join(map(str, expected))}); "
                    f"got {tuple(frames.shape)}"
                )
            return frames
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        return siglip_preprocess(
            frames, self.image_size, mean=self.image_mean, std=self.image_std, resample=self.resample
        )

    # ---------------------------------------------------------------- geometry
    def prepare_geometry(
        self, frames: FrameGeometry, stats: CoordinateStats | None = None
    ) -> tuple[dict[str, torch.Tensor], CoordinateStats | None]:
        """One video's geometry (batched ``FrameGeometry``, T frames) → model geometry inputs.

        Args:
            frames: batched FrameGeometry with leading T (``spatialvlm.geometry.read_frames``).
            stats: normalisation statistics to reuse (streaming); None computes them for this
                video in the processor's ``coordinate_normalization`` mode.

        Returns:
            ``(inputs, stats)``: ``inputs`` maps forward names to tensors with leading T:
            ``geometry_coords`` (T, N, 3) and ``geometry_coords_valid`` (T, N) when there are points
            (or depth + pose + intrinsics), ``geometry_tokens`` (T, M, Dg), ``camera_tokens``
            (T, Dv), ``camera_poses`` (T, 4, 4); ``stats`` is None when the video has no points
            and none were given (poses then stay in raw world units).
        """
        frames = frames.with_points()
        inputs: dict[str, torch.Tensor] = {}
        if frames.points is not None:
            if frames.points.ndim != 4:
                raise ValueError(f"frames.points must be batched (T, H, W, 3); got {tuple(frames.points.shape)}")
            points, valid = self._covered_region(frames.points, frames.pixel_valid(self.point_confidence_threshold))
            side = self.patches_per_side
            coords, patch_valid = points_to_patch_coords(points, valid, grid=(side, side))
            if stats is None:
                stats = self._video_stats(frames, coords[None], patch_valid[None])
            coords = normalize_world_coords(coords[None], patch_valid[None], stats, clip=self.coordinate_clip)[0]
            inputs["geometry_coords"] = coords
            inputs["geometry_coords_valid"] = patch_valid
        if frames.geometry_tokens is not None:
            inputs["geometry_tokens"] = frames.geometry_tokens.float()
        if frames.camera_token is not None:
            inputs["camera_tokens"] = frames.camera_token.float()
        if stats is None and self.coordinate_normalization != "per_video":
            stats = self._video_stats(frames)
        if frames.pose is not None:
            pose = frames.pose.float()
            inputs["camera_poses"] = normalize_pose(pose[None], stats, clip=self.coordinate_clip)[0] if stats else pose
        return inputs, stats

    def _video_stats(self, frames: FrameGeometry, coords=None, valid=None) -> CoordinateStats | None:
        """This video's statistics in the processor's ``coordinate_normalization`` mode."""
        poses = None if frames.pose is None else frames.pose.float()[None]
        return video_coordinate_stats(self.coordinate_normalization, coords, valid, poses, self.coordinate_stats)

    def _covered_region(
        self, points: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crop a point map to the part of the image SigLIP's patches see.

        The frame is resized to ``image_size`` and the patch embedding drops the last
        ``image_size − side · patch_size`` pixels (6 of 384 for so400m), so the point map loses
        the same fraction of its rows and columns before it is pooled.
        """
        covered = self.patches_per_side * self.patch_size / self.image_size
        height, width = points.shape[1:3]
        rows, cols = max(1, round(height * covered)), max(1, round(width * covered))
        points = points[:, :rows, :cols]
        return points, None if valid is None else valid[:, :rows, :cols]

    # ---------------------------------------------------------------- text
    def apply_chat_template(self, conversation: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def video_prompt(
        self,
        question: str,
        frame_seconds: Sequence[float] | None = None,
        video_seconds: float | None = None,
    ) -> str:
        """The chat prompt for one question about one video (generation prompt appended).

        With ``time_instruction`` on and the sampled frames' times (``frame_seconds``, seconds from
        the start) and the video's length given, LLaVA-Video's time instruction goes between the
        video and the question, as its training wrote it: ``<video>\n{instruction}\n{question}``.
        """
        if self.time_instruction and frame_seconds is not None and video_seconds is not None:
            question = f"{llava_video_time_instruction(video_seconds, frame_seconds)}\n{question}"
        conversation = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}
        ]
        if self.system_prompt:
            conversation.insert(0, {"role": "system", "content": self.system_prompt})
        return self.apply_chat_template(conversation, add_generation_prompt=True)

    def __call__(
        self,
        text: str | list[str],
        videos: VideoInput | list[VideoInput] | None = None,
        geometry: FrameGeometry | list[FrameGeometry] | None = None,
        padding_side: str = "left",
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Tokenise prompts and preprocess their videos.

        Args:
            text: one prompt or B prompts; prompt b holds one ``<video>`` placeholder when
                ``videos`` is given.
            videos: one video or B videos (see ``preprocess_frames``), lengths may differ.
            geometry: one batched ``FrameGeometry`` per video (its T matching the video's frame
                count), see ``prepare_geometry``.
            padding_side: "left" for generation (default), "right" for training.

        Returns:
            ``BatchFeature`` with ``input_ids`` (B, L), ``attention_mask`` (B, L) and, with videos,
            ``pixel_values_videos`` (B, T, 3, S, S) and ``video_frame_mask`` (B, T) bool; the mask is
            only added when lengths differ, so equal-length batches are valid input to the base
            LLaVA-OneVision model too. With geometry, the tensors of ``collate_video_geometry``.
        """
        texts = [text] if isinstance(text, str) else list(text)
        data: dict[str, Any] = {}
        if videos is not None:
            if not isinstance(videos, list) or (videos and _is_single_frame_list(videos)):
                videos = [videos]
            if len(videos) != len(texts):
                raise ValueError(f"got {len(texts)} prompts but {len(videos)} videos; expected one video per prompt")
            pixel_values = [self.preprocess_frames(video) for video in videos]
            lengths = [int(v.shape[0]) for v in pixel_values]
            if min(lengths) < 1:
                raise ValueError("a video has no frames; expected at least one frame per video")
            expanded = []
            for index, (prompt, length) in enumerate(zip(texts, lengths)):
                count = prompt.count(self.video_token)
                if count != 1:
                    raise ValueError(
                        f"prompt {index} has {count} '{self.video_token}' placeholders; expected exactly one"
                    )
                expanded.append(prompt.replace(self.video_token, self.video_token * self.num_video_tokens(length)))
            texts = expanded
            max_frames = max(lengths)
            padded = pixel_values[0].new_zeros((len(pixel_values), max_frames, *pixel_values[0].shape[1:]))
            for index, video in enumerate(pixel_values):
                padded[index, : video.shape[0]] = video
            data["pixel_values_videos"] = padded
            if len(set(lengths)) > 1:
                data["video_frame_mask"] = torch.arange(max_frames)[None, :] < torch.tensor(lengths)[:, None]
            if geometry is not None:
                geometry = geometry if isinstance(geometry, list) else [geometry]
                if len(geometry) != len(videos):
                    raise ValueError(f"got {len(videos)} videos but geometry for {len(geometry)}")
                prepared = []
                for index, (frames, length) in enumerate(zip(geometry, lengths)):
                    inputs, _ = self.prepare_geometry(frames)
                    for name, value in inputs.items():
                        if value.shape[0] != length:
                            raise ValueError(
                                f"video {index} has {length} frames but its geometry {name} has {value.shape[0]}"
                            )
                    prepared.append(inputs)
                data.update(collate_video_geometry(prepared, max_frames))
        elif geometry is not None:
            raise ValueError("geometry was given without videos")
        encoded = self.tokenizer(texts, padding=True, padding_side=padding_side, return_tensors=return_tensors)
        data = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], **data}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "resample": self.resample,
            "video_token": self.video_token,
            "image_token": self.image_token,
            "point_confidence_threshold": self.point_confidence_threshold,
            "coordinate_clip": self.coordinate_clip,
            "coordinate_normalization": self.coordinate_normalization,
            "coordinate_stats": None if self.coordinate_stats is None else self.coordinate_stats.to_dict(),
            "video_pool_mode": self.video_pool_mode,
            "video_pool_stride": self.video_pool_stride,
            "video_newline_position": self.video_newline_position,
            "system_prompt": self.system_prompt,
            "time_instruction": self.time_instruction,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        (path / PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> VLM2Processor:
        """Load from a directory saved by ``save_pretrained`` or from a Hugging Face LLaVA-OneVision
        checkpoint directory (reads ``preprocessor_config.json`` / ``video_preprocessor_config.json``
        for size, mean and std, and the model's ``config.json`` for the patch size)."""
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"processor directory {path} does not exist")
        settings: dict[str, Any] = {}
        own = path / PROCESSOR_CONFIG_NAME
        if own.is_file():
            settings = json.loads(own.read_text())
        else:
            settings = _settings_from_hf_checkpoint(path)
        # The model's own layout wins: model and processor must agree on the token count.
        settings.update(_layout_from_model_config(path))
        settings.update(overrides)
        return cls(tokenizer=AutoTokenizer.from_pretrained(path), **settings)


def _is_single_frame_list(videos: list) -> bool:
    """True when ``videos`` is one video given as a list of PIL images (not a list of videos)."""
    from PIL import Image

    return isinstance(videos[0], Image.Image)


def _layout_from_model_config(path: Path) -> dict[str, Any]:
    config = path / "config.json"
    if not config.is_file():
        return {}
    raw = json.loads(config.read_text())
    return {name: raw[name] for name in LAYOUT_FIELDS if name in raw}


def _settings_from_hf_checkpoint(path: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        file = path / name
        if not file.is_file():
            continue
        config = json.loads(file.read_text())
        size = config.get("size") or {}
        side = size.get("height") or size.get("shortest_edge")
        if side:
            settings["image_size"] = int(side)
        if config.get("image_mean"):
            settings["image_mean"] = config["image_mean"]
        if config.get("image_std"):
            settings["image_std"] = config["image_std"]
    model_config = path / "config.json"
    if model_config.is_file():
        vision = json.loads(model_config.read_text()).get("vision_config") or {}
        if "patch_size" in vision:
            settings["patch_size"] = int(vision["patch_size"])
        settings.setdefault("image_size", int(vision.get("image_size", 384)))
    return settings



def collate_video_geometry(videos: list[dict[str, torch.Tensor]], max_frames: int) -> dict[str, torch.Tensor]:
    """Pad per-video geometry inputs (leading T_b) into a batch (B, max_frames, ...).

    Every video must carry the same fields. Geometry tokens of different counts M are padded to the
    largest and ``geometry_padding_mask`` (B, T, M) bool (True = padding) is added; padded frames are
    zeros and invalid patches.
    """
    names = set(videos[0])
    for index, video in enumerate(videos):
        if set(video) != names:
            raise ValueError(
                f"video {index} has geometry fields {sorted(video)} but video 0 has {sorted(names)}; "
                "every video of a batch needs the same fields"
            )
    batch: dict[str, torch.Tensor] = {}
    for name in sorted(names):
        values = [video[name] for video in videos]
        if name == "geometry_tokens":
            counts = [value.shape[1] for value in values]
            width = max(counts)
            out = values[0].new_zeros((len(values), max_frames, width, values[0].shape[-1]))
            mask = torch.ones(len(values), max_frames, width, dtype=torch.bool)
            for index, value in enumerate(values):
                out[index, : value.shape[0], : value.shape[1]] = value
                mask[index, : value.shape[0], : value.shape[1]] = False
            batch[name] = out
            if len(set(counts)) > 1:
                batch["geometry_padding_mask"] = mask
            continue
        out = values[0].new_zeros((len(values), max_frames, *values[0].shape[1:]))
        for index, value in enumerate(values):
            out[index, : value.shape[0]] = value
        batch[name] = out
    return batch
