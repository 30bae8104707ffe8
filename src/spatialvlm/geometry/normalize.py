"""Scene-scale-robust normalisation of world coordinates (applied before the coordinate MLP φ).

One frame of reference per video: the statistics are computed once over the valid points of *all*
frames of a video, and every frame of that video is normalised with them, so a point keeps the same
normalised coordinates whichever frame sees it.

- centre ``c`` = per-axis median of the valid points;
- spread ``s`` = median Euclidean distance of the valid points to ``c``;
- normalised point ``p' = clamp((p − c) / s, −clip, clip)``.

Medians ignore the far outliers that point maps of 3D foundation models produce (sky, windows,
mis-estimated depth), and dividing by a distance (one number for all three axes) keeps angles and
aspect ratios. A room of 4 m and a hall of 40 m both end up with half their points within distance 1
of the centre. The clip bounds what a stray point can feed φ.

Streaming: compute :class:`CoordinateStats` from the first frames (or a previous pass), keep them,
and pass them to every later call; :meth:`CoordinateStats.to_dict` / :meth:`from_dict` save and
restore them with the rest of the streaming state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_bool, check_shape

__all__ = ["CoordinateStats", "compute_coordinate_stats", "normalize_world_coords", "normalize_pose"]

DEFAULT_CLIP = 8.0
"""Normalised coordinates are clamped to ±DEFAULT_CLIP spreads (8 spreads ≈ 25 m in a 3 m-spread room)."""

DEFAULT_MAX_POINTS = 1_000_000
"""Above this many points per video the statistics use a fixed-stride subsample (reproducible)."""


@dataclass
class CoordinateStats:
    """Per-video normalisation statistics.

    Attributes:
        center: (V, 3) per-axis median of the valid points of each video.
        scale: (V,) median distance of the valid points to ``center``; 1 when a video has no valid
            point or all its points coincide.
    """

    center: Tensor
    scale: Tensor

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "CoordinateStats":
        return CoordinateStats(self.center.to(device=device, dtype=dtype), self.scale.to(device=device, dtype=dtype))

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON or a streaming-state file."""
        return {"center": self.center.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> "CoordinateStats":
        return cls(torch.tensor(data["center"], dtype=torch.float32), torch.tensor(data["scale"], dtype=torch.float32))


def compute_coordinate_stats(
    points: Tensor, valid: Tensor | None = None, *, max_points: int = DEFAULT_MAX_POINTS
) -> CoordinateStats:
    """Robust centre and spread of each video's valid points.

    Every dim between the first (video) and the last (xyz) is pooled, so pass a whole video:
    pixel maps (V, T, H, W, 3) or pooled patch coordinates (V, T, N, 3) both work (the pooled ones
    are 256× cheaper and give nearly the same numbers). Non-finite points never count.

    Args:
        points: (V, ..., 3).
        valid: (V, ...) bool or None.
        max_points: per-video cap on the points used; above it a fixed stride subsamples them.
    Returns:
        :class:`CoordinateStats` with center (V, 3), scale (V,).
    """
    check_shape("points", points, ("V", ..., 3))
    num_videos = points.shape[0]
    flat = points.reshape(num_videos, -1, 3).float()
    mask = torch.isfinite(flat).all(-1)
    if valid is not None:
        check_shape("valid", valid, tuple(points.shape[:-1]))
        check_bool("valid", valid)
        mask &= valid.reshape(num_videos, -1)
    if flat.shape[1] > max_points:
        stride = math.ceil(flat.shape[1] / max_points)
        flat, mask = flat[:, ::stride], mask[:, ::stride]
    nan = torch.full_like(flat, float("nan"))
    masked = torch.where(mask[..., None], flat, nan)
    has_points = mask.any(-1)
    center = torch.nanmedian(masked, dim=1).values
    center = torch.where(has_points[:, None], center, torch.zeros_like(center))
    distance = (masked - center[:, None]).norm(dim=-1)
    scale = torch.nanmedian(distance, dim=1).values
    usable = has_points & (scale > 1e-6)
    scale = torch.where(usable, scale, torch.ones_like(scale))
    return CoordinateStats(center=center, scale=scale)


def _broadcast_stats(stats: CoordinateStats, target: Tensor, name: str, trailing: int) -> tuple[Tensor, Tensor]:
    """Center and scale reshaped to broadcast over ``target`` (V, ..., *trailing dims*)."""
    num_videos = target.shape[0]
    if stats.center.shape != (num_videos, 3) or stats.scale.shape != (num_videos,):
        raise ValueError(
            f"stats must hold one video per row of {name} (center ({num_videos}, 3), scale ({num_videos},)); "
            f"got center {tuple(stats.center.shape)}, scale {tuple(stats.scale.shape)}"
        )
    middle = (1,) * (target.dim() - 1 - trailing)
    center = stats.center.to(target).reshape(num_videos, *middle, 3)
    scale = stats.scale.to(target).reshape(num_videos, *middle, 1)
    return center, scale


def normalize_world_coords(
    coords: Tensor,
    valid: Tensor | None = None,
    stats: CoordinateStats | None = None,
    *,
    clip: float = DEFAULT_CLIP,
) -> Tensor:
    """Centre, scale and clip world coordinates with per-video statistics.

    Args:
        coords: (V, ..., 3), e.g. the pooled patch coordinates of a video, (V, T, h·w, 3).
        valid: (V, ...) bool or None; invalid or non-finite entries come out as 0.
        stats: statistics to use (streaming: computed earlier); None computes them from ``coords``
            and ``valid`` with :func:`compute_coordinate_stats`.
        clip: clamp bound, in spreads.
    Returns:
        (V, ..., 3) normalised coordinates.
    """
    check_shape("coords", coords, ("V", ..., 3))
    mask = torch.isfinite(coords).all(-1)
    if valid is not None:
        check_shape("valid", valid, tuple(coords.shape[:-1]))
        check_bool("valid", valid)
        mask &= valid
    if stats is None:
        stats = compute_coordinate_stats(coords, mask)
    center, scale = _broadcast_stats(stats, coords, "coords", trailing=1)
    normalized = ((coords - center) / scale).clamp(-clip, clip)
    return torch.where(mask[..., None], normalized, torch.zeros_like(normalized))


def normalize_pose(pose: Tensor, stats: CoordinateStats, *, clip: float = DEFAULT_CLIP) -> Tensor:
    """Express camera-to-world poses in the normalised world frame of :func:`normalize_world_coords`.

    The rotation is unchanged (the normalisation has no rotation); the translation becomes
    ``clamp((t − c) / s, −clip, clip)``.

    Args:
        pose: (V, ..., 4, 4).
        stats: center (V, 3), scale (V,).
    Returns:
        (V, ..., 4, 4).
    """
    check_shape("pose", pose, ("V", ..., 4, 4))
    center, scale = _broadcast_stats(stats, pose[..., 0], "pose", trailing=1)
    out = pose.clone()
    out[..., :3, 3] = ((pose[..., :3, 3] - center) / scale).clamp(-clip, clip)
    return out
