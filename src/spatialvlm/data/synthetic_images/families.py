"""The four image families of the suite: mark grids, glyph tables, bar charts and shape layouts.

Each ``make_*`` function draws one image from ``rng`` and returns a :class:`RenderedImage`: the PIL
image, a JSON-ready description of everything drawn (so answers can be recomputed), and question
rows (``question_type, question, answers, metric, regions``). Every answer hangs on a detail smaller
than one 56 px scaffold token of a 672 px image (4×4 pooled SigLIP patches), at a recorded position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from spatialvlm.data.synthetic_images.drawing import (
    BACKGROUND,
    LINE_GRAY,
    PALETTE,
    SHAPES,
    TEXT_COLOR,
    Box,
    draw_shape,
    draw_text,
)

__all__ = [
    "QUESTION_METRICS",
    "FAMILY_QUESTION_TYPES",
    "QUADRANTS",
    "RenderedImage",
    "MarkGridConfig",
    "GlyphGridConfig",
    "BarChartConfig",
    "LayoutConfig",
    "make_mark_grid",
    "make_glyph_grid",
    "make_bar_chart",
    "make_layout",
]

# How each question type is scored (names of spatialvlm.eval.image_metrics.IMAGE_METRICS).
QUESTION_METRICS: dict[str, str] = {
    "grid_color": "exact_match",
    "grid_count": "exact_match",
    "glyph_code": "anls",
    "bar_value": "relaxed_accuracy",
    "layout_quadrant": "exact_match",
    "layout_side": "exact_match",
    # The patch-aligned detail families (detail.py): one character or colour name, exact.
    "dense_color": "exact_match",
    "dense_glyph": "exact_match",
    "dense_bar_label": "exact_match",
}
FAMILY_QUESTION_TYPES: dict[str, tuple[str, ...]] = {
    "marks": ("grid_color", "grid_count"),
    "glyphs": ("glyph_code",),
    "bars": ("bar_value",),
    "layout": ("layout_quadrant", "layout_side"),
    "dense_marks": ("dense_color",),
    "dense_glyphs": ("dense_glyph",),
    "dense_bars": ("dense_bar_label",),
}
QUADRANTS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
_FONT_ADVANCE, _FONT_HEIGHT = 6, 11  # the bitmap font's cell, before scaling


@dataclass
class RenderedImage:
    """One drawn image.

    Attributes:
        image: RGB PIL image, ``size × size``.
        description: everything drawn, JSON-ready (family-specific keys, documented in
            docs/synthetic.md); boxes are ``[x0, y0, x1, y1]`` with exclusive ends.
        questions: rows ``{question_type, question, answers, metric, regions}``.
    """

    image: Image.Image
    description: dict[str, Any]
    questions: list[dict[str, Any]]


def _question(question_type: str, question: str, answer: str, regions: list[Box]) -> dict[str, Any]:
    return {
        "question_type": question_type,
        "question": question,
        "answers": [answer],
        "metric": QUESTION_METRICS[question_type],
        "regions": regions,
    }


def _type_order(rng: np.random.Generator, family: str, count: int) -> list[str]:
    """``count`` question types cycling through the family's types from a random start."""
    types = FAMILY_QUESTION_TYPES[family]
    start = int(rng.integers(len(types)))
    return [types[(start + j) % len(types)] for j in range(count)]


def _randint(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Uniform integer in the inclusive range ``bounds``."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _origin(rng: np.random.Generator, size: int, width: int, height: int, margin: int) -> tuple[int, int]:
    if width + 2 * margin > size or height + 2 * margin > size:
        raise ValueError(f"a {width}×{height} px block does not fit a {size} px image with {margin} px margins")
    return _randint(rng, (margin, size - margin - width)), _randint(rng, (margin, size - margin - height))


# --- marks -------------------------------------------------------------------------------------


@dataclass
class MarkGridConfig:
    """A grid of small coloured square marks ("what colour is the mark in row r, column c?",
    "how many red marks are there?").

    Attributes:
        rows, cols: inclusive ranges of the grid size.
        pitch: centre-to-centre spacing in px. 28 = half a scaffold token at 672 px, so each
            56 px scaffold token averages 2×2 marks of independent colours.
        mark_size: side of a mark in px (14 = one SigLIP patch).
        fill_probability: chance that a cell holds a mark (empty cells make counting non-trivial).
        colors: palette names the marks use.
        margin: least distance in px from the grid frame to the image border.
    """

    rows: tuple[int, int] = (4, 8)
    cols: tuple[int, int] = (4, 8)
    pitch: int = 28
    mark_size: int = 14
    fill_probability: float = 0.75
    colors: tuple[str, ...] = tuple(PALETTE)
    margin: int = 8


def make_mark_grid(rng: np.random.Generator, size: int, config: MarkGridConfig, num_questions: int) -> RenderedImage:
    """A mark grid inside a grey frame at a random position; rows and columns count from the
    top-left cell as 1 (empty cells count too)."""
    rows, cols = _randint(rng, config.rows), _randint(rng, config.cols)
    width, height = cols * config.pitch, rows * config.pitch
    x0, y0 = _origin(rng, size, width + 2, height + 2, config.margin)
    x0, y0 = x0 + 1, y0 + 1  # the frame line sits one pixel outside the cell block
    filled = rng.random((rows, cols)) < config.fill_probability
    filled[rng.integers(rows), rng.integers(cols)] = True  # never an empty grid
    colors = rng.integers(len(config.colors), size=(rows, cols))

    image = Image.new("RGB", (size, size), BACKGROUND)
    ImageDraw.Draw(image).rectangle([x0 - 1, y0 - 1, x0 + width, y0 + height], outline=LINE_GRAY)
    inset = (config.pitch - config.mark_size) // 2
    marks = []
    for row, col in zip(*np.nonzero(filled)):
        left, top = x0 + int(col) * config.pitch + inset, y0 + int(row) * config.pitch + inset
        box = [left, top, left + config.mark_size, top + config.mark_size]
        color = config.colors[colors[row, col]]
        draw_shape(image, "square", box, PALETTE[color])
        marks.append({"row": int(row) + 1, "col": int(col) + 1, "color": color, "box": box})

    questions = []
    by_color: dict[str, list[dict[str, Any]]] = {}
    for mark in marks:
        by_color.setdefault(mark["color"], []).append(mark)
    cell_order = rng.permutation(len(marks)).tolist()
    color_order = [sorted(by_color)[i] for i in rng.permutation(len(by_color))]
    for question_type in _type_order(rng, "marks", num_questions):
        if question_type == "grid_color" and cell_order:
            mark = marks[cell_order.pop()]
            questions.append(_question(
                "grid_color", f"What color is the mark in row {mark['row']}, column {mark['col']}?",
                mark["color"], [mark["box"]],
            ))
        elif question_type == "grid_count" and color_order:
            color = color_order.pop()
            questions.append(_question(
                "grid_count", f"How many {color} marks are there?",
                str(len(by_color[color])), [mark["box"] for mark in by_color[color]],
            ))
    description = {
        "family": "marks", "rows": rows, "cols": cols, "origin": [x0, y0], "pitch": config.pitch,
        "mark_size": config.mark_size, "marks": marks,
    }
    return RenderedImage(image, description, questions)


# --- glyphs ------------------------------------------------------------------------------------


@dataclass
class GlyphGridConfig:
    """A ruled table of short codes in small bitmap type ("what is the code in row r, column c?",
    scored by ANLS as DocVQA is).

    Attributes:
        rows, cols: inclusive ranges of the table size.
        code_length: characters per code.
        alphabet: characters codes are drawn from (0/O and 1/I left out as too alike).
        text_scale: font pixel size in image pixels; 2 makes a character 12×14 px of ink.
        padding: (x, y) px between a code and its cell's ruling.
        margin: least distance in px from the table to the image border.
    """

    rows: tuple[int, int] = (3, 6)
    cols: tuple[int, int] = (2, 4)
    code_length: int = 3
    alphabet: str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    text_scale: int = 2
    padding: tuple[int, int] = (6, 5)
    margin: int = 8


def make_glyph_grid(rng: np.random.Generator, size: int, config: GlyphGridConfig, num_questions: int) -> RenderedImage:
    """A table of distinct codes at a random position; rows and columns count from 1 at the top left."""
    rows, cols = _randint(rng, config.rows), _randint(rng, config.cols)
    cell_width = config.code_length * _FONT_ADVANCE * config.text_scale + 2 * config.padding[0]
    cell_height = _FONT_HEIGHT * config.text_scale + 2 * config.padding[1]
    x0, y0 = _origin(rng, size, cols * cell_width + 1, rows * cell_height + 1, config.margin)
    alphabet = np.array(list(config.alphabet))
    codes: list[str] = []
    while len(codes) < rows * cols:
        code = "".join(rng.choice(alphabet, config.code_length))
        if code not in codes:
            codes.append(code)

    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for row in range(rows + 1):
        draw.line([(x0, y0 + row * cell_height), (x0 + cols * cell_width, y0 + row * cell_height)], fill=LINE_GRAY)
    for col in range(cols + 1):
        draw.line([(x0 + col * cell_width, y0), (x0 + col * cell_width, y0 + rows * cell_height)], fill=LINE_GRAY)
    cells = []
    for index, code in enumerate(codes):
        row, col = divmod(index, cols)
        text_x = x0 + col * cell_width + config.padding[0]
        text_y = y0 + row * cell_height + config.padding[1]
        box = draw_text(image, code, text_x, text_y, config.text_scale, TEXT_COLOR)
        cells.append({"row": row + 1, "col": col + 1, "code": code, "text_origin": [text_x, text_y], "box": box})

    order = rng.permutation(len(cells)).tolist()
    questions = [
        _question("glyph_code", f"What is the code in row {cell['row']}, column {cell['col']}?", cell["code"], [cell["box"]])
        for cell in (cells[order.pop()] for _ in range(min(num_questions, len(cells))))
    ]
    description = {
        "family": "glyphs", "rows": rows, "cols": cols, "origin": [x0, y0], "cell_size": [cell_width, cell_height],
        "text_scale": config.text_scale, "cells": cells,
    }
    return RenderedImage(image, description, questions)


# --- bars --------------------------------------------------------------------------------------


@dataclass
class BarChartConfig:
    """A bar chart with small value labels over the bars and letters under them ("what is the
    value of bar C?", scored by ChartQA's relaxed accuracy).

    Attributes:
        bars: inclusive range of the number of bars (lettered A, B, …).
        values: inclusive range of the integer bar values.
        plot_height: inclusive range of the px height of a bar of value 100 (shrunk to fit).
        bar_width, gap: bar width and the space between bars, px.
        text_scale: font pixel size of the labels (2: a two-digit label is 24×14 px of ink).
        label_gap: px between a bar top and its value label, and between the axis and the letters.
        margin: least distance in px from the chart to the image border.
    """

    bars: tuple[int, int] = (4, 6)
    values: tuple[int, int] = (10, 99)
    plot_height: tuple[int, int] = (160, 320)
    bar_width: int = 24
    gap: int = 20
    text_scale: int = 2
    label_gap: int = 4
    margin: int = 8


def make_bar_chart(rng: np.random.Generator, size: int, config: BarChartConfig, num_questions: int) -> RenderedImage:
    """Bars of one palette colour on a grey axis; bar height = round(value × plot_height / 100)."""
    count = _randint(rng, config.bars)
    values = [_randint(rng, config.values) for _ in range(count)]
    letters = [chr(ord("A") + index) for index in range(count)]
    text_height = _FONT_HEIGHT * config.text_scale
    furniture = 2 * (text_height + config.label_gap) + 1  # labels above and below, axis line
    plot_height = min(_randint(rng, config.plot_height), size - 2 * config.margin - furniture)
    width = count * (config.bar_width + config.gap) + config.gap
    x0, y0 = _origin(rng, size, width, plot_height + furniture, config.margin)
    axis_y = y0 + text_height + config.label_gap + plot_height
    color = list(PALETTE)[int(rng.integers(len(PALETTE)))]

    image = Image.new("RGB", (size, size), BACKGROUND)
    ImageDraw.Draw(image).line([(x0, axis_y), (x0 + width - 1, axis_y)], fill=LINE_GRAY)
    bars = []
    for index, (letter, value) in enumerate(zip(letters, values)):
        left = x0 + config.gap + index * (config.bar_width + config.gap)
        height = int(round(value * plot_height / 100))
        bar_box = [left, axis_y - height, left + config.bar_width, axis_y]
        draw_shape(image, "square", bar_box, PALETTE[color])
        label = str(value)
        label_width = len(label) * _FONT_ADVANCE * config.text_scale
        label_x = left + (config.bar_width - label_width) // 2
        value_box = draw_text(image, label, label_x, bar_box[1] - config.label_gap - text_height, config.text_scale, TEXT_COLOR)
        letter_x = left + (config.bar_width - _FONT_ADVANCE * config.text_scale) // 2
        letter_box = draw_text(image, letter, letter_x, axis_y + 1 + config.label_gap, config.text_scale, TEXT_COLOR)
        bars.append({"letter": letter, "value": value, "bar_box": bar_box, "value_box": value_box, "letter_box": letter_box})

    order = rng.permutation(count).tolist()
    questions = [
        _question("bar_value", f"What is the value of bar {bar['letter']}?", str(bar["value"]),
                  [bar["letter_box"], bar["value_box"]])
        for bar in (bars[order.pop()] for _ in range(min(num_questions, count)))
    ]
    description = {
        "family": "bars", "color": color, "axis_y": axis_y, "plot_height": plot_height,
        "pixels_per_unit": plot_height / 100, "text_scale": config.text_scale, "bars": bars,
    }
    return RenderedImage(image, description, questions)


# --- layout ------------------------------------------------------------------------------------


@dataclass
class LayoutConfig:
    """Small shapes scattered over the image ("which quadrant holds the small triangle?", "is the
    star left or right of the circle?"). The three shapes asked about appear once each; the others
    are distractors of the remaining kinds, in random palette colours (colour never gives a shape
    away).

    Attributes:
        shapes: inclusive range of the number of shapes (at least 3).
        shape_size: inclusive range of a shape's side in px.
        min_gap: least px between two shapes' boxes (they never touch).
        midline_margin: least px from the quadrant target's box to either midline.
        side_margin: least horizontal px between the centres of a left/right pair.
        margin: least px from a shape to the image border.
        max_tries: placement attempts per shape before giving up on a distractor.
    """

    shapes: tuple[int, int] = (6, 10)
    shape_size: tuple[int, int] = (16, 24)
    min_gap: int = 8
    midline_margin: int = 16
    side_margin: int = 24
    margin: int = 8
    max_tries: int = 200


def _centre_x(box: Box) -> float:
    return (box[0] + box[2]) / 2


def _quadrant(box: Box, size: int) -> str:
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return ("top " if centre_y < size / 2 else "bottom ") + ("left" if centre_x < size / 2 else "right")


def make_layout(rng: np.random.Generator, size: int, config: LayoutConfig, num_questions: int) -> RenderedImage:
    """Shapes placed by rejection sampling; the quadrant target clears both midlines and the
    left/right pair is ``side_margin`` apart horizontally, so every answer is unambiguous."""
    if config.shapes[0] < 3:
        raise ValueError(f"LayoutConfig.shapes must allow at least 3 shapes; got {config.shapes}")
    kinds = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    target, side_a, side_b, distractor_kinds = kinds[0], kinds[1], kinds[2], kinds[3:]
    count = _randint(rng, config.shapes)
    plan = [target, side_a, side_b] + [distractor_kinds[int(rng.integers(len(distractor_kinds)))] for _ in range(count - 3)]
    middle = size / 2
    shapes: list[dict[str, Any]] = []
    for index, kind in enumerate(plan):
        for _ in range(config.max_tries):
            side = _randint(rng, config.shape_size)
            left = _randint(rng, (config.margin, size - config.margin - side))
            top = _randint(rng, (config.margin, size - config.margin - side))
            box = [left, top, left + side, top + side]
            if any(box[0] < other[2] + config.min_gap and other[0] < box[2] + config.min_gap
                   and box[1] < other[3] + config.min_gap and other[1] < box[3] + config.min_gap
                   for other in (shape["box"] for shape in shapes)):
                continue
            if index == 0 and any(low - config.midline_margin < middle < high + config.midline_margin
                                  for low, high in ((box[0], box[2]), (box[1], box[3]))):
                continue
            if index == 2 and abs(_centre_x(box) - _centre_x(shapes[1]["box"])) < config.side_margin:
                continue
            color = list(PALETTE)[int(rng.integers(len(PALETTE)))]
            shapes.append({"shape": kind, "color": color, "box": box})
            break
        else:
            if index < 3:
                raise ValueError(f"could not place the {kind} in {config.max_tries} tries; loosen LayoutConfig")

    image = Image.new("RGB", (size, size), BACKGROUND)
    for shape in shapes:
        draw_shape(image, shape["shape"], shape["box"], PALETTE[shape["color"]])
    target_box, box_a, box_b = shapes[0]["box"], shapes[1]["box"], shapes[2]["box"]
    questions = []
    for question_type in _type_order(rng, "layout", min(num_questions, 2)):
        if question_type == "layout_quadrant":
            questions.append(_question("layout_quadrant", f"Which quadrant holds the small {target}?",
                                       _quadrant(target_box, size), [target_box]))
        else:
            side = "left" if _centre_x(box_a) < _centre_x(box_b) else "right"
            questions.append(_question("layout_side", f"Is the {side_a} left or right of the {side_b}?",
                                       side, [box_a, box_b]))
    description = {"family": "layout", "shapes": shapes, "quadrant_target": 0, "side_pair": [1, 2]}
    return RenderedImage(image, description, questions)

