"""A picture of a video's geometry as the model gets it: point cloud from above and from the side,
with the camera path and each camera's video frame number.

Axes are the geometry folder's world frame (``spatialvlm geometry extract``: the first sampled
camera, OpenCV x right, y down, z forward). Top view: x across, z (forward) up the page. Side view:
z across, −y (up) up the page. Units come from ``geometry.json`` (metres or the model's relative unit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GeometryPicture", "plot_geometry"]

DEFAULT_MAX_POINTS = 30_000


@dataclass
class GeometryPicture:
    """What :func:`plot_geometry` drew.

    Attributes:
        path: the PNG.
        frame_indices: the video frames drawn.
        num_points: points drawn (after the valid mask and subsampling).
        units: the unit of the axes.
        metric_scale: whether the units are metres.
    """

    path: Path
    frame_indices: list[int]
    num_points: int
    units: str
    metric_scale: bool


def plot_geometry(
    directory: str | Path,
    path: str | Path,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    confidence_threshold: float | None = None,
    title: str | None = None,
) -> GeometryPicture:
    """Draw the geometry folder ``directory`` (``frame_XXXXX.safetensors`` files) into a PNG.

    Args:
        directory: a geometry folder (as written by ``spatialvlm geometry extract``).
        path: the PNG to write (parents created).
        max_points: points drawn at most (a fixed stride over the valid points keeps it fast).
        confidence_threshold: drop points below this confidence (None keeps every valid point).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..geometry import PrecomputedGeometrySource, read_frames

    directory = Path(directory)
    source = PrecomputedGeometrySource(directory)
    info_file = directory / "geometry.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    metric = bool(source.metric_scale)
    units = info.get("units", "metres" if metric else "relative units")
    unit_label = "m" if metric else "rel."
    indices = source.frame_indices
    frames = read_frames(source, indices)
    if frames.points is None and frames.pose is None:
        raise ValueError(f"{directory} has neither points nor poses (token-only geometry): nothing to draw")

    fig, (top, side) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
    drawn = 0
    if frames.points is not None:
        points = frames.points.numpy()
        valid = frames.pixel_valid(confidence_threshold)
        valid = np.ones(points.shape[:-1], bool) if valid is None else valid.numpy()
        frame_of = np.broadcast_to(np.arange(len(indices))[:, None, None], valid.shape)
        chosen, colour = points[valid], frame_of[valid]
        stride = max(1, int(np.ceil(len(chosen) / max_points)))
        chosen, colour = chosen[::stride], colour[::stride]
        drawn = len(chosen)
        for axis, (a, b) in ((top, (0, 2)), (side, (2, 1))):
            vertical = chosen[:, b] if b != 1 else -chosen[:, 1]
            cloud = axis.scatter(chosen[:, a], vertical, c=colour, cmap="viridis", s=1, alpha=0.5, linewidths=0,
                                 vmin=0, vmax=max(1, len(indices) - 1))
        if drawn:  # which frame each point came from, labelled with video frame numbers
            ticks = list(range(0, len(indices), max(1, len(indices) // 8)))
            bar = fig.colorbar(cloud, ax=[top, side], ticks=ticks, fraction=0.025, pad=0.02)
            bar.ax.set_yticklabels([str(indices[t]) for t in ticks])
            bar.set_label("video frame of the points")
    if frames.pose is not None:
        poses = frames.pose.numpy()
        centres, forward = poses[:, :3, 3], poses[:, :3, 2]
        for axis, (a, b) in ((top, (0, 2)), (side, (2, 1))):
            sign = -1.0 if b == 1 else 1.0
            axis.plot(centres[:, a], sign * centres[:, b], "-", color="crimson", lw=1.5, label="camera path")
            axis.scatter(centres[:, a], sign * centres[:, b], color="crimson", s=18, zorder=3)
            span = np.ptp(centres[:, [a, b]], axis=0).max() if len(centres) > 1 else 0.0
            arrow = 0.08 * (span if span > 0 else 1.0)
            axis.quiver(centres[:, a], sign * centres[:, b], forward[:, a], sign * forward[:, b], color="crimson",
                        angles="xy", scale_units="xy", scale=1 / arrow, width=0.003, zorder=3)
            label_every = max(1, len(indices) // 16)  # at most ~16 labels stay readable
            for row in range(0, len(indices), label_every):
                axis.annotate(str(indices[row]), (centres[row, a], sign * centres[row, b]), fontsize=7,
                              xytext=(3, 3), textcoords="offset points", color="crimson")
        top.legend(loc="best", fontsize=8)
    top.set(title="top view (from above)", xlabel=f"x right ({unit_label})", ylabel=f"z forward ({unit_label})")
    side.set(title="side view", xlabel=f"z forward ({unit_label})", ylabel=f"up = −y ({unit_label})")
    for axis in (top, side):
        axis.set_aspect("equal", adjustable="datalim")
        axis.grid(alpha=0.3)
    backend = info.get("backend", "geometry")
    scale = "metres" if metric else f"relative scale: {units}"
    fig.suptitle(title or f"{backend}: {len(indices)} frames, world = camera of frame {indices[0]} ({scale})", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return GeometryPicture(path=path, frame_indices=list(indices), num_points=drawn, units=units, metric_scale=metric)
