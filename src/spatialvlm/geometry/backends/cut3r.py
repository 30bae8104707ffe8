"""CUT3R (CUT3R/CUT3R): its outputs → our schema, and a backend that runs it.

``inference(views, model, device)`` (``src/dust3r/inference.py``, as ``demo.py`` calls it) returns
``outputs`` with ``outputs["pred"]``, one dict per view (batch 1)::

    pts3d_in_other_view  (1, H, W, 3)  points in the world frame (the first view's camera), metres
    conf                 (1, H, W)     their confidence (1 + exp(·) ≥ 1)
    pts3d_in_self_view   (1, H, W, 3)  camera-frame points (z = depth)
    conf_self            (1, H, W)
    camera_pose          (1, 7)        absT_quaR: camera-to-world t, quaternion (w, x, y, z)

``demo.py``'s ``prepare_output`` writes a folder: ``depth/NNNNNN.npy`` (z of the self-view
points), ``conf/NNNNNN.npy`` (conf_self), ``camera/NNNNNN.npz`` (``pose`` camera-to-world 4×4,
``intrinsics`` 3×3 from a Weiszfeld focal estimate, principal point (W//2, H//2)), ``color/``.
Both read here. CUT3R is metric. Its decoder tokens are not in ``pred``; VLM-3R's precomputed
features (camera token + 729 patch tokens per frame, ``.pt``) attach with ``features=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..camera import unproject_depth, vector_to_pose
from ..frames import FrameGeometry
from .common import BackendGeometry, as_tensor, drop_batch, load_saved_output, missing_required, to_first_camera
from .protocol import import_backend_module, register_backend, saved_frame_images

__all__ = ["CUT3RBackend", "read_cut3r_demo_folder", "read_cut3r_output"]


def _attach_features(fields: dict[str, Tensor], features: str | Path | None, frames: int, notes: list[str]) -> None:
    if features is None:
        return
    from ..vlm3r_features import VLM3RFeatureSource

    source = VLM3RFeatureSource(features)
    if source.patch_tokens.shape[0] != frames:
        raise ValueError(
            f"{features} holds tokens of {source.patch_tokens.shape[0]} frames but the CUT3R output has {frames}; "
            "both must come from the same sampled frames"
        )
    fields.update(camera_token=source.camera_tokens, geometry_tokens=source.patch_tokens)
    notes.append(f"tokens from VLM-3R features {Path(features).name}")


def read_cut3r_output(
    output: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path,
    *,
    features: str | Path | None = None,
    where: str | None = None,
) -> BackendGeometry:
    """CUT3R's ``outputs`` (dict with ``"pred"``), the ``pred`` list, or per-key stacked arrays
    (``pts3d_in_other_view`` (T, H, W, 3), ``conf`` (T, H, W), ``camera_pose`` (T, 7)), or a saved
    ``.pt`` / ``.npz`` of any of these, as our schema (metric)."""
    if isinstance(output, (str, Path)):
        where = where or str(output)
        output = load_saved_output(output)
    where = where or "CUT3R output"
    if isinstance(output, Mapping) and "pred" in output:
        output = output["pred"]
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        if not output:
            raise ValueError(f"{where}: no views")
        stacked = {
            key: torch.cat([_one_view(view[key], key, f"{where} view {i}") for i, view in enumerate(output)])
            for key in output[0] if key in _RANKS
        }
    elif isinstance(output, Mapping):
        stacked = {key: as_tensor(value, key, where) for key, value in output.items() if key in _RANKS}
    else:
        raise ValueError(f"{where}: expected CUT3R outputs (a dict with 'pred' or a list of per-view dicts)")
    missing_required(stacked, ("pts3d_in_other_view", "camera_pose"), where, "a CUT3R output")
    points = drop_batch(stacked["pts3d_in_other_view"], 4, "pts3d_in_other_view", where)
    poses = vector_to_pose(drop_batch(stacked["camera_pose"], 2, "camera_pose", where))
    fields: dict[str, Tensor] = {}
    if "conf" in stacked:
        fields["confidence"] = drop_batch(stacked["conf"], 3, "conf", where)
    if "pts3d_in_self_view" in stacked:
        fields["depth"] = drop_batch(stacked["pts3d_in_self_view"], 4, "pts3d_in_self_view", where)[..., 2]
    points, poses = to_first_camera(points, poses)
    fields.update(points=points, pose=poses)
    notes = ["points: pts3d_in_other_view; pose: camera_pose (absT_quaR)"]
    _attach_features(fields, features, points.shape[0], notes)
    geometry = FrameGeometry(**fields).validate(batched=True)
    return BackendGeometry(geometry, "cut3r", metric_scale=True, units="metres", notes=notes)


_RANKS = {"pts3d_in_other_view": 3, "pts3d_in_self_view": 3, "conf": 2, "conf_self": 2, "camera_pose": 1}


def _one_view(value: Any, key: str, where: str) -> Tensor:
    """One view's field with its batch axis (1, ...), checked."""
    tensor = as_tensor(value, key, where)
    if tensor.dim() == _RANKS[key]:
        tensor = tensor[None]
    if tensor.dim() != _RANKS[key] + 1 or tensor.shape[0] != 1:
        raise ValueError(f"{where}: {key} has shape {tuple(tensor.shape)}; expected one view (1, ...)")
    return tensor


def read_cut3r_demo_folder(directory: str | Path, *, features: str | Path | None = None) -> BackendGeometry:
    """The folder CUT3R's ``demo.py`` writes (``depth/``, ``conf/``, ``camera/``) as our schema."""
    directory = Path(directory)
    for sub in ("depth", "camera"):
        if not (directory / sub).is_dir():
            raise FileNotFoundError(f"{directory / sub} does not exist: not a CUT3R demo output folder (depth/, conf/, camera/)")
    names = sorted(p.stem for p in (directory / "depth").glob("*.npy"))
    if not names:
        raise FileNotFoundError(f"{directory / 'depth'} holds no .npy depth map")
    depth, poses, intrinsics, confidence = [], [], [], []
    for name in names:
        camera_file = directory / "camera" / f"{name}.npz"
        if not camera_file.is_file():
            raise FileNotFoundError(f"{camera_file} is missing (every depth map needs its camera)")
        with np.load(camera_file) as camera:
            missing_required(camera.files, ("pose", "intrinsics"), str(camera_file), "a CUT3R camera file")
            poses.append(as_tensor(camera["pose"], "pose", str(camera_file)))
            intrinsics.append(as_tensor(camera["intrinsics"], "intrinsics", str(camera_file)))
        depth.append(as_tensor(np.load(directory / "depth" / f"{name}.npy"), "depth", name))
        conf_file = directory / "conf" / f"{name}.npy"
        if conf_file.is_file():
            confidence.append(as_tensor(np.load(conf_file), "conf", str(conf_file)))
    depth_t, poses_t, intrinsics_t = torch.stack(depth), torch.stack(poses), torch.stack(intrinsics)
    points, valid = unproject_depth(depth_t, intrinsics_t, poses_t)
    points, poses_t = to_first_camera(points, poses_t)
    fields: dict[str, Tensor] = dict(points=points, valid=valid, depth=depth_t, pose=poses_t, intrinsics=intrinsics_t)
    if len(confidence) == len(names):
        fields["confidence"] = torch.stack(confidence)
    notes = [f"CUT3R demo folder {directory.name}: depth + camera files unprojected"]
    _attach_features(fields, features, len(names), notes)
    geometry = FrameGeometry(**fields).validate(batched=True)
    return BackendGeometry(geometry, "cut3r", metric_scale=True, units="metres", notes=notes)


@register_backend("cut3r")
class CUT3RBackend:
    """Runs CUT3R from a clone of its repository (it has no package).

    ``weights``: the checkpoint (``cut3r_512_dpt_4_64.pth``). The clone's root must be importable
    (``PYTHONPATH=/path/to/CUT3R``) so ``src.dust3r`` resolves, as ``demo.py`` arranges with
    ``add_ckpt_path``. Views are built as ``demo.py``'s ``prepare_input`` builds them (no ray maps,
    identity pose placeholders, update on, no reset) from CUT3R's own ``load_images`` at 512 px.
    """

    name = "cut3r"
    install_hint = "git clone https://github.com/CUT3R/CUT3R && pip install -r CUT3R/requirements.txt && export PYTHONPATH=$PWD/CUT3R"

    def __init__(self, size: int | str = 512) -> None:
        self.size = int(size)  # --option size=224 arrives as text (224 for CUT3R's linear-head model)
        self.model = None
        self.device = "cpu"

    def load(self, weights: str | Path, device: str) -> None:
        model_module = import_backend_module("src.dust3r.model", self)
        self.model = model_module.ARCroco3DStereo.from_pretrained(str(weights)).to(device).eval()
        self.device = device

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        image_module = import_backend_module("src.dust3r.utils.image", self)
        inference_module = import_backend_module("src.dust3r.inference", self)
        with saved_frame_images(frames) as (_, paths):
            images = image_module.load_images(paths, size=self.size, verbose=False)
        views = []
        for i, image in enumerate(images):
            img = image["img"]
            views.append({
                "img": img,
                "ray_map": torch.full((img.shape[0], 6, img.shape[-2], img.shape[-1]), torch.nan),
                "true_shape": torch.from_numpy(image["true_shape"]),
                "idx": i,
                "instance": str(i),
                "camera_pose": torch.eye(4, dtype=torch.float32)[None],
                "img_mask": torch.tensor(True)[None],
                "ray_mask": torch.tensor(False)[None],
                "update": torch.tensor(True)[None],
                "reset": torch.tensor(False)[None],
            })
        with torch.no_grad():
            outputs, _ = inference_module.inference(views, self.model, self.device)
        return read_cut3r_output(outputs, where="CUT3R output")
