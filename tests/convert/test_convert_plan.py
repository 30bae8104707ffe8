"""`convert … --dry-run`: the configuration on the meta device, parameters and memory; the VLM²
video path runs on the meta device (no data-dependent indexing without a frame mask)."""

import subprocess
import sys

import pytest
import torch
from llava_next_fixtures import write_original_llava_video, write_vision_config

from spatialvlm.convert import plan_llava_video
from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration, tiny_vlm2_config


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    write_original_llava_video(tmp_path / "src")
    vision = write_vision_config(tmp_path / "v.json")
    result = subprocess.run(
        [sys.executable, "-m", "spatialvlm.cli", "convert", "llava-video", tmp_path / "src", "--dry-run",
         "--vision-config", vision, "--frames", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # 4 frames × (2 rows × (2 tokens + newline)) = 24 video tokens
    assert "a 4-frame question: 24 video + 96 text = 120 tokens" in result.stdout
    assert "KV cache of the prefill" in result.stdout and "activation peak" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "v.json"]


def test_plan_counts_the_parameters_of_the_real_model(tmp_path):
    write_original_llava_video(tmp_path / "src")
    plan = plan_llava_video(tmp_path / "src", vision_config=write_vision_config(tmp_path / "v.json"), frames=2)
    from spatialvlm.convert import LlavaNextSource

    config = LlavaNextSource.open(tmp_path / "src", vision_config=tmp_path / "v.json").config
    assert plan.total_parameters == sum(p.numel() for p in VLM2ForConditionalGeneration(config).parameters())
    # KV cache: 2 (K, V) · 2 layers · 2 KV heads · head 16 · tokens · 2 bytes
    assert plan.kv_cache_bytes == 2 * 2 * 2 * 16 * (plan.video_tokens + plan.text_tokens) * 2


@pytest.mark.parametrize("flags", [dict(use_spatial_fusion=False), dict(use_dual_memory=True, use_viewpoint_alignment=False)])
def test_video_features_run_on_the_meta_device(flags):
    config = tiny_vlm2_config(**flags)
    with torch.device("meta"):
        model = VLM2ForConditionalGeneration(config).eval()
    pixels = torch.empty(2, 3, 3, 56, 56, device="meta")
    geometry = {}
    if config.use_spatial_fusion:
        geometry = dict(
            geometry_coords=torch.empty(2, 3, 16, 3, device="meta"),
            geometry_tokens=torch.empty(2, 3, 9, 24, device="meta"),
        )
        if config.use_viewpoint_alignment:
            geometry["camera_tokens"] = torch.empty(2, 3, 16, device="meta")
    if model.model.dual_memory is not None:
        model.model.dual_memory.config.check_finite = False
    with torch.no_grad():
        output = model.model.get_video_features(pixels, **geometry, return_dict=True)
    assert output.pooler_output.shape == (1, 2 * config.num_video_tokens(3), 64)


@pytest.mark.slow
def test_llava_video_7b_plan_matches_the_hand_count():
    plan = plan_llava_video("LLaVA-Video-7B-Qwen2", frames=32, use_spatial_fusion=True, use_dual_memory=True)
    hidden, inter, kv, layers, vocab = 3584, 18944, 512, 28, 152064
    per_layer = (hidden * hidden + hidden) + 2 * (hidden * kv + kv) + hidden * hidden + 3 * hidden * inter + 2 * hidden
    assert plan.parameters["language_model.layers"] == layers * per_layer
    assert plan.parameters["language_model.embed_tokens"] == plan.parameters["lm_head"] == vocab * hidden
    assert plan.video_tokens == 32 * 13 * 14
