"""π³ / Pi3X (yyfz/Pi3): its output dict → our schema, and a backend that runs it.

``Pi3.forward(imgs)`` (``pi3/models/pi3.py``; imgs (B, N, 3, H, W) in [0, 1]) returns::

    points        (B, N, H, W, 3)  world points = camera_poses · local_points
    local_points  (B, N, H, W, 3)  camera-frame points (z = depth)
    conf          (B, N, H, W, 1)  confidence *logits* (README: apply sigmoid; example.py keeps > 0.1)
    camera_poses  (B, N, 4, 4)     camera-to-world, OpenCV

π³ is permutation-equivariant: its world frame is its own choice and its scale is relative.
Pi3X (``pi3/models/pi3x.py``) adds ``metric`` (B,), a scale it has already multiplied into points,
local points and translations ("approximate metric scale", README), and ``rays``. So a dict with
``metric`` reads as metric, one without as relative. Saved with ``torch.save(res, ...)`` or
``np.savez(..., **res)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..frames import FrameGeometry
from .common import BackendGeometry, as_tensor, drop_batch, load_saved_output, missing_required, to_first_camera
from .protocol import import_backend_module, register_backend, saved_frame_images

__all__ = ["Pi3Backend", "read_pi3_output", "PI3_CONFIDENCE_THRESHOLD"]

PI3_CONFIDENCE_THRESHOLD = 0.1
"""π³'s example.py keeps points with sigmoid(conf) > 0.1; our ``valid`` mask is that."""


def read_pi3_output(output: Mapping[str, Any] | str | Path, *, where: str | None = None) -> BackendGeometry:
    """π³ / Pi3X output (dict or a saved ``.pt`` / ``.npz``) as our schema.

    ``confidence`` is ``sigmoid(conf)`` in [0, 1]; ``valid`` is ``confidence > 0.1`` (π³'s example);
    ``depth`` is the z of ``local_points``. No intrinsics (π³ predicts none) and no tokens.
    """
    if isinstance(output, (str, Path)):
        where = where or str(output)
        output = load_saved_output(output)
    where = where or "π³ output"
    if not isinstance(output, Mapping):
        raise ValueError(f"{where}: expected π³'s output dict, got {type(output).__name__}")
    missing_required(output, ("points", "camera_poses"), where, "a π³ output (points, local_points, conf, camera_poses)")
    points = drop_batch(as_tensor(output["points"], "points", where), 4, "points", where)
    poses = drop_batch(as_tensor(output["camera_poses"], "camera_poses", where), 3, "camera_poses", where)
    fields: dict[str, Tensor] = {}
    if "conf" in output:
        logits = as_tensor(output["conf"], "conf", where)
        if logits.shape[-1] == 1 and logits.dim() in (4, 5):
            logits = logits[..., 0]
        confidence = torch.sigmoid(drop_batch(logits, 3, "conf", where))
        fields.update(confidence=confidence, valid=confidence > PI3_CONFIDENCE_THRESHOLD)
    if "local_points" in output:
        local = drop_batch(as_tensor(output["local_points"], "local_points", where), 4, "local_points", where)
        fields["depth"] = local[..., 2]
    points, poses = to_first_camera(points, poses)
    fields.update(points=points, pose=poses)
    geometry = FrameGeometry(**fields).validate(batched=True)
    metric = "metric" in output
    notes = ["confidence = sigmoid(conf logits); valid = confidence > 0.1 (π³ example.py)"]
    if metric:
        scale = as_tensor(output["metric"], "metric", where).flatten()
        notes.append(f"Pi3X metric head: approximate metres (scale factor {float(scale[0]):.4g} already applied)")
    units = "metres (approximate, Pi3X metric head)" if metric else "π³ relative unit (not metres)"
    return BackendGeometry(geometry, "pi3", metric_scale=metric, units=units, notes=notes)


@register_backend("pi3")
class Pi3Backend:
    """Runs π³ or Pi3X (``pip install git+https://github.com/yyfz/Pi3``).

    ``weights``: a folder for ``from_pretrained`` (yyfz233/Pi3 or yyfz233/Pi3X downloaded) or a
    ``model.safetensors`` file for ``Pi3()`` / ``Pi3X()`` + ``load_state_dict`` (as example.py).
    ``variant``: ``"pi3x"`` (the README's recommendation) or ``"pi3"``. Frames go through π³'s own
    ``load_images_as_tensor`` (its resize to a multiple of 14).
    """

    name = "pi3"
    install_hint = "pip install git+https://github.com/yyfz/Pi3"

    def __init__(self, variant: str = "pi3x") -> None:
        if variant not in ("pi3", "pi3x"):
            raise ValueError(f"π³ variant must be 'pi3' or 'pi3x', got {variant!r}")
        self.variant = variant
        self.model = None
        self.device = "cpu"

    def load(self, weights: str | Path, device: str) -> None:
        module = import_backend_module(f"pi3.models.{self.variant}", self)
        cls = module.Pi3X if self.variant == "pi3x" else module.Pi3
        weights = Path(weights)
        if weights.is_dir():
            model = cls.from_pretrained(str(weights))
        else:
            from safetensors.torch import load_file

            state = load_file(str(weights)) if weights.suffix == ".safetensors" else torch.load(weights, map_location="cpu", weights_only=True)
            model = cls()
            model.load_state_dict(state)
        self.model = model.to(device).eval()
        self.device = device

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        basic = import_backend_module("pi3.utils.basic", self)
        with saved_frame_images(frames) as (folder, _):
            imgs = basic.load_images_as_tensor(str(folder), interval=1, verbose=False).to(self.device)  # (N, 3, H, W)
        if imgs.shape[0] != frames.shape[0]:
            raise ValueError(f"π³ loaded {imgs.shape[0]} of the {frames.shape[0]} frames written for it")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(self.device).startswith("cuda"))
        with torch.no_grad(), autocast:
            output = self.model(imgs[None])
        output = {k: v.float() if isinstance(v, Tensor) and v.is_floating_point() else v for k, v in dict(output).items()}
        return read_pi3_output(output, where=f"{self.variant} output")
