"""Tiny tokenizer / config and VLM2Processor: round trips, token counts, geometry pooling."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spatialvlm.data.preprocess import siglip_preprocess
from spatialvlm.geometry import FrameGeometry, stack_frames
from spatialvlm.models import VLM2Processor, build_tiny_processor, build_tiny_tokenizer, tiny_llava_onevision_config
from spatialvlm.models.tiny import SPECIAL_TOKENS, tiny_frame_geometry


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor(tiny_llava_onevision_config())


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
def test_tokenizer_round_trips_ascii(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < 512 for i in ids)


def test_special_tokens_and_chat_template(tokenizer):
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3, 4, 5]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id) == (0, 2, 5)
    config = tiny_llava_onevision_config()
    assert (config.image_token_id, config.video_token_id) == (3, 4)
    assert len(tokenizer) <= config.text_config.vocab_size
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "How far?"}, {"type": "video"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "<|im_start|>user\n<video>\nHow far?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt)["input_ids"]
    assert ids.count(4) == 1 and ids[0] == 1  # special tokens stay single ids


def test_video_tokens_expand_to_the_model_count(processor):
    videos = [np.zeros((3, 20, 30, 3), np.uint8), np.full((5, 40, 10, 3), 200, np.uint8)]
    batch = processor([processor.video_prompt("q")] * 2, videos=videos)
    # 56 px / patch 14 = 4×4 patches, pooled to 2×2 = 4 tokens per frame, + 1 newline.
    assert (batch["input_ids"] == 4).sum(1).tolist() == [3 * 4 + 1, 5 * 4 + 1]
    assert batch["pixel_values_videos"].shape == (2, 5, 3, 56, 56)
    assert batch["video_frame_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.equal(batch["pixel_values_videos"][1], siglip_preprocess(videos[1], 56))
    assert torch.equal(batch["pixel_values_videos"][0, 3:], torch.zeros(2, 3, 56, 56))
    assert batch["attention_mask"][0, 0] == 0  # left padding for generation
    same = processor([processor.video_prompt("q")] * 2, videos=[videos[0], videos[0]])
    assert "video_frame_mask" not in same
    with pytest.raises(ValueError, match="exactly one"):
        processor("no placeholder", videos=videos[0])


def test_geometry_pooling_matches_a_naive_per_patch_mean(processor):
    # 64×64 point map onto a 4×4 grid; SigLIP sees the first 56/56 of the image here (no crop).
    height = width = 64
    points = torch.randn(2, height, width, 3) * 2 + 5
    valid = torch.rand(2, height, width) > 0.3
    valid[0, :16, :16] = False  # patch (0, 0) of frame 0 has no valid point
    frames = FrameGeometry(points=points, valid=valid, pose=torch.eye(4).repeat(2, 1, 1))
    inputs, stats = processor.prepare_geometry(frames)
    coords, patch_valid = inputs["geometry_coords"], inputs["geometry_coords_valid"]
    assert coords.shape == (2, 16, 3) and patch_valid.shape == (2, 16)
    naive = torch.zeros(2, 16, 3)
    naive_valid = torch.zeros(2, 16, dtype=torch.bool)
    for frame in range(2):
        for row in range(4):
            for col in range(4):
                block = points[frame, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16]
                mask = valid[frame, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16]
                if mask.any():
                    naive[frame, row * 4 + col] = block[mask].mean(0)
                    naive_valid[frame, row * 4 + col] = True
    assert torch.equal(patch_valid, naive_valid) and not patch_valid[0, 0]
    center = naive[naive_valid].median(0).values
    spread = (naive[naive_valid] - center).norm(dim=-1).median()
    expected = ((naive - center) / spread).clamp(-8, 8) * naive_valid[..., None]
    torch.testing.assert_close(coords, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats.center[0], center)
    # Poses share the frame of reference: translation (0 − c) / s.
    torch.testing.assert_close(inputs["camera_poses"][0, :3, 3], ((-center) / spread).clamp(-8, 8))


def test_point_maps_are_cropped_to_the_region_siglip_sees(tokenizer):
    # 30 px / patch 14 -> 2×2 patches covering 28 of 30 pixels: the last 1/15 of the map is dropped.
    processor = VLM2Processor(tokenizer, image_size=30, patch_size=14)
    points = torch.zeros(1, 30, 30, 3)
    points[:, 28:, :, 0] = 1000.0  # only in the dropped border
    points[:, :, 28:, 0] = 1000.0
    inputs, _ = processor.prepare_geometry(FrameGeometry(points=points))
    raw = inputs["geometry_coords"]
    assert raw.shape == (1, 4, 3) and raw.abs().max() == 0


def test_batches_pad_geometry_tokens_and_frames(processor):
    first = stack_frames(tiny_frame_geometry(2, geometry_tokens=5))
    second = stack_frames(tiny_frame_geometry(3, geometry_tokens=9))
    videos = [np.zeros((2, 32, 48, 3), np.uint8), np.zeros((3, 32, 48, 3), np.uint8)]
    batch = processor([processor.video_prompt("q")] * 2, videos=videos, geometry=[first, second])
    assert batch["geometry_tokens"].shape == (2, 3, 9, 24)
    mask = batch["geometry_padding_mask"]
    assert mask[0, :2, 5:].all() and not mask[0, :2, :5].any() and not mask[1].any()
    assert torch.equal(batch["geometry_tokens"][1], second.geometry_tokens)
    assert batch["camera_tokens"].shape == (2, 3, 16) and batch["geometry_coords"].shape == (2, 3, 16, 3)
    with pytest.raises(ValueError, match="frames but its geometry"):
        processor([processor.video_prompt("q")], videos=videos[:1], geometry=[second])


def test_processor_save_load_and_hf_checkpoint_settings(tmp_path, processor):
    processor.save_pretrained(tmp_path / "saved")
    loaded = VLM2Processor.from_pretrained(tmp_path / "saved")
    assert loaded.to_dict() == processor.to_dict()
    frames = np.random.default_rng(0).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    expected = processor(processor.video_prompt("Where?"), videos=frames)
    got = loaded(loaded.video_prompt("Where?"), videos=frames)
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["pixel_values_videos"], expected["pixel_values_videos"])

    hf = tmp_path / "hf"
    processor.tokenizer.save_pretrained(hf)
    (hf / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 42, "width": 42}, "image_mean": [0.1] * 3}))
    (hf / "config.json").write_text(json.dumps({"vision_config": {"patch_size": 14, "image_size": 42}}))
    from_hf = VLM2Processor.from_pretrained(hf)
    assert (from_hf.image_size, from_hf.patch_size, from_hf.image_mean) == (42, 14, (0.1, 0.1, 0.1))
