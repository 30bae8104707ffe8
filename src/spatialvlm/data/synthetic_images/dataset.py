"""Write the synthetic high-detail image suite (what ``spatialvlm synth --images`` runs).

Layout of ``out_dir`` (what ``spatialvlm eval --benchmark shirgx-images --data out_dir`` reads)::

    <split>.jsonl                     one question per line (format below)
    images/<split>_<k:05d>.png        the image, RGB, image_size × image_size, lossless
    images/<split>_<k:05d>.json       the description of everything drawn (answers recompute from it)

A row: ``{"id", "dataset": "shirgx-images", "image": "images/<name>.png", "question_type",
"question", "answers": [...], "metric": "exact_match" | "relaxed_accuracy" | "anls",
"regions": [[x0, y0, x1, y1], ...], "region_patches": [...]}`` — ``regions`` are the pixel boxes
(exclusive ends) the answer depends on, ``region_patches`` the row-major indices of the 48×48 patches
they overlap (the answer-region mask). The detail families (``DETAIL_FAMILIES``) add
``target_patch``/``twin_partner`` ([row, col] patches; see ``detail.twin_image``), and every image's
json holds ``patch_labels`` (``detail.patch_labels``: per-patch colour, glyph and frame classes). Image ``k`` of split ``s`` with seed ``S`` is drawn from
``np.random.SeedSequence([S, crc32(s), k])``; its family is ``families[k % len(families)]``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spatialvlm.data.readers import write_jsonl
from spatialvlm.data.synthetic_images.detail import (
    DETAIL_FAMILIES,
    DenseBarsConfig,
    DenseGlyphsConfig,
    DenseMarksConfig,
    make_dense_bars,
    make_dense_glyphs,
    make_dense_marks,
    patch_labels,
)
from spatialvlm.data.synthetic_images.families import (
    BarChartConfig,
    GlyphGridConfig,
    LayoutConfig,
    MarkGridConfig,
    RenderedImage,
    make_bar_chart,
    make_glyph_grid,
    make_layout,
    make_mark_grid,
)

__all__ = [
    "IMAGE_SUITE_NAME",
    "FAMILIES",
    "ALL_FAMILIES",
    "ImageSuiteConfig",
    "SyntheticImage",
    "make_image",
    "generate_image_suite",
    "region_patch_mask",
]

IMAGE_SUITE_NAME = "shirgx-images"
FAMILIES: tuple[str, ...] = ("marks", "glyphs", "bars", "layout")
ALL_FAMILIES: tuple[str, ...] = FAMILIES + DETAIL_FAMILIES  # the default suite keeps the first four


@dataclass
class ImageSuiteConfig:
    """Everything that determines a split of the image suite.

    Attributes:
        num_images: images in the split (questions = about ``num_images × questions_per_image``).
        image_size: square side in px; 672 = SHIRG-X's 48×48 patch grid at patch 14.
        seed: base seed.
        split: split name, also the jsonl stem.
        questions_per_image: questions asked about each image (a layout image has at most 2, a
            chart at most its number of bars).
        families: which families to draw (of ``ALL_FAMILIES``), cycled over the image index.
        marks, glyphs, bars, layout, dense_marks, dense_glyphs, dense_bars: the family configs.
        write_patch_labels: store ``patch_labels`` in each image's json (about 15 kB each).
    """

    num_images: int = 64
    image_size: int = 672
    seed: int = 0
    split: str = "test"
    questions_per_image: int = 2
    families: tuple[str, ...] = FAMILIES
    marks: MarkGridConfig = field(default_factory=MarkGridConfig)
    glyphs: GlyphGridConfig = field(default_factory=GlyphGridConfig)
    bars: BarChartConfig = field(default_factory=BarChartConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    dense_marks: DenseMarksConfig = field(default_factory=DenseMarksConfig)
    dense_glyphs: DenseGlyphsConfig = field(default_factory=DenseGlyphsConfig)
    dense_bars: DenseBarsConfig = field(default_factory=DenseBarsConfig)
    write_patch_labels: bool = True


@dataclass
class SyntheticImage:
    """One generated image: its name, family, drawing and question rows (no files written)."""

    name: str
    family: str
    rendered: RenderedImage


_MAKERS = {
    "marks": make_mark_grid, "glyphs": make_glyph_grid, "bars": make_bar_chart, "layout": make_layout,
    "dense_marks": make_dense_marks, "dense_glyphs": make_dense_glyphs, "dense_bars": make_dense_bars,
}


def make_image(config: ImageSuiteConfig, index: int) -> SyntheticImage:
    """Draw image ``index`` of ``config.split``."""
    unknown = sorted(set(config.families) - set(ALL_FAMILIES))
    if unknown or not config.families:
        raise ValueError(f"families must be a non-empty subset of {ALL_FAMILIES}; got {config.families}")
    if config.questions_per_image < 1:
        raise ValueError(f"questions_per_image must be >= 1; got {config.questions_per_image}")
    family = config.families[index % len(config.families)]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, zlib.crc32(config.split.encode()), index]))
    # Each family's drawing settings are the config field of the same name.
    rendered = _MAKERS[family](rng, config.image_size, getattr(config, family), config.questions_per_image)
    return SyntheticImage(f"{config.split}_{index:05d}", family, rendered)


def generate_image_suite(out_dir: str | Path, config: ImageSuiteConfig | None = None, show_progress: bool = True) -> Path:
    """Draw ``config.num_images`` images and write the split (see the module docstring).

    Returns the path of ``<split>.jsonl``. Question ids are ``<image name>_<j>``.
    """
    config = config or ImageSuiteConfig()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    progress = tqdm(range(config.num_images), desc=f"synth images {config.split}", unit="img", disable=not show_progress)
    for index in progress:
        item = make_image(config, index)
        relative = f"images/{item.name}.png"
        # compress_level 1: mostly-white images stay small and writing stays fast.
        item.rendered.image.save(out_dir / relative, compress_level=1)
        description = {"name": item.name, "image_size": config.image_size, **item.rendered.description}
        if config.write_patch_labels:
            labels = patch_labels(np.asarray(item.rendered.image), item.rendered.description)
            description["patch_labels"] = {key: value.tolist() for key, value in labels.items()}
        (out_dir / "images" / f"{item.name}.json").write_text(json.dumps(description))
        for number, question in enumerate(item.rendered.questions):
            mask = region_patch_mask(question["regions"], config.image_size).flatten()
            rows.append({"id": f"{item.name}_{number}", "dataset": IMAGE_SUITE_NAME, "image": relative, **question,
                         "region_patches": np.flatnonzero(mask).tolist()})
    path = out_dir / f"{config.split}.jsonl"
    write_jsonl(path, rows)
    return path


def region_patch_mask(regions: list[list[int]], image_size: int = 672, patch_size: int = 14) -> np.ndarray:
    """Which patches of the ``image_size / patch_size`` square grid overlap any region.

    Args:
        regions: boxes ``[x0, y0, x1, y1]`` in pixels, exclusive ends.
    Returns:
        bool array (grid, grid), row-major like SigLIP's patch order (flatten for token indices).
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    grid = image_size // patch_size
    mask = np.zeros((grid, grid), dtype=bool)
    for x0, y0, x1, y1 in regions:
        if not (0 <= x0 < x1 <= image_size and 0 <= y0 < y1 <= image_size):
            raise ValueError(f"region {[x0, y0, x1, y1]} is empty or outside a {image_size} px image")
        mask[y0 // patch_size : (y1 - 1) // patch_size + 1, x0 // patch_size : (x1 - 1) // patch_size + 1] = True
    return mask
