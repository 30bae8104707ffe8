"""LaViDa's anyres token layout, as pure tensor functions (from jacklishufan/LaViDa ``llava_arch.py``).

LaViDa's base image path (``prepare_inputs_labels_for_multimodal`` with ``image_aspect_ratio=anyres``,
``mm_patch_merge_type=spatial_unpad``, ``ALWASY_DO_2DPOOL``):

1. views = [the image resized to 384² (squashed)] + the 384² tiles of the image resized and padded to
   the best grid pinpoint (``(384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152)``);
2. SigLIP → ``mm_projector`` on every view's 27×27 = 729 tokens;
3. ``get_2dPool`` *after* the projector: ``mm_spatial_pool_mode`` "bilinear" (LaViDa's default in
   training and eval) resizes 27×27 to ⌈27/2⌉ = 14×14 (``F.interpolate``, align_corners False);
   "average" is ``avg_pool2d(2)`` (13×13);
4. the tiles are laid out as one (H, rows·14, cols·14) map, ``unpad_image`` cuts the padding rows or
   columns, an ``image_newline`` token ends every row, and the global view's 196 tokens go first.

A square image on the 768² pinpoint gives 196 + 28·29 = 1,008 tokens (980 without newlines).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def lavida_pool_view(features: torch.Tensor, stride: int = 2, mode: str = "bilinear") -> torch.Tensor:
    """``get_2dPool``: (V, s·s, H) per-view projected tokens → (V, s'·s', H).

    Args:
        features: (V, s², H) row-major tokens of V square views.
        stride: 2 in LaViDa.
        mode: "bilinear" (s' = ⌈s / stride⌉), "average" or "max" (s' = ⌊s / stride⌋).
    """
    views, count, dim = features.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"each view must hold a square grid of tokens; got {count}")
    grid = features.view(views, side, side, dim).permute(0, 3, 1, 2)
    if mode == "bilinear":
        size = math.ceil(side / stride)
        grid = F.interpolate(grid, size=(size, size), mode="bilinear")
    elif mode == "average":
        grid = F.avg_pool2d(grid, stride)
    elif mode == "max":
        grid = F.max_pool2d(grid, stride)
    else:
        raise ValueError(f"mode must be 'bilinear', 'average' or 'max', got {mode!r}")
    return grid.permute(0, 2, 3, 1).reshape(views, -1, dim)


def unpad_grid(grid: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """``unpad_image``: (H, rows, cols) → the rows / columns that hold the image, not the padding.

    Args:
        grid: (H, rows, cols) token map of the padded image.
        original_size: (width, height) of the original image, as LaViDa passes ``image_sizes``.
    """
    original_width, original_height = original_size
    rows, cols = grid.shape[1:]
    if original_width / original_height > cols / rows:
        new_rows = int(original_height * (cols / original_width))
        padding = (rows - new_rows) // 2
        return grid[:, padding : rows - padding, :]
    new_cols = int(original_width * (rows / original_height))
    padding = (cols - new_cols) // 2
    return grid[:, :, padding : cols - padding]


def lavida_anyres_layout(
    pooled: torch.Tensor, grid_shape: tuple[int, int], original_size: tuple[int, int], newline: torch.Tensor
) -> torch.Tensor:
    """Global view, then the unpadded tile map with a newline token after every row.

    Args:
        pooled: (1 + n, s², H) pooled projected tokens: the global view first, then the n tiles in
            raster order (row of tiles by row).
        grid_shape: (tiles across, tiles down) = ``get_anyres_image_grid_shape``.
        original_size: (width, height) of the original image.
        newline: (H,) the model's ``image_newline``.

    Returns:
        (s² + rows·(cols + 1), H) tokens in LaViDa's order.
    """
    across, down = grid_shape
    base, tiles = pooled[0], pooled[1:]
    if tiles.shape[0] != across * down:
        raise ValueError(f"grid {across}×{down} needs {across * down} tiles; got {tiles.shape[0]}")
    side = math.isqrt(base.shape[0])
    dim = base.shape[-1]
    tile_map = tiles.view(down, across, side, side, dim).permute(4, 0, 2, 1, 3).reshape(dim, down * side, across * side)
    tile_map = unpad_grid(tile_map, original_size)
    rows = tile_map.shape[1]
    tile_map = torch.cat([tile_map, newline.to(tile_map.dtype)[:, None, None].expand(dim, rows, 1)], dim=-1)
    return torch.cat([base, tile_map.flatten(1, 2).transpose(0, 1)], dim=0)
