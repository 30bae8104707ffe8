"""Dual-scale tokens: scaffold against hand-done pooling, coordinates of known patches, bad input."""

import pytest
import torch

from spatialvlm.selection import dual_scale_tokens, grid_coords, scaffold_source_index


def test_scaffold_equals_hand_done_four_by_four_pooling():
    torch.manual_seed(0)
    tokens = torch.randn(2, 48 * 48, 5)
    scaffold, _, _ = dual_scale_tokens(tokens, grid=(48, 48), pool=4)
    assert scaffold.shape == (2, 144, 5)
    for block_row, block_col in [(0, 0), (0, 11), (5, 7), (11, 11)]:
        total = torch.zeros(2, 5)
        for r in range(block_row * 4, block_row * 4 + 4):
            for c in range(block_col * 4, block_col * 4 + 4):
                total += tokens[:, r * 48 + c]
        torch.testing.assert_close(scaffold[:, block_row * 12 + block_col], total / 16)


def test_coordinates_of_known_patches_and_scaffold_cells():
    tokens = torch.zeros(1, 48 * 48, 3)
    _, hi_coords, scaffold_coords = dual_scale_tokens(tokens)
    for r, c in [(0, 0), (0, 47), (47, 0), (10, 31)]:
        expected = torch.tensor([(c + 0.5) / 48, (r + 0.5) / 48, 1 / 48, 1 / 48])
        torch.testing.assert_close(hi_coords[0, r * 48 + c], expected)
    torch.testing.assert_close(scaffold_coords[0, 12 * 2 + 3], torch.tensor([3.5 / 12, 2.5 / 12, 1 / 12, 1 / 12]))
    # A non-square grid keeps x on columns and y on rows.
    torch.testing.assert_close(grid_coords((2, 4))[6], torch.tensor([2.5 / 4, 1.5 / 2, 1 / 2, 1 / 4]))


def test_scaffold_sources_cover_each_block_once():
    sources = scaffold_source_index((8, 8), 4)
    assert sources.shape == (4, 16)
    assert sorted(sources.flatten().tolist()) == list(range(64))
    assert set(sources[1].tolist()) == {r * 8 + c for r in range(4) for c in range(4, 8)}


def test_bad_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="2300 tokens but grid 48×48 needs 2304"):
        dual_scale_tokens(torch.zeros(1, 2300, 4))
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        dual_scale_tokens(torch.zeros(2304, 4))
    with pytest.raises(ValueError, match="pool=5 must divide"):
        dual_scale_tokens(torch.zeros(1, 2304, 4), pool=5)
