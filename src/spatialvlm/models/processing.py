"""``VLM2Processor``: tokenizer + SigLIP frame preprocessing for LLaVA-OneVision-style video prompts.

transformers' ``LlavaOnevisionVideoProcessor`` needs torchvision, which this project cannot use, so
frames go through ``spatialvlm.data.preprocess.siglip_preprocess`` (equal to ``SiglipImageProcessor``)
and this class expands each ``<video>`` placeholder into the number of language tokens the model
produces for it: ``num_frames · ceil(side/2)² + 1`` (2×2 bilinear pooling per frame, one newline
token per video), where ``side = image_size // patch_size``.

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
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from ..data.preprocess import siglip_preprocess
from ..geometry import (
    CoordinateStats,
    FrameGeometry,
    compute_coordinate_stats,
    normalize_pose,
    normalize_world_coords,
    points_to_patch_coords,
)

__all__ = ["VLM2Processor", "PROCESSOR_CONFIG_NAME", "collate_video_geometry"]

PROCESSOR_CONFIG_NAME = "vlm2_processor_config.json"

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
    ) -> None:
        if image_size < patch_size:
            raise ValueError(f"image_size {image_size} is smaller than patch_size {patch_size}")
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
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    # ---------------------------------------------------------------- sizes
    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Language tokens per frame after LLaVA-OneVision's 2×2 pooling."""
        return math.ceil(self.patches_per_side / 2) ** 2

    def num_video_tokens(self, num_frames: int) -> int:
        return num_frames * self.tokens_per_frame + 1

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
            stats: normalisation statistics to reuse (streaming); None computes them from this
                video's valid patch coordinates.

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
                stats = compute_coordinate_stats(coords[None], patch_valid[None])
            coords = normalize_world_coords(coords[None], patch_valid[None], stats, clip=self.coordinate_clip)[0]
            inputs["geometry_coords"] = coords
            inputs["geometry_coords_valid"] = patch_valid
        if frames.geometry_tokens is not None:
            inputs["geometry_tokens"] = frames.geometry_tokens.float()
        if frames.camera_token is not None:
            inputs["camera_tokens"] = frames.camera_token.float()
        if frames.pose is not None:
            pose = frames.pose.float()
            inputs["camera_poses"] = normalize_pose(pose[None], stats, clip=self.coordinate_clip)[0] if stats else pose
        return inputs, stats

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

    def video_prompt(self, question: str) -> str:
        """The chat prompt for one question about one video (generation prompt appended)."""
        conversation = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}
        ]
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
        settings.update(overrides)
        return cls(tokenizer=AutoTokenizer.from_pretrained(path), **settings)


def _is_single_frame_list(videos: list) -> bool:
    """True when ``videos`` is one video given as a list of PIL images (not a list of videos)."""
    from PIL import Image

    return isinstance(videos[0], Image.Image)


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
