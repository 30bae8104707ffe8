"""Batch isolation, padding masks, resets at video boundaries, empty and single-frame videos."""

import torch

from spatialvlm.memory import DualMemory

DIM, TOKENS = 32, 9


def make_memory(**kwargs) -> DualMemory:
    torch.manual_seed(0)
    return DualMemory(DIM, num_heads=4, working_size=3, episodic_size=4, dropout=0.0, **kwargs).eval()


@torch.no_grad()
def test_video_alone_equals_video_beside_others():
    memory = make_memory()
    frames = torch.randn(4, 10, TOKENS, DIM)
    together, state = memory.process(frames)
    for b in range(4):
        alone, alone_state = memory.process(frames[b : b + 1])
        torch.testing.assert_close(together[b], alone[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(state.episodic_entries(b), alone_state.episodic_entries(0), atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_masked_padding_changes_nothing_and_yields_zeros():
    memory = make_memory()
    frames = torch.randn(3, 9, TOKENS, DIM)
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [0, 1, 0, 1, 1, 0, 1, 1, 0]], dtype=torch.bool)
    padded = frames.clone()
    padded[~mask] = 0.0
    fused, state = memory.process(padded, mask)
    assert fused[~mask].abs().max() == 0
    for b in range(3):
        real = frames[b, mask[b]][None]
        expected, expected_state = memory.process(real)
        torch.testing.assert_close(fused[b, mask[b]], expected[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(state.working_entries(b), expected_state.working_entries(0))
        assert state.counters.frames_seen[b] == mask[b].sum()


@torch.no_grad()
def test_padding_values_are_ignored_even_if_not_finite():
    memory = make_memory()
    frames = torch.randn(2, 3, TOKENS, DIM)
    mask = torch.tensor([[True, True, True], [True, False, True]])
    clean, _ = memory.process(frames, mask)
    frames[1, 1] = float("nan")
    dirty, _ = memory.process(frames, mask)
    torch.testing.assert_close(clean, dirty)


@torch.no_grad()
def test_empty_video_keeps_empty_memory():
    memory = make_memory()
    frames = torch.randn(2, 5, TOKENS, DIM)
    mask = torch.tensor([[True] * 5, [False] * 5])
    fused, state = memory.process(frames, mask)
    assert fused[1].abs().max() == 0
    assert state.working_fill.tolist() == [3, 0] and state.episodic_fill.tolist() == [4, 0]
    assert state.working_entries(1).shape == (0, TOKENS, DIM)
    assert state.may_have_empty  # the empty video still needs the empty-memory rule next step


@torch.no_grad()
def test_zero_length_clip():
    memory = make_memory()
    fused, state = memory.process(torch.randn(2, 0, TOKENS, DIM))
    assert fused.shape == (2, 0, TOKENS, DIM)
    assert state.working_fill.tolist() == [0, 0]


@torch.no_grad()
def test_reset_at_video_boundary_equals_fresh_memory():
    # Stream: video 0 continues, video 1 ends after 5 frames and a new video starts in its slot.
    memory = make_memory()
    first, second = torch.randn(2, 2, 5, TOKENS, DIM)
    _, state = memory.process(first)
    state.reset(torch.tensor([False, True]))
    assert state.working_fill.tolist() == [3, 0] and state.counters.frames_seen.tolist() == [5, 0]
    fused, state = memory.process(second, state=state)
    fresh, _ = memory.process(second[1:])
    continued, _ = memory.process(torch.cat([first[:1], second[:1]], dim=1))
    torch.testing.assert_close(fused[1], fresh[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused[0], continued[0, 5:], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_streaming_steps_equal_process():
    memory = make_memory()
    frames = torch.randn(2, 7, TOKENS, DIM)
    clip, _ = memory.process(frames)
    state = memory.init_state(2)
    for t in range(7):
        step, state = memory(frames[:, t], state)
        torch.testing.assert_close(step, clip[:, t])


@torch.no_grad()
def test_frame_mask_on_a_single_step():
    memory = make_memory()
    frames = torch.randn(2, 2, TOKENS, DIM)
    state = memory.init_state(2)
    _, state = memory(frames[:, 0], state)
    before = state.clone()
    fused, state = memory(frames[:, 1], state, frame_mask=torch.tensor([True, False]))
    assert fused[1].abs().max() == 0
    assert torch.equal(state.working_entries(1), before.working_entries(1))
    assert torch.equal(state.episodic.keys[1], before.episodic.keys[1])
    assert state.working_fill.tolist() == [2, 1]
