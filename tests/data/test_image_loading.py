"""Images as users have them: phone photos with an EXIF orientation, 16-bit PNGs, extreme shapes,
files that are not images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from spatialvlm.data.preprocess import load_image, siglip_preprocess


def _pattern(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    stored = _pattern(40, 80)  # a portrait photo stored sideways, tagged "rotate 90° clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the 0th row is the visual right side
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    upright = np.rot90(stored, k=-1)  # what a viewer shows: 80 tall, 40 wide
    expected = siglip_preprocess(Image.fromarray(np.ascontiguousarray(upright)), 28)
    assert np.array_equal(siglip_preprocess(Image.open(path), 28).numpy(), expected.numpy())
    assert load_image(path).size == (40, 80)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 … 65472
    path = tmp_path / "depth_like.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    eight_bit = np.round(values / 257.0).astype(np.uint8)
    expected = siglip_preprocess(Image.fromarray(np.stack([eight_bit] * 3, -1)), 32)
    got = siglip_preprocess(Image.open(path), 32)
    assert np.array_equal(got.numpy(), expected.numpy())
    assert float(got.mean()) < 0.5  # Pillow's own convert("RGB") would give a white image (1.0)


@pytest.mark.parametrize(("size", "warning"), [((10000, 50), "aspect ratio 200:1"), ((1, 1), "only 1×1 px")])
def test_extreme_or_tiny_images_warn(tmp_path, size, warning):
    path = tmp_path / "odd.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    with pytest.warns(UserWarning, match=warning):
        load_image(path, size=672)


def test_ordinary_image_loads_silently(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(_pattern(300, 400)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).size == (400, 300)


def test_unreadable_files_are_named(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match=f"cannot read image {text}: not an image file"):
        load_image(text)
    jpeg = tmp_path / "cut.jpg"
    Image.fromarray(_pattern(64, 64)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated"):
        load_image(jpeg)
    with pytest.raises(ValueError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
