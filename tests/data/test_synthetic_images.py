"""The synthetic image suite: answers re-derived from the rendered pixels, seeding, file format."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from spatialvlm.data.image_readers import read_image_suite
from spatialvlm.data.synthetic_images import (
    BACKGROUND,
    FAMILIES,
    FAMILY_QUESTION_TYPES,
    PALETTE,
    QUESTION_METRICS,
    TEXT_COLOR,
    ImageSuiteConfig,
    generate_image_suite,
    make_image,
    region_patch_mask,
    text_mask,
)

NUM_IMAGES = 24  # 6 of each family


@pytest.fixture(scope="module")
def suite():
    config = ImageSuiteConfig(num_images=NUM_IMAGES, seed=11, questions_per_image=3)
    return [make_image(config, index) for index in range(NUM_IMAGES)]


def _pixels(item):
    return np.asarray(item.rendered.image)


def _of_family(suite, family):
    items = [item for item in suite if item.family == family]
    assert len(items) == NUM_IMAGES // 4
    return items


def _components(mask):
    """8-connected component labels of a bool mask (0 = background), by min-label propagation."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    big = np.iinfo(labels.dtype).max
    while True:
        padded = np.pad(np.where(labels == 0, big, labels), 1, constant_values=big)
        height, width = mask.shape
        neighbours = [padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        updated = np.where(mask, np.minimum.reduce(neighbours), 0)
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def _color_mask(pixels, color):
    return (pixels == np.array(color, dtype=np.uint8)).all(axis=-1)


def _crop(array, box):
    x0, y0, x1, y1 = box
    return array[y0:y1, x0:x1]


def _row_col(question):
    row, col = re.search(r"row (\d+), column (\d+)", question).groups()
    return int(row), int(col)


def test_mark_answers_match_the_pixels(suite):
    for item in _of_family(suite, "marks"):
        pixels, description = _pixels(item), item.rendered.description
        for question in item.rendered.questions:
            answer = question["answers"][0]
            if question["question_type"] == "grid_color":
                row, col = _row_col(question["question"])
                # The cell centre, from the grid geometry alone.
                x = description["origin"][0] + (col - 1) * description["pitch"] + description["pitch"] // 2
                y = description["origin"][1] + (row - 1) * description["pitch"] + description["pitch"] // 2
                seen = [name for name, rgb in PALETTE.items() if tuple(pixels[y, x]) == rgb]
                assert seen == [answer]
            else:
                color = re.search(r"How many (\w+) marks", question["question"]).group(1)
                labels = _components(_color_mask(pixels, PALETTE[color]))
                assert len(np.unique(labels[labels > 0])) == int(answer)
                assert len(question["regions"]) == int(answer)
            for box in question["regions"]:
                assert _color_mask(_crop(pixels, box), PALETTE[answer if answer in PALETTE else color]).all()


def test_glyph_codes_are_the_ink_in_the_asked_cell(suite):
    for item in _of_family(suite, "glyphs"):
        pixels, description = _pixels(item), item.rendered.description
        ink = _color_mask(pixels, TEXT_COLOR)
        cell_width, cell_height = description["cell_size"]
        for question in item.rendered.questions:
            answer = question["answers"][0]
            row, col = _row_col(question["question"])
            cell = [
                description["origin"][0] + (col - 1) * cell_width + 1, description["origin"][1] + (row - 1) * cell_height + 1,
                description["origin"][0] + col * cell_width, description["origin"][1] + row * cell_height,
            ]
            cell_ink = _crop(ink, cell)
            # The cell's ink, cut to its bounding box, is exactly the answer's glyphs cut the same way.
            expected = _tight(text_mask(answer, description["text_scale"]))
            assert np.array_equal(_tight(cell_ink), expected), (answer, question["question"])
            (region,) = question["regions"]
            assert _crop(ink, region).sum() == cell_ink.sum()  # the region holds all of the code's ink
            assert question["metric"] == "anls"


def test_bar_values_match_bar_heights_and_labels(suite):
    for item in _of_family(suite, "bars"):
        pixels, description = _pixels(item), item.rendered.description
        bar_pixels = _color_mask(pixels, PALETTE[description["color"]])
        ink = _color_mask(pixels, TEXT_COLOR)
        scale = description["text_scale"]
        for question in item.rendered.questions:
            answer = question["answers"][0]
            letter = re.search(r"value of bar (\w)\?", question["question"]).group(1)
            letter_box, value_box = question["regions"]
            assert np.array_equal(_crop(ink, letter_box), _tight(text_mask(letter, scale)))
            assert np.array_equal(_crop(ink, value_box), _tight(text_mask(answer, scale)))
            # Measure the bar above the letter: its height in pixels recovers the value exactly.
            column = bar_pixels[:, (letter_box[0] + letter_box[2]) // 2]
            height = int(column.sum())
            assert np.flatnonzero(column)[-1] == description["axis_y"] - 1
            assert round(height / description["pixels_per_unit"]) == int(answer)
            assert question["metric"] == "relaxed_accuracy"


def _tight(mask):
    """``mask`` cut to the bounding box of its True pixels."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _classify(mask):
    """Shape name from a component's pixels alone: fill ratio and full-width rows."""
    mask = _tight(mask)
    fill = mask.mean()
    full_rows = mask.all(axis=1)
    if fill > 0.95:
        return "square"
    if fill < 0.46:  # stars fill about 0.37-0.43 of their box, every other shape at least 0.5
        return "star"
    if 0.7 < fill < 0.9:
        return "circle"
    if full_rows[-1] and not full_rows[0]:
        return "triangle"
    return "cross" if full_rows.sum() >= 3 else "diamond"


def test_layout_answers_match_the_pixels(suite):
    for item in _of_family(suite, "layout"):
        pixels = _pixels(item)
        size = pixels.shape[0]
        labels = _components(~_color_mask(pixels, BACKGROUND))
        shapes = {}
        for label in np.unique(labels[labels > 0]):
            ys, xs = np.nonzero(labels == label)
            component = labels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] == label
            shapes[int(label)] = (_classify(component), xs.mean(), ys.mean())
        kinds = [kind for kind, _, _ in shapes.values()]
        described = [shape["shape"] for shape in item.rendered.description["shapes"]]
        assert sorted(kinds) == sorted(described)  # every shape is recognised from its pixels
        for question in item.rendered.questions:
            answer = question["answers"][0]
            if question["question_type"] == "layout_quadrant":
                asked = re.search(r"small (\w+)\?", question["question"]).group(1)
                (found,) = [(x, y) for kind, x, y in shapes.values() if kind == asked]
                quadrant = ("top " if found[1] < size / 2 else "bottom ") + ("left" if found[0] < size / 2 else "right")
                assert quadrant == answer
            else:
                first, second = re.search(r"Is the (\w+) left or right of the (\w+)\?", question["question"]).groups()
                (first_x,) = [x for kind, x, _ in shapes.values() if kind == first]
                (second_x,) = [x for kind, x, _ in shapes.values() if kind == second]
                assert ("left" if first_x < second_x else "right") == answer
                assert abs(first_x - second_x) >= 20


def test_questions_regions_and_metrics_are_consistent(suite):
    types = set()
    for item in suite:
        pixels = _pixels(item)
        assert pixels.shape == (672, 672, 3)
        background = _color_mask(pixels, BACKGROUND)
        for question in item.rendered.questions:
            types.add(question["question_type"])
            assert question["metric"] == QUESTION_METRICS[question["question_type"]]
            assert question["question"].isascii() and all(answer.isascii() for answer in question["answers"])
            for box in question["regions"]:
                x0, y0, x1, y1 = box
                assert 0 <= x0 < x1 <= 672 and 0 <= y0 < y1 <= 672
                assert not _crop(background, box).all()  # every region holds the drawn detail
                assert max(x1 - x0, y1 - y0) < 56  # smaller than one scaffold token
        if item.family in ("marks", "glyphs", "bars"):
            assert len(item.rendered.questions) == 3
    # The default suite draws the four original families; the detail families have their own tests.
    assert types == {kind for family in FAMILIES for kind in FAMILY_QUESTION_TYPES[family]}


def test_seeding_is_reproducible_and_per_image():
    config = ImageSuiteConfig(num_images=4, seed=5)
    first, again = make_image(config, 2), make_image(ImageSuiteConfig(num_images=400, seed=5), 2)
    assert np.array_equal(_pixels(first), _pixels(again)) and first.rendered.questions == again.rendered.questions
    other_seed = make_image(ImageSuiteConfig(seed=6), 2)
    other_split = make_image(ImageSuiteConfig(seed=5, split="train"), 2)
    assert not np.array_equal(_pixels(first), _pixels(other_seed))
    assert not np.array_equal(_pixels(first), _pixels(other_split))
    with pytest.raises(ValueError, match="families"):
        make_image(ImageSuiteConfig(families=("maps",)), 0)


def test_region_patch_mask():
    mask = region_patch_mask([[0, 0, 14, 14], [20, 30, 43, 31]], image_size=672, patch_size=14)
    assert mask.shape == (48, 48)
    expected = np.zeros((48, 48), dtype=bool)
    expected[0, 0] = True
    expected[2, 1:4] = True  # x 20..42 spans patch columns 1-3, y 30 is patch row 2
    assert np.array_equal(mask, expected)
    with pytest.raises(ValueError, match="outside"):
        region_patch_mask([[660, 0, 680, 10]])


def test_written_suite_reads_back(tmp_path):
    config = ImageSuiteConfig(num_images=4, seed=2, split="val")
    path = generate_image_suite(tmp_path, config, show_progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {"id", "dataset", "image", "question_type", "question", "answers", "metric", "regions"} <= set(rows[0])
    items = read_image_suite(tmp_path, "val")
    assert [item.id for item in items] == [row["id"] for row in rows]
    in_memory = make_image(config, 1)
    item = next(item for item in items if item.id.startswith(in_memory.name))
    assert np.array_equal(np.asarray(Image.open(item.image_path).convert("RGB")), _pixels(in_memory))
    description = json.loads((tmp_path / "images" / f"{in_memory.name}.json").read_text())
    assert description["family"] == in_memory.family and description["image_size"] == 672
    assert item.regions == in_memory.rendered.questions[0]["regions"]
