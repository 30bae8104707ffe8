"""Dual-scale tokens: the 48×48 high-detail grid and its 12×12 average-pooled scaffold.

Coordinates are (x, y, h, w): the centre (x along columns, y along rows) and the extent (h = height,
w = width), all normalised to [0, 1] by the image side. Patch (row r, col c) of an R×C grid is
((c + 0.5)/C, (r + 0.5)/R, 1/R, 1/C).
"""

from __future__ import annotations

import torch

from .checks import check_patch_tokens


def grid_coords(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(rows·cols, 4) coordinates (x, y, h, w) of the cells of ``grid``, row-major."""
    rows, cols = grid
    row = torch.arange(rows, device=device, dtype=torch.float32).repeat_interleave(cols)
    col = torch.arange(cols, device=device, dtype=torch.float32).repeat(rows)
    height = torch.full_like(row, 1.0 / rows)
    width = torch.full_like(row, 1.0 / cols)
    return torch.stack([(col + 0.5) / cols, (row + 0.5) / rows, height, width], dim=-1)


def scaffold_source_index(grid: tuple[int, int], pool: int, device: torch.device | None = None) -> torch.Tensor:
    """(num_scaffold, pool²) long: the row-major patch indices each scaffold token averages."""
    rows, cols = grid
    patch = torch.arange(rows * cols, device=device).view(rows // pool, pool, cols // pool, pool)
    return patch.permute(0, 2, 1, 3).reshape(-1, pool * pool)


def dual_scale_tokens(
    hi_tokens: torch.Tensor, grid: tuple[int, int] = (48, 48), pool: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split SigLIP patch tokens into the high-detail set and the always-kept scaffold.

    Args:
        hi_tokens: (B, rows·cols, D) row-major patch tokens.
        grid: (rows, cols) of the patch grid.
        pool: side of the average-pooling window.

    Returns:
        scaffold: (B, rows/pool · cols/pool, D), row-major, each the mean of a pool×pool block.
        hi_coords: (B, rows·cols, 4) patch coordinates (x, y, h, w) (an expanded view).
        scaffold_coords: (B, num_scaffold, 4) coordinates of the pooled cells.
    """
    check_patch_tokens(hi_tokens, grid)
    rows, cols = grid
    if rows % pool or cols % pool:
        raise ValueError(f"pool={pool} must divide both grid sides {grid}")
    batch, _, dim = hi_tokens.shape
    # Two single-axis sums over the row-major layout: one reduction over both block axes at once
    # is ~20× slower on CPU, and avg_pool2d would need a (B, D, H, W) transpose.
    row_sums = hi_tokens.reshape(batch, rows // pool, pool, cols, dim).sum(dim=2)
    block_sums = row_sums.reshape(batch, rows // pool, cols // pool, pool, dim).sum(dim=3)
    scaffold = (block_sums / (pool * pool)).reshape(batch, -1, dim)
    hi_coords = grid_coords(grid, hi_tokens.device).expand(batch, -1, -1)
    scaffold_coords = grid_coords((rows // pool, cols // pool), hi_tokens.device).expand(batch, -1, -1)
    return scaffold, hi_coords, scaffold_coords
