"""VLM-3R's precomputed CUT3R features as a geometry source.

VLM-3R's ``scripts/extract_spatial_features.py`` writes one ``.pt`` file per video::

    {"camera_tokens": (F, 1, 768), "patch_tokens": (F, 729, 768)}

for the F frames that ``process_video_with_decord`` samples with ``force_sample=True``:
``np.linspace(0, total_frames - 1, frames_upbound, dtype=int)``. The file stores no frame indices,
points, poses or intrinsics. This source gives each row back under its video frame index, so the
frame sampler of ``spatialvlm ask`` / ``eval`` meets the same frames; with no points the features
feed the cross-attention fusion (geometry tokens + camera token) but not coordinate injection,
which needs per-patch 3D points: load such models with ``use_coordinate_injection=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .frames import FrameGeometry

__all__ = ["VLM3RFeatureSource", "vlm3r_frame_indices"]


def vlm3r_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """The frames VLM-3R extracts features for: ``linspace(0, total − 1, num_frames)`` truncated."""
    if total_frames < 1 or num_frames < 1:
        raise ValueError(f"need total_frames >= 1 and num_frames >= 1, got {total_frames} and {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames, dtype=int).astype(np.int64)


class VLM3RFeatureSource:
    """One video's VLM-3R feature file.

    Args:
        path: the ``.pt`` file.
        total_frames: frame count of the video the features were extracted from; each row is then
            served under its video frame index (``vlm3r_frame_indices``). None serves rows as frames
            0 … F−1 (when the caller samples the same F frames by position).

    Attributes:
        frame_indices: the video frame index of each row.
        has_points: always False (no coordinate injection from these features).
    """

    has_points = False

    def __init__(self, path: str | Path, total_frames: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"VLM-3R feature file {self.path} does not exist")
        data = torch.load(self.path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or not {"camera_tokens", "patch_tokens"} <= set(data):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"{self.path} is not a VLM-3R feature file: expected the keys camera_tokens and patch_tokens "
                f"(scripts/extract_spatial_features.py), found {found}"
            )
        camera, patches = data["camera_tokens"], data["patch_tokens"]
        if camera.ndim == 2:
            camera = camera[:, None]
        if camera.ndim != 3 or camera.shape[1] != 1 or patches.ndim != 3 or camera.shape[0] != patches.shape[0]:
            raise ValueError(
                f"{self.path}: camera_tokens {tuple(camera.shape)} and patch_tokens {tuple(patches.shape)} must be "
                "(F, 1, D) and (F, M, D) with the same F"
            )
        self.camera_tokens: Tensor = camera[:, 0].float()
        self.patch_tokens: Tensor = patches.float()
        count = patches.shape[0]
        if total_frames is None:
            indices = np.arange(count, dtype=np.int64)
        else:
            if total_frames < count:
                raise ValueError(
                    f"{self.path} holds {count} frames but total_frames={total_frames}; VLM-3R samples at most "
                    "one row per video frame"
                )
            indices = vlm3r_frame_indices(total_frames, count)
        self.frame_indices: list[int] = [int(i) for i in indices]
        self._rows = {index: row for row, index in enumerate(self.frame_indices)}
        self.total_frames = total_frames

    def __len__(self) -> int:
        return self.frame_indices[-1] + 1

    def frame(self, index: int) -> FrameGeometry:
        row = self._rows.get(int(index))
        if row is None:
            hint = (
                "pass total_frames=<frames of the video> so rows match video frame indices"
                if self.total_frames is None
                else f"VLM-3R sampled linspace(0, {self.total_frames - 1}, {len(self.frame_indices)})"
            )
            raise KeyError(f"{self.path} has no features for video frame {index} ({hint}; stored: {self.frame_indices[:6]} …)")
        return FrameGeometry(camera_token=self.camera_tokens[row], geometry_tokens=self.patch_tokens[row])

    def __repr__(self) -> str:
        return f"VLM3RFeatureSource({str(self.path)!r}, frames={len(self.frame_indices)}, total_frames={self.total_frames})"
