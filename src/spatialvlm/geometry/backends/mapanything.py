"""MapAnything (facebookresearch/map-anything): its per-view outputs → our schema, and a backend.

``MapAnything.infer(views, ...)`` (``mapanything/models/mapanything/model.py``, README) returns one
dict per view, batch first, all metric::

    pts3d         (B, H, W, 3)  world points (metres)
    conf          (B, H, W)     confidence
    mask          (B, H, W, 1)  combined validity mask
    camera_poses  (B, 4, 4)     camera-to-world, OpenCV
    intrinsics    (B, 3, 3)
    depth_z       (B, H, W, 1)  z-depth
    metric_scaling_factor (B,)  already applied

Saved with ``torch.save(predictions, ...)``. Its Gradio app (``scripts/gradio_app.py``) saves
``predictions.npz`` instead, stacked over views: ``extrinsic`` (S, 4, 4) — which, unlike VGGT's key
of the same name, holds the **camera-to-world** ``camera_poses`` — ``intrinsic``, ``world_points``
(recomputed from depth), ``conf``, ``depth`` (S, H, W, 1), ``final_mask``. Both read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..frames import FrameGeometry
from .common import BackendGeometry, as_tensor, load_saved_output, missing_required, to_first_camera
from .protocol import import_backend_module, register_backend, saved_frame_images

__all__ = ["MapAnythingBackend", "read_mapanything_output"]

# per-view key → (our field, rank of one view without its batch axis)
_VIEW_FIELDS = {
    "pts3d": ("points", 3),
    "conf": ("confidence", 2),
    "mask": ("valid", 2),
    "camera_poses": ("pose", 2),
    "intrinsics": ("intrinsics", 2),
    "depth_z": ("depth", 2),
}
# Gradio app npz key → our field
_GRADIO_FIELDS = {
    "world_points": "points",
    "conf": "confidence",
    "final_mask": "valid",
    "extrinsic": "pose",  # camera-to-world despite the name (gradio_app.py stores camera_poses)
    "intrinsic": "intrinsics",
    "depth": "depth",
}


def _view_field(value: Any, key: str, rank: int, where: str) -> Tensor:
    tensor = as_tensor(value, key, where)
    if key in ("mask", "depth_z") and tensor.shape[-1] == 1 and tensor.dim() == rank + 2:
        tensor = tensor[..., 0]
    if tensor.dim() == rank:
        tensor = tensor[None]
    if tensor.dim() != rank + 1 or tensor.shape[0] != 1:
        raise ValueError(f"{where}: {key} has shape {tuple(tensor.shape)}; expected one view with batch 1")
    return tensor


def read_mapanything_output(
    output: Sequence[Mapping[str, Any]] | Mapping[str, Any] | str | Path, *, where: str | None = None
) -> BackendGeometry:
    """MapAnything's ``infer`` list (or a ``.pt`` of it) or its Gradio ``predictions.npz`` (metric)."""
    if isinstance(output, (str, Path)):
        where = where or str(output)
        output = load_saved_output(output)
    where = where or "MapAnything output"
    fields: dict[str, Tensor] = {}
    if isinstance(output, Mapping):  # the Gradio app's stacked npz
        missing_required(output, ("world_points", "extrinsic"), where, "MapAnything's Gradio predictions.npz")
        for key, name in _GRADIO_FIELDS.items():
            if key in output:
                tensor = as_tensor(output[key], key, where)
                if key == "depth" and tensor.shape[-1] == 1 and tensor.dim() == 4:
                    tensor = tensor[..., 0]
                fields[name] = tensor
    elif isinstance(output, Sequence) and output and all(isinstance(v, Mapping) for v in output):
        missing_required(output[0], ("pts3d", "camera_poses"), f"{where} view 0", "a MapAnything view output")
        for key, (name, rank) in _VIEW_FIELDS.items():
            if key in output[0]:
                fields[name] = torch.cat([_view_field(v[key], key, rank, f"{where} view {i}") for i, v in enumerate(output)])
    else:
        raise ValueError(f"{where}: expected MapAnything's list of per-view dicts or its Gradio predictions.npz")
    if "valid" in fields:
        fields["valid"] = fields["valid"] > 0.5
    if fields["pose"].shape[-2:] == (3, 4):
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(fields["pose"].shape[0], 1, 4)
        fields["pose"] = torch.cat([fields["pose"], bottom], -2)
    fields["points"], fields["pose"] = to_first_camera(fields["points"], fields["pose"])
    geometry = FrameGeometry(**fields).validate(batched=True)
    return BackendGeometry(geometry, "mapanything", metric_scale=True, units="metres", notes=["MapAnything metric output"])


@register_backend("mapanything")
class MapAnythingBackend:
    """Runs MapAnything (``pip install git+https://github.com/facebookresearch/map-anything``).

    ``weights``: a folder for ``MapAnything.from_pretrained`` (facebook/map-anything or
    facebook/map-anything-apache downloaded). Frames go through its own ``load_images``; ``infer``
    runs with the README's settings (masking and edge removal on, bf16 autocast on GPUs).
    """

    name = "mapanything"
    install_hint = "pip install git+https://github.com/facebookresearch/map-anything"

    def __init__(self) -> None:
        self.model = None
        self.device = "cpu"

    def load(self, weights: str | Path, device: str) -> None:
        models = import_backend_module("mapanything.models", self)
        self.model = models.MapAnything.from_pretrained(str(weights)).to(device).eval()
        self.device = device

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        image_utils = import_backend_module("mapanything.utils.image", self)
        with saved_frame_images(frames) as (_, paths):
            views = image_utils.load_images(paths)
        with torch.no_grad():
            predictions = self.model.infer(
                views, memory_efficient_inference=True, use_amp=str(self.device).startswith("cuda"),
                amp_dtype="bf16", apply_mask=True, mask_edges=True,
            )
        return read_mapanything_output(predictions, where="MapAnything output")
