"""Optional compression of stored entries: pooling against hand-computed cases and the naive reference."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from naive_memory import NaiveDualMemory  # noqa: E402

from spatialvlm.memory import DualMemory, pool_tokens  # noqa: E402


def test_grid_pooling_by_hand():
    # 4x4 grid of scalars 0..15 pooled to 2x2: means of the four 2x2 blocks, row-major.
    x = torch.arange(16.0).view(1, 16, 1)
    assert pool_tokens(x, 4, "grid").flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert pool_tokens(torch.arange(6.0).view(1, 6, 1), 3, "sequence").flatten().tolist() == [0.5, 2.5, 4.5]
    assert pool_tokens(x, None) is x and pool_tokens(x, 16) is x


@torch.no_grad()
def test_compressed_memory_matches_naive_and_stores_fewer_tokens():
    torch.manual_seed(0)
    memory = DualMemory(32, num_heads=4, working_size=2, episodic_size=3, dropout=0.0, compress_tokens=4).eval()
    frames = torch.randn(2, 7, 16, 32)
    fused, state = memory.process(frames)
    naive = NaiveDualMemory(memory)
    for b in range(2):
        video = naive.init_state(1)[0]
        expected = torch.stack([naive.step_video(frames[b, t], video)[0] for t in range(7)])
        torch.testing.assert_close(fused[b], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(state.episodic_entries(b), torch.stack(video.episodic), atol=2e-5, rtol=1e-4)
    assert state.working.keys.shape == (2, 4, 2, 4, 8) and fused.shape == frames.shape
    # The working memory holds the pooled frames themselves.
    torch.testing.assert_close(state.working_entries(0)[-1], pool_tokens(frames[0, 6:7], 4)[0])


@torch.no_grad()
def test_replacement_compares_uncompressed_means():
    torch.manual_seed(0)
    memory = DualMemory(32, num_heads=4, working_size=2, episodic_size=2, dropout=0.0,
                        compress_tokens=3, compress_mode="sequence").eval()
    frames = torch.randn(1, 3, 10, 32)
    fused, state = memory.process(frames)
    assert state.episodic.entries.shape[2] == 3
    live = state.episodic.stamps[0] >= 0
    torch.testing.assert_close(state.episodic.means[0, live].sort(0).values,
                               fused[0, state.episodic.stamps[0, live]].mean(1).sort(0).values)
