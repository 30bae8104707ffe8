"""The patch-aligned detail families: the answer sits in a few patches, 2×2 and 4×4 average pooling
of the pixels cannot tell the image from its twin (same pooled pixels, other answer), and the
full-resolution answer patch can; per-patch labels and answer-region masks are exact."""

import json

import numpy as np
import pytest

from spatialvlm.data.synthetic_images import (
    BACKGROUND,
    DETAIL_FAMILIES,
    GLYPH_ALPHABET,
    IGNORE_LABEL,
    PALETTE,
    TEXT_COLOR,
    ImageSuiteConfig,
    generate_image_suite,
    make_image,
    patch_labels,
    pool_pixels,
    region_patch_mask,
    text_mask,
    twin_image,
)

NUM_IMAGES = 12  # 4 of each detail family


@pytest.fixture(scope="module")
def suite():
    config = ImageSuiteConfig(num_images=NUM_IMAGES, seed=7, families=DETAIL_FAMILIES)
    return [make_image(config, index) for index in range(NUM_IMAGES)]


def _read_patch(patch: np.ndarray) -> str | None:
    """The answer read from one full-resolution 14×14 patch alone, by hand-written rules: the
    palette colour of its centre pixel, else the character whose 1× glyph mask matches its ink."""
    centre = tuple(int(v) for v in patch[7, 7])
    for name, rgb in PALETTE.items():
        if centre == rgb:
            return name
    ink = (patch == np.array(TEXT_COLOR, dtype=np.uint8)).all(-1)
    ink[[0, -1], :] = False  # drop a frame ring
    ink[:, [0, -1]] = False
    for char in GLYPH_ALPHABET:
        glyph = np.zeros((14, 14), dtype=bool)
        glyph[1:12, 4:10] = text_mask(char)  # where the generator draws a 1× character in its patch
        if np.array_equal(ink, glyph):
            return char
    return None


def _patch(pixels, row, col):
    return pixels[row * 14 : (row + 1) * 14, col * 14 : (col + 1) * 14]


def test_answer_region_is_a_few_patches(suite):
    for item in suite:
        (question,) = item.rendered.questions
        mask = region_patch_mask(question["regions"])
        row, col = question["target_patch"]
        assert mask[row, col]  # the patch holding the answer is in the mask
        limit = 1 if item.family != "dense_bars" else 14  # a bar (≤ 12 patches tall) plus its label
        assert mask.sum() <= limit and mask.sum() / mask.size < 0.01


def test_pooling_erases_the_answer_and_full_resolution_keeps_it(suite):
    for item in suite:
        (question,) = item.rendered.questions
        pixels = np.asarray(item.rendered.image)
        twin, twin_answer = twin_image(item.rendered.description, question)
        twin_pixels = np.asarray(twin)
        assert twin_answer != question["answers"][0]
        # 2×2 patches (28 px: LaViDa's pooling) and 4×4 (56 px: the 144-token scaffold): identical
        # integer sums, so identical means, while the answers differ.
        for window in (28, 56):
            assert np.array_equal(pool_pixels(pixels, window), pool_pixels(twin_pixels, window))
        # Unpooled pixels differ only inside the answer's 2×2 block.
        changed = np.argwhere((pixels != twin_pixels).any(-1))
        row, col = question["target_patch"]
        assert changed.size and (changed // 28 == [row // 2, col // 2]).all()
        # The full-resolution answer patch reads the right answer in both images.
        assert _read_patch(_patch(pixels, row, col)) == question["answers"][0]
        assert _read_patch(_patch(twin_pixels, row, col)) == twin_answer


def test_pool_pixels_by_hand():
    pixels = np.zeros((56, 56, 3), dtype=np.uint8)
    pixels[0, 0] = 10
    pixels[30, 29] = [1, 2, 3]
    pooled = pool_pixels(pixels, 28)
    assert pooled.shape == (2, 2, 3)
    assert pooled[0, 0].tolist() == [10, 10, 10] and pooled[1, 1].tolist() == [1, 2, 3]
    assert pooled[0, 1].sum() == pooled[1, 0].sum() == 0
    with pytest.raises(ValueError, match="multiple"):
        pool_pixels(pixels[:50], 28)


def test_patch_labels_are_exact(suite):
    names = list(PALETTE)
    for item in suite:
        pixels = np.asarray(item.rendered.image)
        description = item.rendered.description
        labels = patch_labels(pixels, description)
        assert {key: value.shape for key, value in labels.items()} == {key: (48, 48) for key in ("color", "glyph", "frame")}
        blank = (pixels.reshape(48, 14, 48, 14, 3) == np.array(BACKGROUND, dtype=np.uint8)).all(-1).all(3).all(1)
        assert (labels["color"][blank] == 0).all() and (labels["glyph"][blank] == 0).all()
        if item.family == "dense_marks":
            for row, col, color in description["marks"]:
                assert labels["color"][row, col] == 1 + names.index(color)
            assert labels["frame"].sum() == 1 and labels["frame"][tuple(description["frame"])] == 1
            assert (labels["glyph"] == 0).all()
        elif item.family == "dense_glyphs":
            for row, col, char in description["glyphs"]:
                assert labels["glyph"][row, col] == 1 + GLYPH_ALPHABET.index(char)
                assert _read_patch(_patch(pixels, row, col)) == char  # the label is what is drawn
            assert (labels["color"] == 0).all()
        else:
            row = description["label_row"]
            for bar in description["bars"]:
                assert labels["glyph"][row, bar["col"]] == 1 + GLYPH_ALPHABET.index(bar["label"])
                assert labels["color"][row - 1, bar["col"]] == 1 + names.index(bar["color"])  # bar bottom patch
    # The older families: text that is not one whole character per patch is left unlabelled.
    older = make_image(ImageSuiteConfig(seed=7), 1)  # a glyph table of 3-character codes
    labels = patch_labels(np.asarray(older.rendered.image), older.rendered.description)
    assert (labels["glyph"] == IGNORE_LABEL).any() and not (labels["glyph"] > 0).any()


def test_written_detail_suite_records_masks_and_labels(tmp_path):
    config = ImageSuiteConfig(num_images=3, seed=1, split="train", families=DETAIL_FAMILIES)
    path = generate_image_suite(tmp_path, config, show_progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["question_type"] for row in rows] == ["dense_color", "dense_glyph", "dense_bar_label"]
    for index, row in enumerate(rows):
        expected = np.flatnonzero(region_patch_mask(row["regions"]).flatten()).tolist()
        assert row["region_patches"] == expected
        target_row, target_col = row["target_patch"]
        assert target_row * 48 + target_col in row["region_patches"]
        stored = json.loads((tmp_path / "images" / f"train_{index:05d}.json").read_text())["patch_labels"]
        item = make_image(config, index)
        fresh = patch_labels(np.asarray(item.rendered.image), item.rendered.description)
        assert all(np.array_equal(np.asarray(stored[key]), fresh[key]) for key in fresh)
