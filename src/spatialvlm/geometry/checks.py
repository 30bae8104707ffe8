"""Shape checks that name the tensor and the shape it should have."""

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
