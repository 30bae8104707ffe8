"""Bad input fails with errors that name the tensor and the expected shape."""

import pytest
import torch

from spatialvlm.memory import DualMemory, DualMemoryConfig


@pytest.fixture(scope="module")
def memory():
    return DualMemory(16, num_heads=2, working_size=2, episodic_size=2, dropout=0.0)


def test_wrong_rank(memory):
    with pytest.raises(ValueError, match=r"h must have shape \(B, N, D\) = \(2, N, 16\).*rank 2"):
        memory(torch.randn(4, 16), memory.init_state(2))


def test_wrong_width(memory):
    with pytest.raises(ValueError, match=r"h must have shape.*width D is 8, expected 16"):
        memory(torch.randn(2, 4, 8), memory.init_state(2))


def test_batch_differs_from_state(memory):
    with pytest.raises(ValueError, match=r"h must have shape \(B, N, D\) = \(2, N, 16\).*3 videos.*holds 2"):
        memory(torch.randn(3, 4, 16), memory.init_state(2))


def test_token_count_differs_from_state(memory):
    _, state = memory(torch.randn(2, 4, 16), memory.init_state(2))
    with pytest.raises(ValueError, match=r"\(2, 4, 16\).*5 tokens per frame"):
        memory(torch.randn(2, 5, 16), state)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite(memory, bad):
    h = torch.randn(2, 4, 16)
    h[1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"h \(B, N, D\) contains NaN or inf for video\(s\) \[1\]"):
        memory(h, memory.init_state(2))


def test_bad_masks(memory):
    with pytest.raises(ValueError, match=r"frame_mask must be a bool tensor of shape \(B, T\) = \(2, 3\)"):
        memory.process(torch.randn(2, 3, 4, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"frame_mask must be a bool tensor of shape \(B,\) = \(2,\)"):
        memory(torch.randn(2, 4, 16), memory.init_state(2), torch.ones(2))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(2,\)"):
        memory.init_state(2).reset(torch.ones(3, dtype=torch.bool))


def test_bad_frames_and_config(memory):
    with pytest.raises(ValueError, match=r"frames must have shape \(B, T, N, D\) with D = 16"):
        memory.process(torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        DualMemoryConfig(dim=10, num_heads=3)
    with pytest.raises(ValueError, match="square number"):
        DualMemoryConfig(dim=16, num_heads=2, compress_tokens=10)
    grid = DualMemory(16, num_heads=2, compress_tokens=4)
    with pytest.raises(ValueError, match="square patch grid, got N=5"):
        grid(torch.randn(1, 5, 16))
