"""VGGT (facebookresearch/vggt): its predictions → our schema, and a backend that runs it.

What ``VGGT.forward(images)`` returns (``vggt/models/vggt.py``), batch first::

    pose_enc           (B, S, 9)        absT_quaR_FoV: world-to-camera t (3), quaternion XYZW (4), fov_h, fov_w
    depth              (B, S, H, W, 1)  z-depth, VGGT's relative unit
    depth_conf         (B, S, H, W)     1 + exp(·) ≥ 1
    world_points       (B, S, H, W, 3)  point-head world points
    world_points_conf  (B, S, H, W)
    images             (B, S, 3, H, W)

Its demo (``demo_gradio.py``) saves ``predictions.npz`` with the batch axis squeezed and adds
``extrinsic`` (S, 3, 4) world-to-camera (OpenCV) and ``intrinsic`` (S, 3, 3) from
``pose_encoding_to_extri_intri`` (principal point at (W/2, H/2)). Both layouts read here. The
aggregator's tokens, when a user saved them, are ``aggregated_tokens`` (S, P, 2C) of one layer
(the last by convention, as Spatial-MLLM / VG-LLM use) with ``patch_start_idx`` (5: 1 camera token +
4 register tokens) telling where the patch tokens start; token 0 is the camera token.

VGGT's world frame is the first camera and its scale is relative (scenes are normalised to unit
average point distance in training), so ``metric_scale`` is False.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..camera import invert_pose, make_intrinsics, quaternion_to_matrix, unproject_depth
from ..frames import FrameGeometry
from .common import BackendGeometry, as_tensor, drop_batch, load_saved_output, missing_required, to_first_camera
from .protocol import import_backend_module, register_backend, saved_frame_images

__all__ = ["VGGTBackend", "read_vggt_predictions", "vggt_pose_encoding_to_extrinsics"]

POINTS_FROM = ("depth", "point_head")


def vggt_pose_encoding_to_extrinsics(pose_enc: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """VGGT's ``absT_quaR_FoV`` (S, 9) → world-to-camera (S, 3, 4) and intrinsics (S, 3, 3).

    The quaternion is scalar-last (XYZW, ``vggt/utils/rotation.py``); focal lengths come from the
    field of view, ``f = (size / 2) / tan(fov / 2)``; the principal point is the image centre.
    """
    height, width = image_size
    translation, quat_xyzw = pose_enc[..., :3], pose_enc[..., 3:7]
    rotation = quaternion_to_matrix(quat_xyzw[..., [3, 0, 1, 2]])  # ours is scalar-first (w, x, y, z)
    fy = (height / 2.0) / torch.tan(pose_enc[..., 7] / 2.0)
    fx = (width / 2.0) / torch.tan(pose_enc[..., 8] / 2.0)
    intrinsics = make_intrinsics(fx, fy, torch.full_like(fx, width / 2.0), torch.full_like(fy, height / 2.0))
    return torch.cat([rotation, translation[..., None]], -1), intrinsics


def _world_to_camera_to_pose(extrinsic: Tensor) -> Tensor:
    """(S, 3, 4) or (S, 4, 4) world-to-camera → (S, 4, 4) camera-to-world."""
    if extrinsic.shape[-2:] == (3, 4):
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(*extrinsic.shape[:-2], 1, 4)
        extrinsic = torch.cat([extrinsic, bottom], -2)
    return invert_pose(extrinsic)


def read_vggt_predictions(
    predictions: Mapping[str, Any] | str | Path, *, points_from: str = "depth", where: str | None = None
) -> BackendGeometry:
    """VGGT predictions (the forward's dict, or its demo's ``predictions.npz``) as our schema.

    Args:
        predictions: the dict (tensors or arrays, batch axis optional) or a ``.npz`` / ``.pt`` path.
        points_from: ``"depth"`` unprojects depth with the predicted cameras (VGGT's README finds this
            branch more accurate than the point head); ``"point_head"`` uses ``world_points``.
    Returns:
        BackendGeometry, world = first camera, ``metric_scale=False``.
    """
    if points_from not in POINTS_FROM:
        raise ValueError(f"points_from must be one of {POINTS_FROM}, got {points_from!r}")
    if isinstance(predictions, (str, Path)):
        where = where or str(predictions)
        predictions = load_saved_output(predictions)
    where = where or "VGGT predictions"
    if not isinstance(predictions, Mapping):
        raise ValueError(f"{where}: expected a dict of VGGT predictions, got {type(predictions).__name__}")
    missing_required(predictions, ("depth",), where, "a VGGT prediction (depth, depth_conf, extrinsic / pose_enc, ...)")
    depth = as_tensor(predictions["depth"], "depth", where)
    if depth.shape[-1] == 1 and depth.dim() in (4, 5):
        depth = depth[..., 0]  # (S, H, W, 1) → (S, H, W)
    depth = drop_batch(depth, 3, "depth", where)
    frames, height, width = depth.shape
    if "extrinsic" in predictions and "intrinsic" in predictions:
        extrinsic = drop_batch(as_tensor(predictions["extrinsic"], "extrinsic", where), 3, "extrinsic", where)
        intrinsics = drop_batch(as_tensor(predictions["intrinsic"], "intrinsic", where), 3, "intrinsic", where)
    elif "pose_enc" in predictions:
        pose_enc = drop_batch(as_tensor(predictions["pose_enc"], "pose_enc", where), 2, "pose_enc", where)
        extrinsic, intrinsics = vggt_pose_encoding_to_extrinsics(pose_enc, (height, width))
    else:
        raise ValueError(f"{where}: no cameras: needs extrinsic + intrinsic (demo npz) or pose_enc (model output)")
    if extrinsic.shape[0] != frames:
        raise ValueError(f"{where}: {extrinsic.shape[0]} cameras but {frames} depth maps")
    poses = _world_to_camera_to_pose(extrinsic)
    confidence = None
    if "depth_conf" in predictions:
        confidence = drop_batch(as_tensor(predictions["depth_conf"], "depth_conf", where), 3, "depth_conf", where)
    valid = None
    if points_from == "depth":
        points, valid = unproject_depth(depth, intrinsics, poses)  # valid: finite depth > 0
    else:
        missing_required(predictions, ("world_points",), where, "a VGGT prediction with a point head")
        points = drop_batch(as_tensor(predictions["world_points"], "world_points", where), 4, "world_points", where)
        if "world_points_conf" in predictions:
            confidence = drop_batch(
                as_tensor(predictions["world_points_conf"], "world_points_conf", where), 3, "world_points_conf", where
            )
    points, poses = to_first_camera(points, poses)
    fields: dict[str, Tensor] = dict(points=points, depth=depth, pose=poses, intrinsics=intrinsics)
    if confidence is not None:
        fields["confidence"] = confidence
    if valid is not None:
        fields["valid"] = valid
    notes = [f"points from {'depth + cameras' if points_from == 'depth' else 'the point head'}"]
    if "aggregated_tokens" in predictions:
        tokens = drop_batch(as_tensor(predictions["aggregated_tokens"], "aggregated_tokens", where), 3, "aggregated_tokens", where)
        start = int(np.asarray(predictions.get("patch_start_idx", 5)))
        fields["camera_token"] = tokens[:, 0]
        fields["geometry_tokens"] = tokens[:, start:]
        notes.append(f"tokens: aggregator output, camera token 0, patch tokens from {start}")
    geometry = FrameGeometry(**fields).validate(batched=True)
    return BackendGeometry(geometry, "vggt", metric_scale=False, units="VGGT relative unit (not metres)", notes=notes)


@register_backend("vggt")
class VGGTBackend:
    """Runs ``vggt`` (``pip install git+https://github.com/facebookresearch/vggt``).

    ``weights``: a folder for ``VGGT.from_pretrained`` (facebook/VGGT-1B downloaded) or the
    ``model.pt`` state dict. Frames go through VGGT's own ``load_and_preprocess_images`` (width
    518, height to a multiple of 14). The aggregator's last-layer tokens are kept (a forward hook;
    no second pass) unless ``keep_tokens=false``; ``points_from`` as in :func:`read_vggt_predictions`.
    """

    name = "vggt"
    install_hint = "pip install git+https://github.com/facebookresearch/vggt"

    def __init__(self, points_from: str = "depth", keep_tokens: bool | str = True) -> None:
        if points_from not in POINTS_FROM:
            raise ValueError(f"points_from must be one of {POINTS_FROM}, got {points_from!r}")
        self.points_from = points_from
        # 925 × 2048 float32 tokens are 7.6 MB per 518×350 frame; keep_tokens=false skips them
        self.keep_tokens = str(keep_tokens).lower() not in ("false", "0", "no")
        self.model = None
        self.device = "cpu"

    def load(self, weights: str | Path, device: str) -> None:
        vggt_model = import_backend_module("vggt.models.vggt", self)
        weights = Path(weights)
        if weights.is_dir():
            model = vggt_model.VGGT.from_pretrained(str(weights))
        else:
            model = vggt_model.VGGT()
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model = model.to(device).eval()
        self.device = device

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        load_fn = import_backend_module("vggt.utils.load_fn", self)
        pose_enc_module = import_backend_module("vggt.utils.pose_enc", self)
        captured: dict[str, Any] = {}

        def capture(module, inputs, output) -> None:
            tokens_list, start = output[0], output[1]
            captured["aggregated_tokens"], captured["patch_start_idx"] = tokens_list[-1], start

        hook = self.model.aggregator.register_forward_hook(capture) if self.keep_tokens else None
        try:
            with saved_frame_images(frames) as (_, paths):
                images = load_fn.load_and_preprocess_images(paths).to(self.device)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(self.device).startswith("cuda"))
            with torch.no_grad(), autocast:
                predictions = dict(self.model(images))
        finally:
            if hook is not None:
                hook.remove()
        extrinsic, intrinsic = pose_enc_module.pose_encoding_to_extri_intri(predictions["pose_enc"], images.shape[-2:])
        predictions.update(extrinsic=extrinsic, intrinsic=intrinsic, **captured)
        predictions = {k: (v.float() if isinstance(v, Tensor) and v.is_floating_point() else v) for k, v in predictions.items()}
        return read_vggt_predictions(predictions, points_from=self.points_from, where="VGGT output")
