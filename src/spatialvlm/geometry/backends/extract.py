"""Run a backend on sampled video frames and write our schema (the core of ``geometry extract``).

Video decoding stays outside (``spatialvlm.data`` samples the frames exactly as ``ask`` does);
this takes the frames and their video frame indices.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .common import BackendGeometry, write_geometry_folder
from .protocol import GeometryBackend

__all__ = ["extract_geometry"]


def extract_geometry(
    backend: GeometryBackend,
    frames: np.ndarray,
    frame_indices: Sequence[int],
    out_dir: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> BackendGeometry:
    """``backend.reconstruct(frames)`` written to ``out_dir`` under the frames' video indices.

    Args:
        backend: a loaded backend (``load`` already called).
        frames: (T, H, W, 3) uint8 RGB, the sampled frames in order.
        frame_indices: (T,) their video frame indices.
        out_dir: the geometry folder to write (``frame_XXXXX.safetensors`` + ``geometry.json``).
        extra: more fields for ``geometry.json`` (video, sampling, weights).
        progress: a line while the model runs and a bar while frames are written.
    Returns:
        The backend's output.
    """
    if len(frames) != len(frame_indices):
        raise ValueError(f"{len(frames)} frames but {len(frame_indices)} frame indices")
    if progress:
        print(f"running {backend.name} on {len(frames)} frames …", file=sys.stderr, flush=True)
    start = time.perf_counter()
    geometry = backend.reconstruct(frames)
    seconds = time.perf_counter() - start
    if len(geometry) != len(frames):
        raise ValueError(
            f"the {backend.name} backend returned geometry for {len(geometry)} of the {len(frames)} frames it was given; "
            "a backend must return one row per frame, in order"
        )
    info = {"backend_seconds": round(seconds, 3), **dict(extra or {})}
    write_geometry_folder(out_dir, geometry, frame_indices, extra=info, progress=progress)
    return geometry
