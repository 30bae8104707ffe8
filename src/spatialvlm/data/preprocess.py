"""SigLIP image preprocessing with Pillow, numpy and torch only (no torchvision).

The output equals transformers' ``SiglipImageProcessorPil`` (the PIL/numpy backend; called the
"slow" processor before transformers 5): convert to RGB (transparency composited onto white), resize to ``(size, size)`` with Pillow's
filter, rescale by 1/255, normalise with ``(x - mean) / std``. Aspect ratio is not preserved, as in
SigLIP (no crop, no padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["siglip_preprocess", "RESAMPLE_FILTERS"]

RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _as_pil_list(images: Image.Image | Sequence[Image.Image] | np.ndarray) -> list[Image.Image]:
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                "images as a numpy array must be uint8 of shape (T, H, W, 3) or (H, W, 3); "
                f"got dtype {images.dtype} and shape {tuple(images.shape)}"
            )
        return [Image.fromarray(frame) for frame in images]
    images = list(images)
    if not images:
        raise ValueError("images is an empty list; expected at least one PIL image")
    for index, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise ValueError(f"images[{index}] is a {type(image).__name__}; expected a PIL image")
    return images


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transparency is composited onto white, as transformers does, rather than dropped.
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def siglip_preprocess(
    images: Image.Image | Sequence[Image.Image] | np.ndarray,
    size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    resample: str = "bicubic",
) -> torch.Tensor:
    """Turn images or video frames into SigLIP pixel values.

    Args:
        images: one PIL image, a list of PIL images (any sizes and modes), or a uint8 numpy array
            of RGB frames (T, H, W, 3) (a single (H, W, 3) frame is accepted as T = 1).
        size: output side in pixels (384 for so400m-patch14-384, 672 for SHIRG-X's 48×48 grid).
        mean, std: per-channel normalisation (SigLIP: 0.5, 0.5).
        resample: Pillow filter name, one of ``RESAMPLE_FILTERS``.

    Returns:
        (T, 3, size, size) float32 tensor.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB); got {len(mean)} and {len(std)}")
    pil_filter = RESAMPLE_FILTERS[resample]
    # Resizing happens on uint8 PIL images, exactly like the reference processor, so rounding matches.
    resized = np.stack(
        [np.asarray(_to_rgb(image).resize((size, size), resample=pil_filter)) for image in _as_pil_list(images)]
    )
    # float64 for the rescale, as transformers does, then one downcast: bit-for-bit equal outputs.
    pixels = (resized.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
