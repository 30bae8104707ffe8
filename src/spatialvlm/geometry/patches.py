"""Pooling a per-pixel point map to the vision tower's patch grid (``X_t → C_t`` in VLM²)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .checks import check_bool, check_shape

__all__ = ["PatchCoords", "patch_assignment", "points_to_patch_coords"]


class PatchCoords(NamedTuple):
    """Output of :func:`points_to_patch_coords`; unpacks as ``coords, patch_valid = ...``.

    Attributes:
        coords: (B, h·w, 3) row-major mean world point of each patch, 0 where the patch is invalid.
        patch_valid: (B, h·w) bool, False where a patch holds no valid, finite point.
    """

    coords: Tensor
    patch_valid: Tensor


def patch_assignment(size: int, cells: int, patch_size: int | None = None, device: torch.device | None = None) -> Tensor:
    """Which patch each pixel row (or column) belongs to: (size,) long, −1 for a dropped pixel.

    ``patch_size=None``: proportional bands, pixel ``r`` goes to patch ``floor(r·cells/size)``, so the
    ``size`` pixels are split into ``cells`` contiguous bands of ``floor`` or ``ceil(size/cells)``
    pixels and every pixel is used once. ``patch_size=p``: pixel ``r`` goes to patch ``r // p`` and
    pixels at or beyond ``cells·p`` are dropped, exactly like a stride-``p`` patch-embedding convolution
    (SigLIP at 384 px with patch 14 sees pixels 0..377 only).
    """
    index = torch.arange(size, device=device)
    if patch_size is None:
        return index * cells // size
    cell = index // patch_size
    return torch.where(cell < cells, cell, torch.full_like(cell, -1))


def _one_hot(assignment: Tensor, cells: int, dtype: torch.dtype) -> Tensor:
    """(cells, size) matrix with a 1 where pixel j belongs to cell i."""
    return (assignment[None, :] == torch.arange(cells, device=assignment.device)[:, None]).to(dtype)


def points_to_patch_coords(
    points: Tensor,
    valid: Tensor | None = None,
    grid: tuple[int, int] = (27, 27),
    *,
    confidence: Tensor | None = None,
    confidence_threshold: float | None = None,
    patch_size: int | None = None,
) -> PatchCoords:
    """Masked mean of the valid, finite points in each patch of a ``grid = (h, w)`` layout.

    A pixel counts when it is ``valid`` (if given), its ``confidence ≥ confidence_threshold`` (if
    both are given), and all three of its coordinates are finite. A patch with no counting pixel is
    invalid: its coords are 0 and ``patch_valid`` is False. How pixels are assigned to patches when
    ``H, W`` are not multiples of the grid is described in :func:`patch_assignment`.

    The point map must cover the same image region as the vision tower's input (apply the same
    crop); its resolution may differ (a 432 px CUT3R map pools onto SigLIP's 27×27 grid as well).

    Args:
        points: (B, H, W, 3) world coordinates.
        valid: (B, H, W) bool, or None.
        grid: (h, w) patch grid of the vision tower, e.g. (27, 27) for SigLIP so400m at 384 px.
        confidence: (B, H, W) per-pixel confidence, used with ``confidence_threshold``.
        confidence_threshold: minimum confidence of a counting pixel.
        patch_size: pixels per patch when the point map is at the vision tower's input resolution
            and trailing pixels should be dropped like the patch embedding does; None for
            proportional assignment.
    Returns:
        :class:`PatchCoords` ``(coords (B, h·w, 3), patch_valid (B, h·w))``.
    """
    check_shape("points", points, ("B", "H", "W", 3))
    batch, height, width, _ = points.shape
    grid_h, grid_w = grid
    if height == 0 or width == 0 or batch == 0:
        raise ValueError(f"points is empty: shape {tuple(points.shape)}")
    if not (0 < grid_h <= height and 0 < grid_w <= width):
        raise ValueError(f"grid {grid} needs at least one pixel per patch; points has H={height}, W={width}")
    if patch_size is not None and (grid_h * patch_size > height or grid_w * patch_size > width):
        raise ValueError(f"grid {grid} with patch_size {patch_size} needs at least {grid_h * patch_size}×"
                         f"{grid_w * patch_size} pixels; points has {height}×{width}")

    points = points.float()
    mask = torch.isfinite(points).all(-1)
    if valid is not None:
        check_shape("valid", valid, (batch, height, width))
        check_bool("valid (a confidence map goes in confidence= with confidence_threshold=)", valid)
        mask &= valid
    if confidence is not None or confidence_threshold is not None:
        if confidence is None or confidence_threshold is None:
            raise ValueError("confidence and confidence_threshold must be given together")
        check_shape("confidence", confidence, (batch, height, width))
        mask &= confidence >= confidence_threshold

    # where, not multiply: 0 · NaN would still be NaN. Channel 3 counts the pixels.
    summand = torch.cat([points.masked_fill(~mask[..., None], 0.0), mask.to(points.dtype)[..., None]], -1)
    rows = _one_hot(patch_assignment(height, grid_h, patch_size, points.device), grid_h, points.dtype)
    cols = _one_hot(patch_assignment(width, grid_w, patch_size, points.device), grid_w, points.dtype)
    # Band sums as two plain GEMMs: over columns, (B·H·4, W) @ (W, w), then over rows, (h, H) @ (B, H, 4·w).
    column_sums = summand.permute(0, 1, 3, 2).reshape(batch * height * 4, width) @ cols.T
    band_sums = rows @ column_sums.reshape(batch, height, 4 * grid_w)
    sums = band_sums.reshape(batch, grid_h, 4, grid_w).permute(0, 1, 3, 2).reshape(batch, grid_h * grid_w, 4)
    counts = sums[..., 3]
    patch_valid = counts > 0
    coords = sums[..., :3] / counts.clamp_min(1.0)[..., None]
    return PatchCoords(coords, patch_valid)
