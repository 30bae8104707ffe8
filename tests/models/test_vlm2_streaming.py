"""Streaming session: equivalence with offline encoding, save/restore, context window, answers."""

import numpy as np
import pytest
import torch

from spatialvlm.geometry import stack_frames
from spatialvlm.models import VLM2ForConditionalGeneration, VLM2StreamingSession, build_tiny_processor, tiny_vlm2_config
from spatialvlm.models.tiny import tiny_frame_geometry

NUM_FRAMES = 6


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    config = tiny_vlm2_config(use_dual_memory=True, memory_L_w=2, memory_L_e=3)
    model = VLM2ForConditionalGeneration(config).eval()
    processor = build_tiny_processor(config)
    frames = np.random.default_rng(0).integers(0, 256, (NUM_FRAMES, 32, 48, 3), dtype=np.uint8)
    geometry = tiny_frame_geometry(NUM_FRAMES)
    return model, processor, frames, geometry


def _offline(model, processor, frames, geometry):
    """Whole-clip encoding and the normalisation statistics it used."""
    inputs, stats = processor.prepare_geometry(stack_frames(geometry))
    batch = processor(processor.video_prompt("q"), videos=frames, geometry=stack_frames(geometry))
    video_inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        encoded = model.model.get_video_features(**video_inputs, return_dict=True)
    return encoded, stats


def test_streamed_frames_equal_offline_clip_encoding(setup):
    model, processor, frames, geometry = setup
    offline, stats = _offline(model, processor, frames, geometry)
    session = VLM2StreamingSession(model, processor, context_frames=NUM_FRAMES, coordinate_stats=stats)
    streamed = torch.stack([session.add_frame(frame, frame_geometry) for frame, frame_geometry in zip(frames, geometry)])
    torch.testing.assert_close(streamed, offline.frame_features, rtol=1e-5, atol=1e-5)
    # Memories past their capacities (L_w = 2, L_e = 3) hold the same entries either way.
    assert session.memory_state.working_fill.tolist() == [2] and session.memory_state.episodic_fill.tolist() == [3]
    torch.testing.assert_close(
        session.memory_state.episodic_entries(0), offline.memory_state.episodic_entries(0), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(session.context_features(), offline.pooler_output[0], rtol=1e-5, atol=1e-5)


def test_save_restore_continues_exactly(tmp_path, setup):
    model, processor, frames, geometry = setup
    uninterrupted = VLM2StreamingSession(model, processor, context_frames=3)
    uninterrupted.add_frames(frames, geometry)

    first = VLM2StreamingSession(model, processor, context_frames=3)
    first.add_frames(frames[:4], geometry[:4])
    first.save(tmp_path / "session")
    resumed = VLM2StreamingSession(model, processor)
    resumed.load(tmp_path / "session")
    assert resumed.frames_seen == 4 and resumed.context_frames == 3
    resumed.add_frames(frames[4:], geometry[4:])
    assert resumed.frames_seen == NUM_FRAMES
    torch.testing.assert_close(resumed.context_features(), uninterrupted.context_features(), rtol=0, atol=0)
    # The language model reads only the last 3 frames (+ newline): 3 · 4 + 1 tokens.
    assert resumed.context_features().shape == (13, 64)
    answer = resumed.ask("How many chairs?", max_new_tokens=3)
    assert isinstance(answer, str) and answer == uninterrupted.ask("How many chairs?", max_new_tokens=3)


def test_errors_before_frames_and_without_geometry(setup):
    model, processor, frames, _ = setup
    session = VLM2StreamingSession(model, processor)
    with pytest.raises(ValueError, match="no frame yet"):
        session.ask("Anything?")
    with pytest.raises(ValueError, match="needs it"):
        session.add_frame(frames[0])
