"""Which frames of a video a model sees: the sampling policies the field evaluates with.

One function, :func:`sample_frame_indices`, turns a :class:`FrameSampling` policy and a video's
frame count and frame rate into frame indices; ``ask``, ``eval``, ``train`` and the lmms-eval
plugin all call it (through :func:`spatialvlm.data.video.read_video`), and the eval bundle records
the policy and the indices per video.

Policies:

- **uniform N** (``"32"``; the field uses 8 / 16 / 32 / 64): ``linspace(0, total - 1, N)`` rounded
  down, first and last frame included — lmms-eval's VSI-Bench sampling
  (``np.linspace(0, total_frames - 1, num_frames, dtype=int)``) and LLaVA-Video's. A video with
  fewer than N frames gives all of its frames (lmms-eval: ``num_frames = min(num_frames, total)``)
  unless the caller asks for exactly N.
- **fps with a cap** (``"1fps:64"``): every ``round(video_fps / fps)``-th frame from frame 0; when
  that is more than the cap, N = cap frames uniformly over the whole video instead — LLaVA-Video's
  ``load_video(max_frames_num, fps)`` in lmms-eval ``models/simple/llava_vid.py``.
- **all** (``"all"``): every frame (streaming, ReVSI's pre-sampled ``*_frame`` videos).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spatialvlm.data.video import uniform_frame_indices

__all__ = ["FrameSampling", "sample_frame_indices", "uniform_frame_indices", "FIELD_FRAME_COUNTS"]

FIELD_FRAME_COUNTS: tuple[int, ...] = (8, 16, 32, 64)
"""Uniform frame counts papers report (VSI-Bench 8/16/32, ReVSI 16/32/64)."""


@dataclass(frozen=True)
class FrameSampling:
    """A frame sampling policy (see the module docstring).

    Attributes:
        num_frames: frames sampled uniformly; None means every frame (or fps-based when ``fps`` is set).
        fps: frames per second of video time to keep; when set, ``num_frames`` is ignored.
        max_frames: the cap of fps-based sampling (a longer video gets this many uniform frames).
    """

    num_frames: int | None = 32
    fps: float | None = None
    max_frames: int = 64

    def __post_init__(self) -> None:
        if self.fps is not None:
            if not self.fps > 0:
                raise ValueError(f"frame sampling fps must be > 0, got {self.fps}")
            if self.max_frames < 1:
                raise ValueError(f"frame sampling max_frames must be >= 1, got {self.max_frames}")
        elif self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"frame sampling num_frames must be >= 1 (or 'all'), got {self.num_frames}")

    @classmethod
    def parse(cls, text: str | int | FrameSampling) -> FrameSampling:
        """``"32"`` (uniform), ``"all"``, ``"1fps"`` / ``"0.5fps:32"`` (fps, cap; default cap 64)."""
        if isinstance(text, FrameSampling):
            return text
        if isinstance(text, int):
            return cls(num_frames=text)
        spec = str(text).strip().lower()
        if spec == "all":
            return cls(num_frames=None)
        if re.fullmatch(r"\d+", spec):
            return cls(num_frames=int(spec))
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*fps(?::(\d+))?", spec)
        if match:
            return cls(num_frames=None, fps=float(match.group(1)), max_frames=int(match.group(2) or 64))
        raise ValueError(
            f"frame sampling {text!r} is not understood; use a frame count (8, 16, 32, 64), 'all', or "
            "'<fps>fps[:<cap>]' such as '1fps:64'"
        )

    def describe(self) -> str:
        """The policy as :meth:`parse` reads it: ``"32"``, ``"all"``, ``"1fps:64"``."""
        if self.fps is not None:
            return f"{self.fps:g}fps:{self.max_frames}"
        return "all" if self.num_frames is None else str(self.num_frames)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "policy": self.describe()}


def sample_frame_indices(
    total_frames: int,
    sampling: FrameSampling | str | int = 32,
    video_fps: float = 0.0,
    allow_fewer: bool = True,
) -> np.ndarray:
    """The frame indices ``sampling`` picks from a video of ``total_frames`` frames at ``video_fps``.

    Args:
        total_frames: decodable frames in the video (>= 1).
        sampling: a policy or its text form (``"32"``, ``"all"``, ``"1fps:64"``).
        video_fps: the video's average frame rate (needed by fps-based sampling only).
        allow_fewer: uniform N on a video shorter than N frames returns all its frames (True, as
            lmms-eval) or raises (False).

    Returns:
        (T,) int64, increasing.
    """
    sampling = FrameSampling.parse(sampling)
    if total_frames < 1:
        raise ValueError(f"a video needs at least one frame to sample from, got {total_frames}")
    if sampling.fps is not None:
        if not video_fps > 0:
            raise ValueError(
                f"fps-based frame sampling ({sampling.describe()}) needs the video's frame rate, which is unknown; "
                "sample a fixed number of frames instead (e.g. 32)"
            )
        step = max(1, round(video_fps / sampling.fps))
        indices = np.arange(0, total_frames, step, dtype=np.int64)
        if len(indices) > sampling.max_frames:
            indices = uniform_frame_indices(total_frames, sampling.max_frames)
        return indices
    if sampling.num_frames is None or (allow_fewer and total_frames < sampling.num_frames):
        return np.arange(total_frames, dtype=np.int64)
    if total_frames < sampling.num_frames:
        raise ValueError(f"the video has {total_frames} frames, fewer than the {sampling.num_frames} requested")
    return uniform_frame_indices(total_frames, sampling.num_frames)
