"""LaViDa's base image path (anyres views, 2× pooling after the projector, newline tokens) and the
aspect-preserving padded view, as the SHIRG-X path's baselines.

From jacklishufan/LaViDa: ``llava/mm_utils.py`` (``select_best_resolution``, ``resize_and_pad_image``,
``divide_to_patches``, ``process_anyres_image``, ``expand2square``) and ``llava/model/llava_arch.py``
(``encode_images``: SigLIP then ``mm_projector``; ``get_2dPool``; ``spatial_unpad`` layout). The
tensor layout lives in ``selection.lavida_pool``; this file does the PIL side and runs the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from ..data.preprocess import siglip_preprocess
from ..selection.lavida_pool import lavida_anyres_layout, lavida_pool_view

__all__ = [
    "LAVIDA_GRID_PINPOINTS",
    "LavidaViews",
    "select_best_resolution",
    "resize_and_pad_image",
    "expand_to_square",
    "lavida_anyres_views",
    "lavida_anyres_tokens",
]

# LaViDa's training scripts (scripts/train/exps/cluster/llada-hd-llada-s*.sh): --image_grid_pinpoints.
LAVIDA_GRID_PINPOINTS: tuple[tuple[int, int], ...] = ((384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152))


def select_best_resolution(original_size: tuple[int, int], resolutions: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(width, height) pinpoint keeping most of the image's resolution, least wasted on ties."""
    width, height = original_size
    best, best_effective, best_waste = None, 0, float("inf")
    for target_width, target_height in resolutions:
        scale = min(target_width / width, target_height / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = target_width * target_height - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (target_width, target_height), effective, waste
    return best


def resize_and_pad_image(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Resize keeping the aspect ratio so one side fills ``target``; centre on black."""
    width, height = image.size
    target_width, target_height = target
    scale_w, scale_h = target_width / width, target_height / height
    if scale_w < scale_h:
        new_width, new_height = target_width, min(math.ceil(height * scale_w), target_height)
    else:
        new_width, new_height = min(math.ceil(width * scale_h), target_width), target_height
    canvas = Image.new("RGB", (target_width, target_height), (0, 0, 0))
    canvas.paste(image.convert("RGB").resize((new_width, new_height)), ((target_width - new_width) // 2, (target_height - new_height) // 2))
    return canvas


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA's ``expand2square``: pad the short side (centred) to a square of ``background``."""
    image = image.convert("RGB")
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


@dataclass
class LavidaViews:
    """One image's anyres input.

    Attributes:
        pixel_values: (1 + n, 3, S, S): the squashed global view, then the n tiles in raster order.
        grid_shape: (tiles across, tiles down).
        image_size: (width, height) of the original image.
    """

    pixel_values: torch.Tensor
    grid_shape: tuple[int, int]
    image_size: tuple[int, int]


def lavida_anyres_views(
    image: Image.Image,
    view_size: int = 384,
    pinpoints: Sequence[tuple[int, int]] = LAVIDA_GRID_PINPOINTS,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> LavidaViews:
    """``process_anyres_image``: the best pinpoint, resized and padded, cut into ``view_size`` tiles,
    after the whole image resized (squashed, as LaViDa keeps it) to ``view_size``.

    ``pinpoints`` are in pixels for ``view_size`` = 384; other view sizes (tiny test towers) scale them.
    """
    scale = view_size / 384
    resolutions = [(round(w * scale), round(h * scale)) for w, h in pinpoints]
    best = select_best_resolution(image.size, resolutions)
    padded = resize_and_pad_image(image, best)
    tiles = [
        padded.crop((left, top, left + view_size, top + view_size))
        for top in range(0, best[1], view_size)
        for left in range(0, best[0], view_size)
    ]
    # LLaVA's processor resizes the tiles too; they are already view_size, so only the global one changes.
    views = [image.convert("RGB").resize((view_size, view_size), Image.BICUBIC)] + tiles
    pixels = siglip_preprocess(views, view_size, mean, std)
    return LavidaViews(pixels, (best[0] // view_size, best[1] // view_size), image.size)


def lavida_anyres_tokens(
    vision_tower: nn.Module,
    projector: nn.Module,
    newline: torch.Tensor,
    views: LavidaViews,
    feature_layer: int = -1,
    pool_mode: str = "bilinear",
) -> torch.Tensor:
    """LaViDa's image tokens: SigLIP per view → projector → ``get_2dPool`` → unpadded layout + newlines.

    Args:
        vision_tower: ``SiglipVisionModel``.
        projector: the multimodal projector.
        newline: (H,) ``image_newline``.
        views: ``lavida_anyres_views`` output.
        feature_layer: hidden_states index the projector was trained on.
        pool_mode: LaViDa's ``mm_spatial_pool_mode`` ("bilinear").

    Returns:
        (T, H) tokens; a square image on the 768² pinpoint gives 196 + 28·29 = 1,008.
    """
    pixels = views.pixel_values.to(vision_tower.dtype)
    hidden = vision_tower(pixels, output_hidden_states=True).hidden_states[feature_layer]
    pooled = lavida_pool_view(projector(hidden), 2, pool_mode)
    return lavida_anyres_layout(pooled, views.grid_shape, views.image_size, newline)
