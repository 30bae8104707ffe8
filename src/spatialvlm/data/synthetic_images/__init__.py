"""Synthetic high-detail image suite for SHIRG-X: 672 px images whose answers hang on small
details at known positions (mark grids, glyph tables, bar charts with small labels, shape layouts),
with exact answers, scoring metric and answer regions per question.

``make_image`` draws one image (nothing written); ``generate_image_suite`` writes a split that
``spatialvlm eval --benchmark shirgx-images`` scores.
"""

from spatialvlm.data.synthetic_images.dataset import (
    FAMILIES,
    IMAGE_SUITE_NAME,
    ImageSuiteConfig,
    SyntheticImage,
    generate_image_suite,
    make_image,
    region_patch_mask,
)
from spatialvlm.data.synthetic_images.drawing import (
    BACKGROUND,
    LINE_GRAY,
    PALETTE,
    SHAPES,
    TEXT_COLOR,
    bitmap_font,
    box_of,
    draw_shape,
    draw_text,
    text_mask,
)
from spatialvlm.data.synthetic_images.families import (
    FAMILY_QUESTION_TYPES,
    QUADRANTS,
    QUESTION_METRICS,
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
    "BACKGROUND",
    "BarChartConfig",
    "FAMILIES",
    "FAMILY_QUESTION_TYPES",
    "GlyphGridConfig",
    "IMAGE_SUITE_NAME",
    "ImageSuiteConfig",
    "LINE_GRAY",
    "LayoutConfig",
    "MarkGridConfig",
    "PALETTE",
    "QUADRANTS",
    "QUESTION_METRICS",
    "RenderedImage",
    "SHAPES",
    "SyntheticImage",
    "TEXT_COLOR",
    "bitmap_font",
    "box_of",
    "draw_shape",
    "draw_text",
    "generate_image_suite",
    "make_bar_chart",
    "make_glyph_grid",
    "make_image",
    "make_layout",
    "make_mark_grid",
    "region_patch_mask",
    "text_mask",
]
