"""What every 3D-model reader returns, and the one place frames, scale and world frame are fixed.

Each reader (``vggt.py``, ``pi3.py``, ...) turns one model's saved output into a
:class:`BackendGeometry`: a batched :class:`~spatialvlm.geometry.FrameGeometry` (one row per frame
the model saw, in the order it saw them) plus what the numbers mean:

- **world frame**: the camera of the first row (the first sampled frame). Every reader re-expresses
  points and poses there (:func:`to_first_camera`), whatever frame the model itself used (π³ and
  MapAnything choose their own), so two backends on the same frames agree up to scale.
- **units**: ``metric_scale`` True means metres; False means the model's own relative unit (VGGT,
  π³ without a metric head, Depth Anything 3 without a metric model). A folder written from a
  relative source records ``"metric_scale": false`` in ``geometry.json`` and
  ``coordinate_normalization="metric"`` refuses it with a message.
- **frames**: rows carry no video frame index; :func:`match_rows_to_frames` ties them to the frames
  ``spatialvlm ask`` samples and says which ones are missing when the counts differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..camera import invert_pose, transform_points
from ..checks import GeometryError
from ..frames import FrameGeometry, frame_filename, save_frame_geometry

__all__ = [
    "BackendGeometry",
    "GEOMETRY_INFO_NAME",
    "as_tensor",
    "drop_batch",
    "load_saved_output",
    "match_rows_to_frames",
    "missing_required",
    "to_first_camera",
    "write_geometry_folder",
]

GEOMETRY_INFO_NAME = "geometry.json"
"""The file beside the frame files that records backend, scale, units, world frame and indices."""


@dataclass
class BackendGeometry:
    """One 3D model's output on T frames, in our schema.

    Attributes:
        frames: batched FrameGeometry (T, ...); world frame = camera of row 0.
        backend: the model's name (``"vggt"``, ``"pi3"``, ...).
        metric_scale: True when points, depth and translations are metres.
        units: ``"metres"`` or a phrase naming the relative unit.
        notes: anything a user should know about this output (one line each).
    """

    frames: FrameGeometry
    backend: str
    metric_scale: bool
    units: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        for tensor in self.frames.present().values():
            return int(tensor.shape[0])
        return 0


def as_tensor(value: Any, name: str, where: str) -> Tensor:
    """A float32 (or bool) tensor from a numpy array / tensor, naming the field on failure."""
    if isinstance(value, Tensor):
        tensor = value.detach().cpu()
    else:
        try:
            array = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - anything unreadable is the same user error
            raise GeometryError(f"{where}: field {name!r} is not an array ({error})") from error
        if array.dtype == object:
            raise GeometryError(f"{where}: field {name!r} holds Python objects, not numbers")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.bool:
        return tensor
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise GeometryError(f"{where}: field {name!r} has dtype {tensor.dtype}, expected numbers")
    return tensor.float()


def drop_batch(tensor: Tensor, frame_dims: int, name: str, where: str) -> Tensor:
    """Remove a leading batch axis of size 1 (models return (B, S, ...)); check the rank."""
    if tensor.dim() == frame_dims + 1:
        if tensor.shape[0] != 1:
            raise GeometryError(
                f"{where}: {name} has a batch of {tensor.shape[0]} scenes {tuple(tensor.shape)}; save one video per file"
            )
        tensor = tensor[0]
    if tensor.dim() != frame_dims:
        raise GeometryError(f"{where}: {name} has shape {tuple(tensor.shape)}, expected {frame_dims} dims (frames first)")
    return tensor


def load_saved_output(path: str | Path) -> Any:
    """A model output saved with ``np.savez`` / ``np.save`` (``.npz`` / ``.npy``) or ``torch.save``
    (``.pt`` / ``.pth``): a dict of arrays (npz), or whatever the ``.pt`` holds (a dict or a list
    of per-view dicts), with nothing executed from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model output {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    if path.suffix in (".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"{path}: expected a .npz (np.savez) or .pt (torch.save) file, got {path.suffix or 'no suffix'}")


def to_first_camera(points: Tensor | None, poses: Tensor) -> tuple[Tensor | None, Tensor]:
    """Re-express world points and camera-to-world poses in the frame of camera 0.

    Args:
        points: (T, H, W, 3) world points, or None.
        poses: (T, 4, 4) camera-to-world.
    Returns:
        points (T, H, W, 3) and poses (T, 4, 4) with ``poses[0] = I``.
    """
    world_to_first = invert_pose(poses[0].double())
    moved_poses = (world_to_first @ poses.double()).float()
    moved_points = None
    if points is not None:
        moved_points = transform_points(world_to_first.float(), points)
    return moved_points, moved_poses


def missing_required(data: Mapping[str, Any], keys: Sequence[str], where: str, what: str) -> None:
    """Raise naming the missing keys and the keys that are there."""
    missing = [key for key in keys if key not in data]
    if missing:
        raise GeometryError(f"{where} is not {what}: missing {missing}; it holds {sorted(data)[:12]}")


def match_rows_to_frames(count: int, frame_indices: Sequence[int], where: str) -> list[int]:
    """The video frame index of each of ``count`` rows, which must be the frames asked for.

    Raises a ValueError naming the asked-for frames the rows cannot cover when the counts differ.
    """
    indices = [int(i) for i in frame_indices]
    if count == len(indices):
        return indices
    if count < len(indices):
        raise ValueError(
            f"{where} holds {count} frames but {len(indices)} were asked for (video frames {_short(indices)}); "
            f"frames {_short(indices[count:])} would have no geometry — run the model on the sampled frames "
            "(spatialvlm geometry extract) or ask for the frames the file was made from (--frame-indices)"
        )
    raise ValueError(
        f"{where} holds {count} frames, more than the {len(indices)} asked for (video frames {_short(indices)}); "
        "give the video frame index of every row with --frame-indices"
    )


def _short(indices: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return f"[{shown}{', …' if len(indices) > limit else ''}]"


def write_geometry_folder(
    directory: str | Path,
    geometry: BackendGeometry,
    frame_indices: Sequence[int],
    *,
    extra: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Write ``frame_XXXXX.safetensors`` per row (named by its video frame index) and
    ``geometry.json`` (backend, metric_scale, units, world frame, frame indices, ``extra``).

    Returns the folder. Existing frame files of other indices in the folder are an error (a folder
    must describe one extraction).
    """
    from tqdm.auto import tqdm  # the algorithm folders import only torch/numpy at module level

    directory = Path(directory)
    indices = match_rows_to_frames(len(geometry), frame_indices, f"{geometry.backend} output")
    if len(set(indices)) != len(indices):
        raise ValueError(f"frame indices repeat ({_short(indices)}); each row needs its own video frame")
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    stale = sorted(
        p.name for p in directory.glob("frame_*.safetensors") if p.name not in {frame_filename(i) for i in indices}
    )
    if stale:
        raise ValueError(f"{directory} already holds other frames ({stale[:3]}); write into an empty folder")
    fields = geometry.frames.present()
    for row, index in enumerate(tqdm(indices, desc=f"writing {geometry.backend} geometry", disable=not progress)):
        save_frame_geometry(directory / frame_filename(index), FrameGeometry(**{k: v[row] for k, v in fields.items()}))
    info = {
        "format": "spatialvlm.geometry",
        "backend": geometry.backend,
        "metric_scale": geometry.metric_scale,
        "units": geometry.units,
        "world_frame": f"camera of video frame {indices[0]} (the first sampled frame), OpenCV axes",
        "frame_indices": indices,
        "notes": list(geometry.notes),
        **dict(extra or {}),
    }
    (directory / GEOMETRY_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return directory
