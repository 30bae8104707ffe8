"""Depth Anything 3 (ByteDance-Seed/Depth-Anything-3): its npz export → our schema, and a backend.

``DepthAnything3.inference(images, ..., export_format="npz" | "mini_npz")`` writes
``exports/npz/results.npz`` (``utils/export/npz.py``) with::

    depth       (N, H, W)     z-depth at the processed resolution (504 px long side by default)
    conf        (N, H, W)     optional
    extrinsics  (N, 3, 4)     optional, world-to-camera (OpenCV); (N, 4, 4) is accepted too
    intrinsics  (N, 3, 3)     optional, of the processed images
    image       (N, H, W, 3)  uint8, "npz" only

The ``Prediction`` it returns (``specs.py``) has the same fields as attributes plus ``is_metric``.
The npz does not store ``is_metric``: depth is metric only for the metric / nested models (or after
``align_to_input_ext_scale`` with metric input poses), so reading an npz takes ``metric_scale``
from the caller (default False: relative). Without extrinsics and intrinsics there are no points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..camera import invert_pose, unproject_depth
from ..frames import FrameGeometry
from .common import BackendGeometry, as_tensor, drop_batch, load_saved_output, missing_required, to_first_camera
from .protocol import import_backend_module, register_backend

__all__ = ["DepthAnything3Backend", "read_depth_anything3"]


def read_depth_anything3(
    output: Mapping[str, Any] | Any | str | Path, *, metric_scale: bool | None = None, where: str | None = None
) -> BackendGeometry:
    """Depth Anything 3's npz export, or its ``Prediction`` object, as our schema.

    Args:
        output: ``results.npz`` path, a dict of its arrays, or a ``Prediction``.
        metric_scale: whether depth is in metres; None takes ``Prediction.is_metric`` when there is
            one and False for an npz (which does not record it).
    """
    if isinstance(output, (str, Path)):
        where = where or str(output)
        output = load_saved_output(output)
    where = where or "Depth Anything 3 output"
    if not isinstance(output, Mapping):  # a Prediction dataclass
        if metric_scale is None and getattr(output, "is_metric", None) is not None:
            metric_scale = bool(output.is_metric)
        output = {k: getattr(output, k) for k in ("depth", "conf", "extrinsics", "intrinsics") if getattr(output, k, None) is not None}
    missing_required(output, ("depth",), where, "a Depth Anything 3 export (depth, conf, extrinsics, intrinsics)")
    metric_scale = bool(metric_scale)
    depth = drop_batch(as_tensor(output["depth"], "depth", where), 3, "depth", where)
    fields: dict[str, Tensor] = {"depth": depth}
    if "conf" in output:
        fields["confidence"] = drop_batch(as_tensor(output["conf"], "conf", where), 3, "conf", where)
    notes = []
    if "extrinsics" in output and "intrinsics" in output:
        extrinsics = drop_batch(as_tensor(output["extrinsics"], "extrinsics", where), 3, "extrinsics", where)
        if extrinsics.shape[-2:] == (3, 4):
            extrinsics = torch.cat([extrinsics, torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(extrinsics.shape[0], 1, 4)], -2)
        intrinsics = drop_batch(as_tensor(output["intrinsics"], "intrinsics", where), 3, "intrinsics", where)
        poses = invert_pose(extrinsics)  # DA3 stores world-to-camera
        points, valid = unproject_depth(depth, intrinsics, poses)
        points, poses = to_first_camera(points, poses)
        fields.update(points=points, valid=valid, pose=poses, intrinsics=intrinsics)
    else:
        notes.append("no extrinsics / intrinsics in the export: depth only, no points")
    geometry = FrameGeometry(**fields).validate(batched=True)
    units = "metres" if metric_scale else "Depth Anything 3 relative unit (not metres)"
    return BackendGeometry(geometry, "depth_anything3", metric_scale=metric_scale, units=units, notes=notes)


@register_backend("depth_anything3")
class DepthAnything3Backend:
    """Runs Depth Anything 3 (``pip install depth-anything-3``; it needs torchvision and xformers).

    ``weights``: a folder for ``DepthAnything3.from_pretrained`` (e.g. DA3NESTED-GIANT-LARGE,
    metric; DA3-LARGE, relative). Frames go in as RGB arrays (``inference`` accepts them); the
    returned ``Prediction.is_metric`` decides the scale.
    """

    name = "depth_anything3"
    install_hint = "pip install depth-anything-3"

    def __init__(self) -> None:
        self.model = None

    def load(self, weights: str | Path, device: str) -> None:
        api = import_backend_module("depth_anything_3.api", self)
        self.model = api.DepthAnything3.from_pretrained(str(weights)).to(device).eval()

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        prediction = self.model.inference(list(frames))
        return read_depth_anything3(prediction, where="Depth Anything 3 output")
