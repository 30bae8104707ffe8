"""SigLIP image preprocessing with Pillow, numpy and torch only (no torchvision).

The output equals transformers' ``SiglipImageProcessorPil`` (the PIL/numpy backend; called the
"slow" processor before transformers 5): convert to RGB (transparency composited onto white), resize to ``(size, size)`` with Pillow's
filter, rescale by 1/255, normalise with ``(x - mean) / std``. Aspect ratio is not preserved, as in
SigLIP (no crop, no padding). Two departures, for images transformers gets wrong: the EXIF
orientation is applied first (phone photos), and 16-bit greyscale is scaled to 8 bits (Pillow clips
it to white).

``load_image(path)`` opens a user's image file for these: one-line errors for files that are not
images or are truncated, and warnings for extreme aspect ratios and tiny images.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["siglip_preprocess", "load_image", "RESAMPLE_FILTERS", "MAX_ASPECT_RATIO", "MIN_IMAGE_SIDE"]

# Pillow modes holding more than 8 bits per value (16-bit PNG / TIFF greyscale).
_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

MAX_ASPECT_RATIO = 4.0
"""``load_image`` warns above this long-side / short-side ratio: a square resize squashes the image."""

MIN_IMAGE_SIDE = 32
"""``load_image`` warns when the short side has fewer pixels: the resize invents the detail."""

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
    # A phone photo is stored sideways with an EXIF orientation tag; without this it is processed
    # sideways (transformers' processor ignores the tag; viewers do not).
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER_MODES:
        # Pillow's convert("RGB") clips 16-bit values to 255 (a white image): scale to 8 bits instead.
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "I" and values.max() <= 255:
            values = values * 257.0  # an "I" image already in 8-bit range
        image = Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8), mode="L")
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


def load_image(path: str | os.PathLike, size: int | None = None) -> Image.Image:
    """Open an image file fully (decoded now, not lazily), orientation applied, for preprocessing.

    Args:
        path: image file (PNG, JPEG, ...).
        size: the side it will be resized to, named in the warnings (e.g. 672).

    Returns:
        The decoded PIL image, EXIF orientation applied (16-bit values stay as they are:
        ``siglip_preprocess`` scales them).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, not an image (e.g. a text file renamed .png), or truncated / corrupt.

    Warns when the aspect ratio exceeds :data:`MAX_ASPECT_RATIO` or the short side is below
    :data:`MIN_IMAGE_SIDE` pixels.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"image {path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: a truncated file fails here, not in the middle of a model
            image = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        raise ValueError(f"cannot read image {path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error} (truncated or corrupt file?)") from error
    width, height = image.size
    target = f" to {size}×{size} px" if size else ""
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        warnings.warn(
            f"image {path} is {width}×{height} px (aspect ratio {max(width, height) / min(width, height):.0f}:1): "
            f"the square resize{target} squashes it; crop it into tiles for detail",
            stacklevel=2,
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        warnings.warn(
            f"image {path} is only {width}×{height} px: the resize{target} invents the detail the model sees",
            stacklevel=2,
        )
    return image
