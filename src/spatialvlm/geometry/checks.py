"""Shape checks that name the tensor and the shape it should have, and value checks of geometry."""

from __future__ import annotations

from types import EllipsisType

import torch
from torch import Tensor

Dim = int | str | None | EllipsisType
"""An expected dimension: an exact size, a name or None (any size), or ``...`` (any leading dims)."""


def _format(expected: tuple[Dim, ...]) -> str:
    parts = ["..." if d is Ellipsis else ("*" if d is None else str(d)) for d in expected]
    return "(" + ", ".join(parts) + ")"


def check_shape(name: str, tensor: object, expected: tuple[Dim, ...]) -> None:
    """Raise a ValueError naming ``name`` unless ``tensor`` has the ``expected`` shape.

    ``expected`` holds ints (exact sizes), strings or None (any size; a string documents the dim)
    and at most one ``...`` standing for any number of dims.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {_format(expected)}, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    if Ellipsis in expected:
        split = expected.index(Ellipsis)
        prefix, suffix = expected[:split], expected[split + 1 :]
        ok = len(shape) >= len(prefix) + len(suffix)
        pairs = list(zip(prefix, shape[: len(prefix)])) + list(zip(suffix, shape[len(shape) - len(suffix) :]))
    else:
        ok = len(shape) == len(expected)
        pairs = list(zip(expected, shape))
    ok = ok and all(not isinstance(want, int) or want == got for want, got in pairs)
    if not ok:
        raise ValueError(f"{name} must have shape {_format(expected)}, got {shape}")


def check_bool(name: str, tensor: Tensor) -> None:
    """Raise a TypeError unless ``tensor`` is a bool mask."""
    if tensor.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got dtype {tensor.dtype}")


class GeometryError(ValueError):
    """Geometry with values no 3D source produces (NaN pose, 1e30 m points); names field and frame."""


MAX_ABS_METRES = 1e5
"""Largest coordinate or depth accepted, in metres (100 km): larger values are a unit or export bug."""


def check_geometry_values(fields: dict[str, Tensor], where: str) -> None:
    """Raise :class:`GeometryError` naming the field and ``where`` (the frame file) for values no
    3D source produces.

    - ``pose``, ``intrinsics``, ``camera_token``, ``geometry_tokens``: NaN or inf anywhere.
    - ``points``, ``depth``, the pose translation: a finite magnitude above :data:`MAX_ABS_METRES`.
      NaN / inf points and depths are fine: they mark invalid pixels.
    - ``intrinsics``: a focal length that is not positive.
    """
    for name in ("pose", "intrinsics", "camera_token", "geometry_tokens"):
        tensor = fields.get(name)
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            raise GeometryError(f"{name} in {where} contains NaN or inf; a frame needs a finite {name}")
    for name, tensor in (
        ("points", fields.get("points")),
        ("depth", fields.get("depth")),
        ("pose translation", None if fields.get("pose") is None else fields["pose"][..., :3, 3]),
    ):
        if tensor is None or tensor.numel() == 0:
            continue
        finite = tensor[torch.isfinite(tensor)]
        largest = float(finite.abs().max()) if finite.numel() else 0.0
        if largest > MAX_ABS_METRES:
            raise GeometryError(
                f"{name} in {where} reaches {largest:.3g}, beyond {MAX_ABS_METRES:.0e} m: geometry is in "
                "metres (wrong units or a broken export?)"
            )
    intrinsics = fields.get("intrinsics")
    if intrinsics is not None and not bool((intrinsics[..., 0, 0] > 0).all() and (intrinsics[..., 1, 1] > 0).all()):
        raise GeometryError(f"intrinsics in {where} have a focal length <= 0 (fx, fy must be positive pixels)")
