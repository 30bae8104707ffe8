"""VLM² model: base equivalence, batching, memory isolation, streaming equivalence, checkpoints."""

import numpy as np
import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.geometry import stack_frames
from spatialvlm.models import (
    VLM2ForConditionalGeneration,
    build_tiny_processor,
    patch,
    tiny_llava_onevision_config,
    tiny_vlm2_config,
)
from spatialvlm.models.tiny import tiny_frame_geometry

FLAGS_OFF = dict(use_spatial_fusion=False, use_dual_memory=False)


def _model(seed: int = 0, **flags) -> VLM2ForConditionalGeneration:
    torch.manual_seed(seed)
    return VLM2ForConditionalGeneration(tiny_vlm2_config(**flags)).eval()


def _frames(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 32, 48, 3), dtype=np.uint8)


def _batch(processor, lengths, seed=0, geometry=True, question="How many chairs?"):
    videos = [_frames(length, seed + index) for index, length in enumerate(lengths)]
    frames_geometry = [stack_frames(tiny_frame_geometry(length, seed=seed + index)) for index, length in enumerate(lengths)]
    return processor(
        [processor.video_prompt(question)] * len(lengths),
        videos=videos,
        geometry=frames_geometry if geometry else None,
    )


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor(tiny_llava_onevision_config())


@pytest.fixture(scope="module")
def full_model():
    return _model(use_dual_memory=True)


def test_flags_off_equals_base_model_exactly(processor):
    torch.manual_seed(0)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    ours = VLM2ForConditionalGeneration(tiny_vlm2_config(**FLAGS_OFF)).eval()
    ours.load_state_dict(base.state_dict())
    batch = _batch(processor, [3, 3], geometry=False)
    with torch.no_grad():
        expected = base(**batch).logits
        got = ours(**batch).logits
    assert torch.equal(got, expected)
    with torch.no_grad():
        expected_ids = base.generate(**batch, max_new_tokens=4, do_sample=False)
        got_ids = ours.generate(**batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(got_ids, expected_ids)


def test_images_keep_the_base_path(processor):
    torch.manual_seed(0)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    ours = VLM2ForConditionalGeneration(tiny_vlm2_config(use_dual_memory=True)).eval()
    ours.load_state_dict(base.state_dict(), strict=False)
    pixel_values = torch.randn(1, 2, 3, 56, 56)
    image_sizes = torch.tensor([[56, 56]])
    with torch.no_grad():
        tokens = base.model.get_image_features(pixel_values, image_sizes, return_dict=True).pooler_output[0].shape[0]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    ).replace("<image>", "<image>" * tokens)
    batch = dict(processor.tokenizer(prompt, return_tensors="pt"), pixel_values=pixel_values, image_sizes=image_sizes)
    with torch.no_grad():
        assert torch.equal(ours(**batch).logits, base(**batch).logits)


def test_forward_and_generate_one_video(processor, full_model):
    batch = _batch(processor, [4])
    with torch.no_grad():
        output = full_model(**batch)
        ids = full_model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert output.logits.shape == (1, batch["input_ids"].shape[1], 512)
    assert torch.isfinite(output.logits).all()
    state = output.video_outputs.memory_state
    assert state.working_fill.tolist() == [4] and state.episodic_fill.tolist() == [4]
    assert ids.shape == (1, batch["input_ids"].shape[1] + 3)


def test_batch_of_different_lengths_matches_each_video_alone(processor, full_model):
    batch = _batch(processor, [5, 2, 3], seed=10)
    assert batch["video_frame_mask"].sum(1).tolist() == [5, 2, 3]
    with torch.no_grad():
        batched = full_model(**batch)
    state = batched.video_outputs.memory_state
    assert state.working_fill.tolist() == [5, 2, 3]
    features = batched.video_outputs.frame_features
    offsets = [0, 5, 7, 10]
    for index, length in enumerate([5, 2, 3]):
        single = _batch(processor, [length], seed=10 + index)
        with torch.no_grad():
            alone = full_model(**single)
        torch.testing.assert_close(
            features[offsets[index] : offsets[index + 1]], alone.video_outputs.frame_features, rtol=1e-5, atol=1e-5
        )
        # Left padding: the last position of every row is the same token, the answer's start.
        torch.testing.assert_close(batched.logits[index, -1], alone.logits[0, -1], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        ids = full_model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert ids.shape[0] == 3


def test_memory_is_isolated_between_videos_of_a_batch(processor, full_model):
    batch = _batch(processor, [3, 3], seed=20)
    changed = dict(batch)
    changed["pixel_values_videos"] = batch["pixel_values_videos"].clone()
    changed["pixel_values_videos"][1] = torch.randn_like(changed["pixel_values_videos"][1])
    with torch.no_grad():
        first = full_model.model.get_video_features(**_video_inputs(batch), return_dict=True).frame_features
        second = full_model.model.get_video_features(**_video_inputs(changed), return_dict=True).frame_features
    torch.testing.assert_close(first[:3], second[:3], rtol=0, atol=0)
    assert not torch.allclose(first[3:], second[3:])


def test_memory_resets_per_call_and_continues_when_state_is_passed(processor, full_model):
    batch = _batch(processor, [6], seed=30)
    inputs = _video_inputs(batch)
    with torch.no_grad():
        whole = full_model.model.get_video_features(**inputs, return_dict=True)
        again = full_model.model.get_video_features(**inputs, return_dict=True)
        torch.testing.assert_close(whole.frame_features, again.frame_features, rtol=0, atol=0)
        head = {name: value[:, :4] for name, value in inputs.items()}
        tail = {name: value[:, 4:] for name, value in inputs.items()}
        first = full_model.model.get_video_features(**head, return_dict=True)
        second = full_model.model.get_video_features(**tail, memory_state=first.memory_state, return_dict=True)
        fresh_tail = full_model.model.get_video_features(**tail, return_dict=True)
    torch.testing.assert_close(
        torch.cat([first.frame_features, second.frame_features]), whole.frame_features, rtol=1e-5, atol=1e-6
    )
    assert not torch.allclose(fresh_tail.frame_features, whole.frame_features[4:], atol=1e-4)


def test_gradients_reach_new_modules_and_skip_padded_frames(processor):
    model = _model(use_dual_memory=True).train()
    for module in model.modules():  # dropout would make the check below random
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = _batch(processor, [3, 1], seed=40)
    pixels = batch["pixel_values_videos"].clone().requires_grad_(True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    inputs = {**batch, "pixel_values_videos": pixels}
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    assert pixels.grad[1, 1:].abs().sum() == 0  # padding frames never reach the model
    assert pixels.grad[1, 0].abs().sum() > 0
    for name in ("spatial_fusion", "dual_memory", "multi_modal_projector", "language_model", "vision_tower"):
        grads = [p.grad for n, p in model.model.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_missing_geometry_and_bad_masks_are_clear_errors(processor, full_model):
    batch = _batch(processor, [2], geometry=False)
    with pytest.raises(ValueError, match="geometry_coords"):
        full_model(**batch)
    no_tokens = _batch(processor, [2])
    del no_tokens["camera_tokens"], no_tokens["camera_poses"]
    with pytest.raises(ValueError, match="camera_tokens"):
        full_model(**no_tokens)
    bad = _batch(processor, [3, 2])
    bad["video_frame_mask"] = torch.tensor([[True, True, True], [False, True, True]])
    with pytest.raises(ValueError, match="prefix"):
        full_model(**bad)


def test_save_load_round_trip_and_base_checkpoint_loading(tmp_path, processor, full_model):
    batch = _batch(processor, [3])
    full_model.save_pretrained(tmp_path / "vlm2")
    loaded = VLM2ForConditionalGeneration.from_pretrained(tmp_path / "vlm2").eval()
    assert loaded.vlm2_new_weights == []
    assert loaded.config.use_dual_memory and loaded.config.geometry_dim == 24
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, full_model(**batch).logits)

    torch.manual_seed(1)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config())
    base.save_pretrained(tmp_path / "base")
    flags = dict(use_dual_memory=True, geometry_dim=24, view_dim=16, fusion_num_heads=2, memory_num_heads=2)
    upgraded = VLM2ForConditionalGeneration.from_pretrained(tmp_path / "base", **flags)
    expected_new = sorted(
        f"model.{name}" for name, _ in upgraded.model.named_parameters() if name.startswith(("spatial_fusion", "dual_memory"))
    )
    assert upgraded.vlm2_new_weights == expected_new and len(expected_new) > 20
    base_state = base.state_dict()
    assert all(torch.equal(value, upgraded.state_dict()[key]) for key, value in base_state.items())
    # The new modules keep their own initialisation (the injection gate starts nearly closed).
    assert upgraded.model.spatial_fusion.coordinate_injection.gate_proj.bias.item() == pytest.approx(-4.0)


def test_patch_adds_the_vlm2_path_to_a_loaded_base_model(processor):
    torch.manual_seed(0)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    reference = VLM2ForConditionalGeneration(tiny_vlm2_config(use_dual_memory=True)).eval()
    reference.load_state_dict(base.state_dict(), strict=False)
    patched = patch(base, dict(geometry_dim=24, view_dim=16, fusion_num_heads=2), use_dual_memory=True, memory_num_heads=2)
    assert isinstance(patched, VLM2ForConditionalGeneration) and patched is base
    patched.eval()
    patched.model.spatial_fusion.load_state_dict(reference.model.spatial_fusion.state_dict())
    patched.model.dual_memory.load_state_dict(reference.model.dual_memory.state_dict())
    batch = _batch(processor, [3])
    with torch.no_grad():
        assert torch.equal(patched(**batch).logits, reference(**batch).logits)
    with pytest.raises(ValueError, match="already"):
        patch(patched)


def _video_inputs(batch) -> dict:
    return {name: value for name, value in batch.items() if name not in ("input_ids", "attention_mask")}
