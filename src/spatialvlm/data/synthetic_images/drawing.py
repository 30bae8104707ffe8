"""Pixel-exact drawing primitives of the synthetic image suite: palette, bitmap text, small shapes.

Everything is drawn without anti-aliasing, so every pixel of a mark, shape or glyph has exactly its
palette colour; tests recount and re-measure answers from the pixels. Boxes are
``[x0, y0, x1, y1]`` in pixels with exclusive ends (``image[y0:y1, x0:x1]`` is the box).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "BACKGROUND",
    "LINE_GRAY",
    "TEXT_COLOR",
    "PALETTE",
    "SHAPES",
    "Box",
    "bitmap_font",
    "text_mask",
    "draw_text",
    "draw_shape",
    "box_of",
]

Box = list[int]
"""``[x0, y0, x1, y1]``, exclusive ends."""

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
LINE_GRAY: tuple[int, int, int] = (190, 190, 190)
TEXT_COLOR: tuple[int, int, int] = (20, 20, 20)
# Saturated, far apart in RGB, and none equal to the background, line or text colours, so a colour
# identifies a palette entry exactly.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 150, 60),
    "blue": (40, 90, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")


@lru_cache(maxsize=1)
def bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font (6 px advance, 11 px line): the same pixels on every machine,
    no font file needed. Pillow ≥ 10.1 returns a FreeType font from ``load_default``; the bitmap
    one is ``load_default_imagefont``."""
    loader = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
    return loader()


@lru_cache(maxsize=4096)
def _text_mask_cached(text: str, scale: int) -> np.ndarray:
    font = bitmap_font()
    _, _, width, height = font.getbbox(text)
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).text((0, 0), text, fill=255, font=font)
    mask = np.asarray(canvas) > 127
    mask = mask.repeat(scale, axis=0).repeat(scale, axis=1)
    mask.setflags(write=False)
    return mask


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """Boolean ink mask (H, W) of ``text`` in the bitmap font, each font pixel a ``scale``² block."""
    if not text.isascii():
        raise ValueError(f"text must be ASCII for the bitmap font; got {text!r}")
    if scale < 1:
        raise ValueError(f"text scale must be >= 1; got {scale}")
    return _text_mask_cached(text, scale)


def box_of(mask: np.ndarray, x: int = 0, y: int = 0) -> Box:
    """Tight box of the True pixels of ``mask`` placed with its top-left corner at (x, y)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("box_of: the mask is empty")
    return [int(x + cols[0]), int(y + rows[0]), int(x + cols[-1] + 1), int(y + rows[-1] + 1)]


def draw_text(image: Image.Image, text: str, x: int, y: int, scale: int, color: tuple[int, int, int]) -> Box:
    """Paint ``text`` with its mask's top-left at (x, y); returns the tight ink box."""
    mask = text_mask(text, scale)
    stencil = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    image.paste(color, (x, y, x + mask.shape[1], y + mask.shape[0]), mask=stencil)
    return box_of(mask, x, y)


def _star_points(box: Box, points: int = 5, inner_ratio: float = 0.42) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
    outer = (x1 - x0 - 1) / 2
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, outer * inner_ratio)
    return list(zip((cx + radii * np.cos(angles)).tolist(), (cy + radii * np.sin(angles)).tolist()))


def draw_shape(image: Image.Image, shape: str, box: Box, color: tuple[int, int, int]) -> None:
    """Fill ``shape`` (one of :data:`SHAPES`) inside ``box`` (square, except "square", which
    fills any rectangle and also draws bars).

    Triangles point up; diamonds are squares turned 45°; crosses are plus signs with arms a third
    of the side wide; stars have 5 points and an inner radius of 0.42 × the outer.
    """
    x0, y0, x1, y1 = box
    right, bottom = x1 - 1, y1 - 1  # PIL's coordinates are inclusive
    cx, cy = (x0 + right) / 2, (y0 + bottom) / 2
    draw = ImageDraw.Draw(image)
    if shape == "square":
        draw.rectangle([x0, y0, right, bottom], fill=color)
    elif shape == "circle":
        draw.ellipse([x0, y0, right, bottom], fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (right, bottom), (x0, bottom)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (right, cy), (cx, bottom), (x0, cy)], fill=color)
    elif shape == "star":
        draw.polygon(_star_points(box), fill=color)
    elif shape == "cross":
        arm = (x1 - x0) // 3
        draw.rectangle([x0 + arm, y0, right - arm, bottom], fill=color)
        draw.rectangle([x0, y0 + arm, right, bottom - arm], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
