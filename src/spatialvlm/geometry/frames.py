"""Per-frame geometry: the :class:`FrameGeometry` record and its safetensors file format.

File schema (one file per video frame, ``frame_{index:05d}.safetensors``, index = video frame index;
more digits are fine past 99999). Every key is optional; tensors are float32 unless noted:

=================  ==============  ===========================================================
key                shape           meaning
=================  ==============  ===========================================================
camera_token       (Dv,)           the 3D model's camera / view token (CUT3R decoder token 0)
geometry_tokens    (M, Dg)         the 3D model's patch tokens (CUT3R: 27×27 = 729 × 768)
points             (H, W, 3)       per-pixel world coordinates, metres, all frames one world frame
confidence         (H, W)          per-pixel confidence (higher is better)
valid              (H, W)          bool, or uint8 0/1 (read back as bool)
depth              (H, W)          z-depth in metres, 0 where unknown
pose               (4, 4)          camera-to-world, OpenCV camera (x right, y down, z forward)
intrinsics         (3, 3)          pinhole intrinsics of the depth / point map pixels
=================  ==============  ===========================================================

When ``points`` is absent but ``depth``, ``pose`` and ``intrinsics`` are there, readers unproject
the depth (:func:`FrameGeometry.with_points`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .camera import unproject_depth
from .checks import GeometryError, check_geometry_values, check_shape

__all__ = ["FrameGeometry", "FRAME_FIELDS", "frame_filename", "save_frame_geometry", "load_frame_geometry", "stack_frames"]

FRAME_FIELDS = ("camera_token", "geometry_tokens", "points", "confidence", "valid", "depth", "pose", "intrinsics")

# Trailing shape of each field in one frame; strings are free sizes that must agree between fields.
_FIELD_SHAPES: dict[str, tuple[int | str, ...]] = {
    "camera_token": ("Dv",),
    "geometry_tokens": ("M", "Dg"),
    "points": ("H", "W", 3),
    "confidence": ("H", "W"),
    "valid": ("H", "W"),
    "depth": ("H", "W"),
    "pose": (4, 4),
    "intrinsics": (3, 3),
}


def frame_filename(index: int) -> str:
    """``frame_00042.safetensors`` for video frame 42."""
    if index < 0:
        raise ValueError(f"frame index must be ≥ 0, got {index}")
    return f"frame_{index:05d}.safetensors"


@dataclass
class FrameGeometry:
    """Everything a 3D source knows about one frame; every field is optional.

    A *batched* FrameGeometry (from :func:`stack_frames` or
    :func:`spatialvlm.geometry.read_frames`) holds the same fields with one leading frame axis T.

    Attributes:
        camera_token: (Dv,) camera / view token.
        geometry_tokens: (M, Dg) geometry (patch) tokens.
        points: (H, W, 3) world coordinates.
        confidence: (H, W) per-pixel confidence.
        valid: (H, W) bool.
        depth: (H, W) z-depth in metres.
        pose: (4, 4) camera-to-world (OpenCV camera).
        intrinsics: (3, 3).
    """

    camera_token: Tensor | None = None
    geometry_tokens: Tensor | None = None
    points: Tensor | None = None
    confidence: Tensor | None = None
    valid: Tensor | None = None
    depth: Tensor | None = None
    pose: Tensor | None = None
    intrinsics: Tensor | None = None

    def present(self) -> dict[str, Tensor]:
        """The fields that are set, by name."""
        return {name: getattr(self, name) for name in FRAME_FIELDS if getattr(self, name) is not None}

    def validate(self, batched: bool = False) -> "FrameGeometry":
        """Check every field's shape (and that H, W agree between pixel maps); returns self."""
        sizes: dict[str, int] = {}
        lead = 1 if batched else 0
        frames = None
        for name, tensor in self.present().items():
            pattern = _FIELD_SHAPES[name]
            check_shape(name, tensor, (("T",) if batched else ()) + pattern)
            if batched:
                if frames is not None and tensor.shape[0] != frames:
                    raise ValueError(f"{name} has {tensor.shape[0]} frames, other fields have {frames}")
                frames = tensor.shape[0]
            for want, got in zip(pattern, tensor.shape[lead:]):
                if isinstance(want, str):
                    if sizes.setdefault(want, got) != got:
                        raise ValueError(f"{name} has {want}={got} but another field has {want}={sizes[want]}")
        if self.valid is not None and self.valid.dtype != torch.bool:
            raise TypeError(f"valid must be bool, got {self.valid.dtype}")
        return self

    def with_points(self, *, max_depth: float | None = None) -> "FrameGeometry":
        """A copy with ``points`` (and ``valid``) unprojected from depth + pose + intrinsics when
        ``points`` is missing and those three are present; otherwise self unchanged.

        An existing ``valid`` mask is combined (AND) with the depth validity.
        """
        if self.points is not None or self.depth is None or self.pose is None or self.intrinsics is None:
            return self
        batched = self.depth.dim() == 3
        depth = self.depth if batched else self.depth[None]
        intrinsics = self.intrinsics if batched else self.intrinsics[None]
        pose = self.pose if batched else self.pose[None]
        points, valid = unproject_depth(depth, intrinsics, pose, max_depth=max_depth)
        if not batched:
            points, valid = points[0], valid[0]
        if self.valid is not None:
            valid = valid & self.valid
        return dataclasses.replace(self, points=points, valid=valid)

    def pixel_valid(self, confidence_threshold: float | None = None) -> Tensor | None:
        """Combined per-pixel mask: ``valid`` AND ``confidence ≥ threshold`` AND finite ``points``
        AND ``depth > 0``, using whichever of these are present; None when none is."""
        masks = []
        if self.valid is not None:
            masks.append(self.valid)
        if confidence_threshold is not None and self.confidence is not None:
            masks.append(self.confidence >= confidence_threshold)
        if self.points is not None:
            masks.append(torch.isfinite(self.points).all(-1))
        if self.depth is not None:
            masks.append(torch.isfinite(self.depth) & (self.depth > 0))
        if not masks:
            return None
        mask = masks[0]
        for extra in masks[1:]:
            mask = mask & extra
        return mask

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "FrameGeometry":
        """Move every field; ``dtype`` applies to floating fields only (``valid`` stays bool)."""
        moved = {
            name: t.to(device=device, dtype=dtype if t.is_floating_point() else None)
            for name, t in self.present().items()
        }
        return FrameGeometry(**moved)


def save_frame_geometry(path: str | Path, frame: FrameGeometry) -> None:
    """Write one frame in the schema above (floats as float32, ``valid`` as uint8 0/1).

    ``path`` is the file, usually ``directory / frame_filename(index)``; parent folders are created.
    """
    frame.validate()
    tensors = {}
    for name, tensor in frame.present().items():
        tensor = tensor.detach().cpu()
        tensor = tensor.to(torch.uint8) if name == "valid" else tensor.float()
        tensors[name] = tensor.contiguous()
    if not tensors:
        raise ValueError("frame has no field set; nothing to save")
    from safetensors.torch import save_file  # IO stays out of the import path of the tensor code

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "spatialvlm.frame_geometry", "version": "1"})


def load_frame_geometry(path: str | Path) -> FrameGeometry:
    """Read one frame file, checking what a file can get wrong (errors name the file and field).

    Unknown keys are an error (a typo would otherwise silently vanish), as are a file that is not
    safetensors (truncated, corrupt), an integer dtype for a float field (depth in millimetres?),
    NaN / inf poses and absurd magnitudes (:func:`~spatialvlm.geometry.checks.check_geometry_values`).
    A frame whose points are all invalid loads with a warning: its patches get no 3D input.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except SafetensorError as error:
        raise GeometryError(f"{path} is not a readable safetensors frame file (truncated or corrupt?): {error}") from error
    unknown = sorted(set(tensors) - set(FRAME_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed keys are {list(FRAME_FIELDS)}")
    for name, tensor in tensors.items():
        if name != "valid" and not tensor.is_floating_point():
            raise GeometryError(
                f"{name} in {path} is stored as {tensor.dtype}; frame files store {name} as float32"
                + (" metres (divide millimetre depth by 1000)" if name in ("depth", "points") else "")
            )
    fields = {name: (t.bool() if name == "valid" else t.float()) for name, t in tensors.items()}
    check_geometry_values(fields, str(path))
    frame = FrameGeometry(**fields).validate()
    if frame.points is not None or frame.depth is not None:
        valid = frame.pixel_valid()
        if valid is not None and not bool(valid.any()):
            warnings.warn(f"no valid points in frame {path}: every pixel is NaN, inf or masked invalid", stacklevel=2)
    return frame


def stack_frames(frames: Sequence[FrameGeometry]) -> FrameGeometry:
    """Stack frames into a batched :class:`FrameGeometry` with a leading frame axis (T, ...).

    A field is kept when every frame has it and dropped when none has it; a field present in only
    some frames is an error, as is a shape that differs between frames.
    """
    if not frames:
        raise ValueError("stack_frames needs at least one frame")
    stacked: dict[str, Tensor] = {}
    for name in FRAME_FIELDS:
        values = [getattr(frame, name) for frame in frames]
        have = [i for i, v in enumerate(values) if v is not None]
        if not have:
            continue
        if len(have) != len(values):
            missing = [i for i, v in enumerate(values) if v is None]
            raise ValueError(f"field {name!r} is present in frames {have[:5]} but missing in frames {missing[:5]}")
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"field {name!r} has different shapes across frames: {sorted(shapes)}")
        stacked[name] = torch.stack(values)
    return FrameGeometry(**stacked)
