"""siglip_preprocess against transformers' SiglipImageProcessorPil built locally (no download)."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from spatialvlm.data.preprocess import siglip_preprocess


def _reference(images, size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    processor = SiglipImageProcessorPil(
        size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std)
    )
    return processor(images=images, return_tensors="pt")["pixel_values"]


def _random_image(rng, height, width, mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), mode=mode)


def test_matches_siglip_image_processor_on_pil_list():
    rng = np.random.default_rng(0)
    images = [_random_image(rng, 50, 70), _random_image(rng, 90, 33), _random_image(rng, 20, 20)]
    ours = siglip_preprocess(images, size=56)
    reference = _reference(images, 56)
    assert ours.shape == (3, 3, 56, 56) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_matches_reference_for_frames_array_and_custom_normalisation():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 40, 64, 3), dtype=np.uint8)
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    ours = siglip_preprocess(frames, size=28, mean=mean, std=std)
    reference = _reference([Image.fromarray(frame) for frame in frames], 28, mean, std)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_single_image_and_alpha_and_grayscale():
    rng = np.random.default_rng(2)
    rgba = _random_image(rng, 30, 40, mode="RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), mode="L")
    for image in (rgba, gray):
        ours = siglip_preprocess(image, size=14)
        assert ours.shape == (1, 3, 14, 14)
        torch.testing.assert_close(ours, _reference([image], 14), atol=1e-6, rtol=0)


def test_hand_computed_constant_image():
    image = Image.new("RGB", (10, 7), (255, 0, 51))
    pixels = siglip_preprocess(image, size=4)
    expected = torch.tensor([1.0, -1.0, 51 / 255 * 2 - 1]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(pixels, expected)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        siglip_preprocess(np.zeros((2, 8, 8, 3), dtype=np.float32), size=4)
    with pytest.raises(ValueError, match="resample"):
        siglip_preprocess(Image.new("RGB", (4, 4)), size=4, resample="cubic")
    with pytest.raises(ValueError, match="empty"):
        siglip_preprocess([], size=4)
