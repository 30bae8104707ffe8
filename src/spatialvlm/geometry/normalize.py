"""Normalisation of world coordinates (applied before the coordinate MLP φ), three modes.

``coordinate_normalization`` (processor, ``VLM2Config``, ``ask`` / ``train`` / ``eval``):

- ``"per_video"`` (default): scene-scale-robust statistics of each video, below. Removes metric
  scale: a 4 m room and a 40 m hall look alike.
- ``"metric"``: metres in the first camera's frame (x right, y down, z forward of the first
  sampled frame), divided by :data:`METRIC_COORDINATE_SCALE` (2 m) and clipped;
  ``p' = clamp(R₀ᵀ (p − t₀) / 2 m, −clip, clip)`` with ``(R₀, t₀)`` the first frame's
  camera-to-world pose. Needs poses and a geometry source with metric scale
  (:func:`check_metric_scale` refuses relative-scale sources such as π³ point maps).
- ``"fixed"``: statistics the user gives (:meth:`CoordinateStats.fixed`), the same for every video.

The statistics of "metric" and "fixed" depend only on the first frame or on nothing, so a stream
that adds frames one at a time gets exactly the tokens of the whole video processed at once.
"per_video" statistics need the whole video; a stream computes them from its first frame with points
(or takes them from a previous pass), so its tokens differ from the offline ones.

Per-video statistics, one frame of reference per video: the statistics are computed once over the valid points of *all*
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
from typing import Sequence

import torch
from torch import Tensor

from .checks import check_bool, check_shape

__all__ = [
    "COORDINATE_NORMALIZATIONS",
    "METRIC_COORDINATE_SCALE",
    "CoordinateStats",
    "check_metric_scale",
    "compute_coordinate_stats",
    "metric_coordinate_stats",
    "normalize_world_coords",
    "normalize_pose",
    "parse_coordinate_stats",
    "video_coordinate_stats",
]

COORDINATE_NORMALIZATIONS = ("per_video", "metric", "fixed")
"""The values of ``coordinate_normalization``."""

METRIC_COORDINATE_SCALE = 2.0
"""Metres per normalised unit in ``"metric"`` mode. 2 m is about the median distance of indoor
scene points to a camera inside the room (ScanNet / ARKitScenes), so metric coordinates have the
range per-video ones have (most within ±3) and the clip (±8 units) sits at 16 m."""

DEFAULT_CLIP = 8.0
"""Normalised coordinates are clamped to ±DEFAULT_CLIP spreads (8 spreads ≈ 25 m in a 3 m-spread room)."""

DEFAULT_MAX_POINTS = 1_000_000
"""Above this many points per video the statistics use a fixed-stride subsample (reproducible)."""


@dataclass
class CoordinateStats:
    """Per-video normalisation statistics.

    A point ``p`` becomes ``R (p − center) / scale`` (then clipped), ``R`` = ``rotation`` or the
    identity.

    Attributes:
        center: (V, 3) per-axis median of the valid points of each video ("per_video"), the first
            camera's position ("metric"), or given ("fixed").
        scale: (V,) median distance of the valid points to ``center`` (1 when a video has no valid
            point or all its points coincide), or :data:`METRIC_COORDINATE_SCALE`, or given.
        rotation: (V, 3, 3) world-to-normalised rotation ("metric": the first camera's
            world-to-camera rotation), or None for the identity.
    """

    center: Tensor
    scale: Tensor
    rotation: Tensor | None = None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "CoordinateStats":
        rotation = None if self.rotation is None else self.rotation.to(device=device, dtype=dtype)
        return CoordinateStats(self.center.to(device=device, dtype=dtype), self.scale.to(device=device, dtype=dtype), rotation)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON or a streaming-state file."""
        data = {"center": self.center.tolist(), "scale": self.scale.tolist()}
        if self.rotation is not None:
            data["rotation"] = self.rotation.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> "CoordinateStats":
        rotation = data.get("rotation")
        return cls(
            torch.tensor(data["center"], dtype=torch.float32), torch.tensor(data["scale"], dtype=torch.float32),
            None if rotation is None else torch.tensor(rotation, dtype=torch.float32),
        )

    @classmethod
    def fixed(cls, center: "Sequence[float]", scale: float, num_videos: int = 1) -> "CoordinateStats":
        """User statistics for ``"fixed"`` mode: one centre (3 numbers, world units) and one scale
        (world units per normalised unit, > 0), repeated for ``num_videos`` videos."""
        center_t = torch.as_tensor(center, dtype=torch.float32).reshape(-1)
        if center_t.shape != (3,) or not torch.isfinite(center_t).all():
            raise ValueError(f"fixed coordinate statistics: center must be 3 finite numbers, got {list(center)}")
        if not (math.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"fixed coordinate statistics: scale must be a positive number, got {scale}")
        return cls(center_t.expand(num_videos, 3).clone(), torch.full((num_videos,), float(scale)))

    def repeat(self, num_videos: int) -> "CoordinateStats":
        """The statistics of one video, for ``num_videos`` videos."""
        if self.center.shape[0] == num_videos:
            return self
        if self.center.shape[0] != 1:
            raise ValueError(f"cannot spread statistics of {self.center.shape[0]} videos over {num_videos}")
        rotation = None if self.rotation is None else self.rotation.expand(num_videos, 3, 3)
        return CoordinateStats(self.center.expand(num_videos, 3), self.scale.expand(num_videos), rotation)


def metric_coordinate_stats(first_pose: Tensor, *, unit: float = METRIC_COORDINATE_SCALE) -> CoordinateStats:
    """``"metric"`` statistics: the first camera's frame, in units of ``unit`` metres.

    Args:
        first_pose: (V, 4, 4) camera-to-world pose of each video's first frame (metric world).
        unit: metres per normalised unit.
    Returns:
        :class:`CoordinateStats` with center = the camera position, rotation = its world-to-camera
        rotation, scale = ``unit``.
    """
    check_shape("first_pose", first_pose, ("V", 4, 4))
    first_pose = first_pose.float()
    if not torch.isfinite(first_pose).all():
        raise ValueError("metric coordinate normalisation: the first frame's pose is not finite (failed tracking?)")
    num_videos = first_pose.shape[0]
    return CoordinateStats(
        center=first_pose[:, :3, 3].clone(),
        scale=torch.full((num_videos,), float(unit)),
        rotation=first_pose[:, :3, :3].transpose(1, 2).contiguous(),
    )


def video_coordinate_stats(
    mode: str,
    coords: Tensor | None = None,
    valid: Tensor | None = None,
    poses: Tensor | None = None,
    fixed: CoordinateStats | None = None,
) -> CoordinateStats | None:
    """The statistics ``mode`` gives for a batch of V whole videos (or a stream's first frames).

    Args:
        mode: one of :data:`COORDINATE_NORMALIZATIONS`.
        coords: (V, ..., 3) patch coordinates ("per_video"; None: no points, no statistics).
        valid: (V, ...) bool or None.
        poses: (V, T, 4, 4) camera-to-world poses ("metric" uses frame 0 of each video).
        fixed: the user's statistics ("fixed"; one video's are repeated over V).
    Returns:
        :class:`CoordinateStats`, or None in "per_video" mode without points.
    """
    if mode == "per_video":
        return None if coords is None else compute_coordinate_stats(coords, valid)
    if mode == "metric":
        if poses is None:
            raise ValueError(
                "coordinate_normalization='metric' expresses points in the first camera's frame and "
                "needs camera poses: give each frame a pose (camera-to-world), or use 'per_video'"
            )
        check_shape("poses", poses, ("V", "T", 4, 4))
        return metric_coordinate_stats(poses[:, 0])
    if mode == "fixed":
        if fixed is None:
            raise ValueError(
                "coordinate_normalization='fixed' needs the statistics to use: pass coordinate_stats "
                "(CoordinateStats.fixed(center, scale), or --coordinate-stats 'x,y,z,scale' on the command line)"
            )
        num_videos = (coords if coords is not None else poses).shape[0] if (coords is not None or poses is not None) else 1
        return fixed.repeat(num_videos)
    raise ValueError(f"coordinate_normalization must be one of {COORDINATE_NORMALIZATIONS}, got {mode!r}")


def parse_coordinate_stats(text: str) -> CoordinateStats:
    """``"x,y,z,scale"`` (world units) -> fixed :class:`CoordinateStats` (command-line form)."""
    try:
        numbers = [float(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise ValueError(f"coordinate statistics must be 'x,y,z,scale' (four numbers), got {text!r}")
    return CoordinateStats.fixed(numbers[:3], numbers[3])


def check_metric_scale(source: object, mode: str) -> None:
    """Refuse ``"metric"`` normalisation for a geometry source without metric scale.

    A source declares its scale with a ``metric_scale`` attribute (``True``: metres, the default for
    depth sensors and CUT3R; ``False``: points known only up to scale, e.g. π³). Other modes and
    sources without the attribute pass.
    """
    if mode not in COORDINATE_NORMALIZATIONS:
        raise ValueError(f"coordinate_normalization must be one of {COORDINATE_NORMALIZATIONS}, got {mode!r}")
    if mode == "metric" and getattr(source, "metric_scale", True) is False:
        raise ValueError(
            f"coordinate_normalization='metric' needs metric geometry, but {source!r} has no metric "
            "scale (metric_scale=False: points up to scale, e.g. from π³); use "
            "coordinate_normalization='per_video', or a metric source (depth sensor, CUT3R)"
        )


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


def _rotate(stats: CoordinateStats, vectors: Tensor) -> Tensor:
    """``R v`` for vectors (V, ..., 3) with each video's rotation (identity when None)."""
    if stats.rotation is None:
        return vectors
    num_videos = vectors.shape[0]
    if stats.rotation.shape != (num_videos, 3, 3):
        raise ValueError(f"stats.rotation must have shape ({num_videos}, 3, 3), got {tuple(stats.rotation.shape)}")
    rotation = stats.rotation.to(vectors).reshape(num_videos, *(1,) * (vectors.dim() - 2), 3, 3)
    return (rotation @ vectors[..., None])[..., 0]


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
    normalized = (_rotate(stats, coords - center) / scale).clamp(-clip, clip)
    return torch.where(mask[..., None], normalized, torch.zeros_like(normalized))


def normalize_pose(pose: Tensor, stats: CoordinateStats, *, clip: float = DEFAULT_CLIP) -> Tensor:
    """Express camera-to-world poses in the normalised world frame of :func:`normalize_world_coords`.

    The rotation becomes ``R R_pose`` (unchanged without ``stats.rotation``); the translation
    becomes ``clamp(R (t − c) / s, −clip, clip)``.

    Args:
        pose: (V, ..., 4, 4).
        stats: center (V, 3), scale (V,).
    Returns:
        (V, ..., 4, 4).
    """
    check_shape("pose", pose, ("V", ..., 4, 4))
    center, scale = _broadcast_stats(stats, pose[..., 0], "pose", trailing=1)
    out = pose.clone()
    out[..., :3, 3] = (_rotate(stats, pose[..., :3, 3] - center) / scale).clamp(-clip, clip)
    if stats.rotation is not None:
        out[..., :3, :3] = torch.stack([_rotate(stats, pose[..., :3, column]) for column in range(3)], dim=-1)
    return out
