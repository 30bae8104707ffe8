"""`spatialvlm convert llava-video`: an original LLaVA-NeXT-layout checkpoint in, VLM² out,
checked against the reference LLaVA-Video forward of ``llava_next_fixtures`` (original math)."""

import json
import subprocess
import sys

import pytest
import torch
from llava_next_fixtures import write_original_llava_video, write_vision_config

from spatialvlm.convert import convert_llava_video
from spatialvlm.models.inference import load_vlm2
from spatialvlm.models.processing import QWEN_1_5_SYSTEM_PROMPT
from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration, tiny_vlm2_config
from spatialvlm.models.tiny import build_tiny_processor

SPATIALVLM = [sys.executable, "-m", "spatialvlm.cli"]


def run_cli(*args):
    return subprocess.run([*SPATIALVLM, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava_video")
    original = write_original_llava_video(root / "LLaVA-Video-tiny")
    vision = write_vision_config(root / "siglip.json")
    result = run_cli("convert", "llava-video", root / "LLaVA-Video-tiny", root / "converted", "--vision-config", vision)
    assert result.returncode == 0, result.stderr
    return root, original, result.stdout


def test_converted_model_matches_the_original_forward(converted):
    root, original, stdout = converted
    assert "69 tensors mapped" in stdout and "skipped 1 tensors: rotary inv_freq" in stdout
    model, processor = load_vlm2(root / "converted")
    torch.manual_seed(1)
    frames = torch.rand(3, 3, 70, 70) * 2 - 1
    batch = processor(processor.video_prompt("How many chairs are in the room?"), videos=frames)
    # 5×5 patches → 2×2 average pooling (floor) → 2 rows of (2 tokens + newline) = 6 tokens per frame
    assert processor.num_video_tokens(3) == 18 == int((batch["input_ids"] == processor.video_token_id).sum())
    logits = model(**batch).logits
    reference = original.logits(batch["input_ids"], processor.video_token_id, original.video_tokens(frames))
    assert logits.shape == reference.shape
    assert (logits - reference).abs().max() < 1e-4


def test_converted_prompt_is_qwen_1_5_with_the_time_instruction(converted):
    root, _, _ = converted
    _, processor = load_vlm2(root / "converted")
    prompt = processor.video_prompt("How many chairs?", frame_seconds=[0.0, 1.5, 3.0], video_seconds=3.5)
    assert prompt == (
        f"<|im_start|>system\n{QWEN_1_5_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<video>\n"
        "The video lasts for 3.50 seconds, and 3 frames are uniformly sampled from it. These frames are located at "
        "0.00s,1.50s,3.00s.Please answer the following questions related to this video.\nHow many chairs?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_the_unconverted_directory_is_refused_with_the_command(converted):
    root, _, _ = converted
    with pytest.raises(ValueError, match="spatialvlm convert llava-video"):
        load_vlm2(root / "LLaVA-Video-tiny")


def test_leftover_tensors_fail_the_conversion(tmp_path):
    write_original_llava_video(tmp_path / "src", extra={"model.faster_token": torch.zeros(64)})
    with pytest.raises(ValueError, match=r"1 tensors have no place.*model\.faster_token"):
        convert_llava_video(tmp_path / "src", tmp_path / "dst", vision_config=write_vision_config(tmp_path / "v.json"))
    assert not (tmp_path / "dst" / "config.json").exists()


def test_unknown_tower_needs_a_vision_config(tmp_path):
    write_original_llava_video(tmp_path / "src")
    config = json.loads((tmp_path / "src" / "config.json").read_text())
    config["mm_vision_tower"] = "my-org/my-siglip"
    (tmp_path / "src" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a built-in tower.*--vision-config FILE"):
        convert_llava_video(tmp_path / "src", tmp_path / "dst")


def test_bfloat16_output_and_missing_weights_are_errors(tmp_path, converted):
    root, _, _ = converted
    report = convert_llava_video(
        root / "LLaVA-Video-tiny", tmp_path / "bf16", vision_config=root / "siglip.json", dtype="bfloat16", progress=False
    )
    assert report.parameters > 0
    model, _ = load_vlm2(tmp_path / "bf16")
    assert model.dtype == torch.bfloat16
    # a checkpoint that leaves a parameter unset is refused, naming it
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "bf16" / "model.safetensors")
    del weights["model.multi_modal_projector.linear_2.bias"]
    save_file(weights, tmp_path / "bf16" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 missing weights \(model\.multi_modal_projector\.linear_2\.bias\)"):
        load_vlm2(tmp_path / "bf16")


@pytest.mark.parametrize(
    "layout,per_frame,per_video",
    [
        (dict(), 4, 1),  # LLaVA-OneVision-HF: bilinear 4×4 → 2×2, one newline per video
        (dict(video_pool_mode="average", video_newline_position="grid"), 6, 0),  # 2×2 + a newline per row
        (dict(video_pool_mode="average", video_newline_position="frame"), 5, 0),
        (dict(video_pool_mode="max", video_newline_position="no_token"), 4, 0),
    ],
)
def test_model_and_processor_agree_on_the_token_count(layout, per_frame, per_video):
    config = tiny_vlm2_config(use_spatial_fusion=False, **layout)
    model = VLM2ForConditionalGeneration(config).eval()
    processor = build_tiny_processor(config)
    assert processor.tokens_per_frame == per_frame and processor.tokens_per_video == per_video
    videos = torch.randn(2, 3, 3, 56, 56)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    with torch.no_grad():
        output = model.model.get_video_features(videos, video_frame_mask=mask)
    assert output.pooler_output.shape[1] == processor.num_video_tokens(3) + processor.num_video_tokens(1)
    assert processor.num_frames_of(processor.num_video_tokens(3)) == 3


def test_other_formats_and_impossible_flags_are_refused_by_name(tmp_path):
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="holds a 'llava' checkpoint; VLM² loads 'vlm2' and 'llava_onevision'"):
        load_vlm2(tmp_path / "llava")
    # a plain LLaVA-OneVision directory with a 32-wide tower: the 18-head fusion cannot be built, and
    # the error names the flags; with the fusion switched off nothing of it is built
    from transformers import LlavaOnevisionForConditionalGeneration

    from spatialvlm.models.tiny import tiny_llava_onevision_config

    LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).save_pretrained(tmp_path / "ov")
    with pytest.raises(ValueError, match=r"fusion_num_heads \(18\) must divide the vision tower's hidden_size \(32\)"):
        VLM2ForConditionalGeneration.from_pretrained(tmp_path / "ov")
    model = VLM2ForConditionalGeneration.from_pretrained(tmp_path / "ov", use_spatial_fusion=False)
    assert model.model.spatial_fusion is None and model.vlm2_new_weights == []


def test_pytorch_bin_checkpoints_convert_like_safetensors(tmp_path, converted):
    root, original, _ = converted
    from safetensors.torch import load_file

    write_original_llava_video(tmp_path / "bin")
    state = {}
    for shard in sorted((tmp_path / "bin").glob("model-*.safetensors")):
        state.update(load_file(shard))
        shard.unlink()
    (tmp_path / "bin" / "model.safetensors.index.json").unlink()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    convert_llava_video(tmp_path / "bin", tmp_path / "out", vision_config=root / "siglip.json", progress=False)
    ours, reference = load_file(tmp_path / "out" / "model.safetensors"), load_file(root / "converted" / "model.safetensors")
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
