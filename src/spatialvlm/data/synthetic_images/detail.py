"""Patch-aligned "detail" families: answers that live in one 14 px SigLIP patch and that 2×2 or
4×4 average pooling provably erases.

The construction (why pooling loses the answer, exactly): contents are drawn one per patch of the
672 px image's 48×48 grid, inside a block whose corners sit on even patch indices, and every
aligned 2×2 patch block holds *distinct* contents. Swapping the answer patch's content with a
block-mate gives a *twin* image whose answer differs but whose 2×2 (28 px) and 4×4 (56 px, the
12×12 scaffold) pixel means are identical — averaging is blind to a permutation inside its window,
and aligned 2×2 blocks nest inside aligned 4×4 blocks. The full-resolution answer patch still tells
the twins apart. ``twin_image`` draws the twin; tests check both facts from the pixels.

Families (question types in brackets):

- ``dense_marks`` [dense_color]: a grid of 10×10 px colour marks, one per patch; one patch has a
  1 px black frame: "What color is the mark in the black frame?".
- ``dense_glyphs`` [dense_glyph]: a table of single characters in 1× bitmap type, one per patch; one
  is framed: "What is the character in the black frame?".
- ``dense_bars`` [dense_bar_label]: one-patch-wide bars, all of one colour but one, over a row of
  one-character labels: "What is the label under the <colour> bar?".

Each image also carries exact per-patch labels (``patch_labels``) for pretraining a vision tower:
palette colour, glyph identity and frame flag of every patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from spatialvlm.data.synthetic_images.drawing import BACKGROUND, LINE_GRAY, PALETTE, TEXT_COLOR, Box, draw_text

__all__ = [
    "PATCH",
    "DETAIL_FAMILIES",
    "DETAIL_QUESTION_TYPES",
    "GLYPH_ALPHABET",
    "IGNORE_LABEL",
    "DenseMarksConfig",
    "DenseGlyphsConfig",
    "DenseBarsConfig",
    "make_dense_marks",
    "make_dense_glyphs",
    "make_dense_bars",
    "twin_image",
    "patch_labels",
    "pool_pixels",
]

PATCH = 14  # SigLIP patch side in px
DETAIL_FAMILIES: tuple[str, ...] = ("dense_marks", "dense_glyphs", "dense_bars")
DETAIL_QUESTION_TYPES: dict[str, tuple[str, ...]] = {
    "dense_marks": ("dense_color",),
    "dense_glyphs": ("dense_glyph",),
    "dense_bars": ("dense_bar_label",),
}
# Characters whose 1× bitmap glyphs differ in many pixels (no 0/O, 1/I, B/8, S/5 pairs).
GLYPH_ALPHABET = "ACEFHJKLNPTUVXYZ"
IGNORE_LABEL = -100  # a patch whose label is unknown (cross-entropy's ignore_index)
_MARK_INSET = 2  # mark 10×10 inside its patch; the frame uses the patch's outer 1 px ring
_GLYPH_OFFSET = (4, 1)  # text origin inside a patch: 1× ink (≤ 6×8, rows 2-9 of 11) sits in px 4-9 × 3-10


@dataclass
class DenseMarksConfig:
    """Attributes:
    rows, cols: inclusive ranges of the grid size in patches (rounded down to even).
    colors: palette names the marks use (at least 4: a 2×2 block holds 4 distinct ones).
    margin_patches: least patches between the grid and the image border.
    """

    rows: tuple[int, int] = (8, 20)
    cols: tuple[int, int] = (8, 20)
    colors: tuple[str, ...] = tuple(PALETTE)
    margin_patches: int = 2


@dataclass
class DenseGlyphsConfig:
    """Attributes:
    rows, cols: inclusive ranges of the table size in patches (rounded down to even).
    alphabet: characters drawn (at least 4 distinct).
    margin_patches: least patches between the table and the image border.
    """

    rows: tuple[int, int] = (6, 16)
    cols: tuple[int, int] = (6, 16)
    alphabet: str = GLYPH_ALPHABET
    margin_patches: int = 2


@dataclass
class DenseBarsConfig:
    """Attributes:
    bars: inclusive range of the number of bars (rounded down to even), one patch column each.
    plot_patches: inclusive range of the plot height in patches (the tallest possible bar).
    bar_inset: px left blank on each side of a bar inside its patch column.
    alphabet: label characters (every bar's label is distinct).
    margin_patches: least patches between the chart and the image border.
    """

    bars: tuple[int, int] = (8, 16)
    plot_patches: tuple[int, int] = (4, 12)
    bar_inset: int = 3
    alphabet: str = GLYPH_ALPHABET
    margin_patches: int = 2


def _even_randint(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    value = int(rng.integers(bounds[0], bounds[1] + 1))
    return max(2, value - value % 2)


def _even_origin(rng: np.random.Generator, grid: int, extent: int, margin: int) -> int:
    """An even patch index so the block's 2×2 cells line up with the 2×2 and 4×4 pooling windows."""
    low = margin + margin % 2
    high = grid - margin - extent
    if high < low:
        raise ValueError(f"a {extent}-patch block does not fit a {grid}-patch grid with {margin}-patch margins")
    return low + 2 * int(rng.integers((high - low) // 2 + 1))


def _block_distinct(rng: np.random.Generator, rows: int, cols: int, choices: int) -> np.ndarray:
    """(rows, cols) indices into ``choices`` with the 4 cells of every aligned 2×2 block distinct."""
    if choices < 4:
        raise ValueError(f"need at least 4 distinct contents for a 2×2 block; got {choices}")
    keys = rng.random((rows // 2, cols // 2, choices)).argsort(-1)[..., :4]  # 4 distinct per block
    return keys.reshape(rows // 2, cols // 2, 2, 2).transpose(0, 2, 1, 3).reshape(rows, cols)


def _patch_box(row: int, col: int) -> Box:
    return [col * PATCH, row * PATCH, (col + 1) * PATCH, (row + 1) * PATCH]


def _draw_frame(image: Image.Image, row: int, col: int) -> None:
    x0, y0, x1, y1 = _patch_box(row, col)
    ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], outline=TEXT_COLOR)


def _draw_mark(image: Image.Image, row: int, col: int, color: str) -> None:
    x0, y0, x1, y1 = _patch_box(row, col)
    ImageDraw.Draw(image).rectangle([x0 + _MARK_INSET, y0 + _MARK_INSET, x1 - 1 - _MARK_INSET, y1 - 1 - _MARK_INSET],
                                    fill=PALETTE[color])


def _draw_glyph(image: Image.Image, row: int, col: int, char: str) -> Box:
    x0, y0, _, _ = _patch_box(row, col)
    return draw_text(image, char, x0 + _GLYPH_OFFSET[0], y0 + _GLYPH_OFFSET[1], 1, TEXT_COLOR)


def _question(question_type: str, question: str, answer: str, regions: list[Box], target: list[int],
              partner: list[int]) -> dict[str, Any]:
    return {
        "question_type": question_type, "question": question, "answers": [answer], "metric": "exact_match",
        "regions": regions, "target_patch": target, "twin_partner": partner,
    }


def _partner(rng: np.random.Generator, row: int, col: int) -> list[int]:
    """A block-mate of patch (row, col) (absolute patch indices, even-aligned 2×2 block)."""
    mates = [(row - row % 2 + dy, col - col % 2 + dx) for dy in (0, 1) for dx in (0, 1)]
    mates.remove((row, col))
    r, c = mates[int(rng.integers(3))]
    return [r, c]


def _render_dense(size: int, description: dict[str, Any]):
    """Draw a dense-family image from its description (also used to draw twins)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    family = description["family"]
    if family == "dense_marks":
        for row, col, color in description["marks"]:
            _draw_mark(image, row, col, color)
        _draw_frame(image, *description["frame"])
    elif family == "dense_glyphs":
        for row, col, char in description["glyphs"]:
            _draw_glyph(image, row, col, char)
        _draw_frame(image, *description["frame"])
    else:
        draw = ImageDraw.Draw(image)
        inset = description["bar_inset"]
        for bar in description["bars"]:
            x0, _, x1, _ = _patch_box(0, bar["col"])
            top = description["axis_y"] - bar["height"]
            draw.rectangle([x0 + inset, top, x1 - 1 - inset, description["axis_y"] - 1], fill=PALETTE[bar["color"]])
            _draw_glyph(image, description["label_row"], bar["col"], bar["label"])
        first, last = description["bars"][0]["col"], description["bars"][-1]["col"]
        draw.line([(first * PATCH, description["axis_y"]), ((last + 1) * PATCH - 1, description["axis_y"])], fill=LINE_GRAY)
    return image


def _make_dense_grid(rng: np.random.Generator, size: int, config: DenseMarksConfig | DenseGlyphsConfig,
                     values: Sequence[str], family: str, key: str, question_type: str, prompt: str):
    """A dense grid of ``values`` (2×2 blocks of distinct ones), one cell framed and asked about."""
    from spatialvlm.data.synthetic_images.families import RenderedImage

    grid = size // PATCH
    rows, cols = _even_randint(rng, config.rows), _even_randint(rng, config.cols)
    top, left = _even_origin(rng, grid, rows, config.margin_patches), _even_origin(rng, grid, cols, config.margin_patches)
    chosen = _block_distinct(rng, rows, cols, len(values))
    cells = [[top + r, left + c, values[chosen[r, c]]] for r in range(rows) for c in range(cols)]
    target = cells[int(rng.integers(len(cells)))]
    description = {"family": family, "origin_patch": [top, left], "rows": rows, "cols": cols,
                   key: cells, "frame": target[:2]}
    question = _question(question_type, prompt, target[2], [_patch_box(*target[:2])], target[:2],
                         _partner(rng, *target[:2]))
    return RenderedImage(_render_dense(size, description), description, [question])


def make_dense_marks(rng: np.random.Generator, size: int, config: DenseMarksConfig, num_questions: int):
    """One framed mark per image (``num_questions`` is capped at 1: one frame)."""
    return _make_dense_grid(rng, size, config, config.colors, "dense_marks", "marks", "dense_color",
                            "What color is the mark in the black frame?")


def make_dense_glyphs(rng: np.random.Generator, size: int, config: DenseGlyphsConfig, num_questions: int):
    """One framed character per image."""
    return _make_dense_grid(rng, size, config, config.alphabet, "dense_glyphs", "glyphs", "dense_glyph",
                            "What is the character in the black frame?")


def make_dense_bars(rng: np.random.Generator, size: int, config: DenseBarsConfig, num_questions: int):
    """Bars in one colour but the target; labels on the even patch row under the axis, so a
    label's 2×2 block is it, its neighbour label and two blank patches below them."""
    from spatialvlm.data.synthetic_images.families import RenderedImage

    grid = size // PATCH
    count = _even_randint(rng, config.bars)
    if count > len(config.alphabet):
        raise ValueError(f"{count} bars need {count} distinct labels; DenseBarsConfig.alphabet has {len(config.alphabet)}")
    plot = int(rng.integers(config.plot_patches[0], config.plot_patches[1] + 1))
    left = _even_origin(rng, grid, count, config.margin_patches)
    # Plot rows, then the label row (even), then one blank row below it.
    low = config.margin_patches + plot
    low += low % 2
    high = grid - config.margin_patches - 2
    if high < low:
        raise ValueError(f"a {plot}-patch plot does not fit a {grid}-patch grid with {config.margin_patches}-patch margins")
    label_row = low + 2 * int(rng.integers((high - low) // 2 + 1))
    axis_y = label_row * PATCH - 1  # the last pixel row of the plot, above the labels
    base, target_color = (list(PALETTE)[i] for i in rng.permutation(len(PALETTE))[:2])
    labels = "".join(rng.permutation(list(config.alphabet))[:count])
    target = int(rng.integers(count))
    bars = [{"col": left + i, "label": labels[i], "height": int(rng.integers(4, plot * PATCH - 1)),
             "color": target_color if i == target else base} for i in range(count)]
    description = {"family": "dense_bars", "label_row": label_row, "axis_y": axis_y, "bar_inset": config.bar_inset,
                   "bars": bars, "target_bar": target}
    bar = bars[target]
    x0, _, x1, _ = _patch_box(0, bar["col"])
    bar_box = [x0 + config.bar_inset, axis_y - bar["height"], x1 - config.bar_inset, axis_y]
    mate = bar["col"] + (1 if bar["col"] % 2 == 0 else -1)
    question = _question("dense_bar_label", f"What is the label under the {target_color} bar?", bar["label"],
                         [bar_box, _patch_box(label_row, bar["col"])], [label_row, bar["col"]], [label_row, mate])
    return RenderedImage(_render_dense(size, description), description, [question])


def twin_image(description: dict[str, Any], question: dict[str, Any], size: int = 672) -> tuple[Image.Image, str]:
    """The image with the answer patch's content swapped with its block-mate ``twin_partner``, and
    the twin's answer. Its 2×2 and 4×4 patch-block pixel means equal the original's."""
    import copy

    twin = copy.deepcopy(description)
    target, partner = tuple(question["target_patch"]), tuple(question["twin_partner"])
    if twin["family"] in ("dense_marks", "dense_glyphs"):
        key = "marks" if twin["family"] == "dense_marks" else "glyphs"
        cells = {(item[0], item[1]): item for item in twin[key]}
        cells[target][2], cells[partner][2] = cells[partner][2], cells[target][2]
        return _render_dense(size, twin), cells[target][2]
    by_col = {bar["col"]: bar for bar in twin["bars"]}
    a, b = by_col[target[1]], by_col[partner[1]]
    a["label"], b["label"] = b["label"], a["label"]
    return _render_dense(size, twin), a["label"]


def pool_pixels(pixels: np.ndarray, window: int) -> np.ndarray:
    """Sum of each aligned ``window × window`` px block per channel (exact integers; the mean times
    window²): (H, W, C) uint8 → (H/window, W/window, C) int64."""
    height, width, channels = pixels.shape
    if height % window or width % window:
        raise ValueError(f"image {height}×{width} is not a multiple of the pooling window {window}")
    return pixels.astype(np.int64).reshape(height // window, window, width // window, window, channels).sum(axis=(1, 3))


def patch_labels(pixels: np.ndarray, description: dict[str, Any]) -> dict[str, np.ndarray]:
    """Exact per-patch labels of one image (for pretraining a vision tower on the 48×48 grid).

    Returns:
        ``color``: (G, G) int64, 0 = no palette pixel, 1 + index into ``PALETTE`` of the palette
            colour with most pixels in the patch (exact, from the pixels, every family).
        ``glyph``: (G, G) int64, 0 = no text ink, 1 + index into ``GLYPH_ALPHABET`` for the dense
            families' one-character patches, ``IGNORE_LABEL`` where a patch holds ink of text that
            is not one whole character (the older families' codes and labels).
        ``frame``: (G, G) int64, 1 for the framed patch of ``dense_marks``/``dense_glyphs``.
    """
    size = pixels.shape[0]
    grid = size // PATCH
    # One integer per pixel (its RGB), so a palette lookup is one comparison per colour.
    keys = pixels.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    keys = keys.reshape(grid, PATCH, grid, PATCH).transpose(0, 2, 1, 3).reshape(grid, grid, PATCH * PATCH)
    palette = np.array([(r << 16) | (g << 8) | b for r, g, b in PALETTE.values()])
    hits = np.stack([(keys == key).sum(-1) for key in palette], axis=-1)  # (G, G, colours)
    color = np.where(hits.max(-1) > 0, hits.argmax(-1) + 1, 0)
    red, green, blue = TEXT_COLOR
    ink = (keys == ((red << 16) | (green << 8) | blue)).any(-1)
    glyph = np.where(ink, IGNORE_LABEL, 0)
    frame = np.zeros((grid, grid), dtype=np.int64)
    family = description.get("family")
    if family in ("dense_marks", "dense_glyphs"):
        frame[tuple(description["frame"])] = 1
    if family == "dense_glyphs":
        for row, col, char in description["glyphs"]:
            glyph[row, col] = 1 + GLYPH_ALPHABET.index(char) if char in GLYPH_ALPHABET else IGNORE_LABEL
    elif family == "dense_bars":
        for bar in description["bars"]:
            char = bar["label"]
            glyph[description["label_row"], bar["col"]] = 1 + GLYPH_ALPHABET.index(char) if char in GLYPH_ALPHABET else IGNORE_LABEL
    elif family == "dense_marks":
        glyph[tuple(description["frame"])] = 0  # the frame is text-coloured ink, not a character
    return {"color": color.astype(np.int64), "glyph": glyph.astype(np.int64), "frame": frame}
