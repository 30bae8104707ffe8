"""Neighbour merging and group reduction against per-patch loop references."""

import torch

from spatialvlm.selection import group_reduce, grid_coords, neighbour_merge_targets, select_top_groups


def naive_merge_targets(scores, grid, threshold, max_merges, features=None, similarity=0.0):
    """Per-patch loop: each odd (row + col) cell joins its closest-score neighbour if within ε
    (and, with features, if their cosine is at least τ)."""
    rows, cols = grid
    candidates = []
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                continue
            best, best_index = float("inf"), None
            for dr, dc in [(-1, 0), (1, 0), (0, -1), (0, 1)]:  # up, down, left, right
                nr, nc = r + dr, c + dc
                if 0 <= nr < rows and 0 <= nc < cols:
                    difference = abs(float(scores[r * cols + c]) - float(scores[nr * cols + nc]))
                    if difference < best:
                        best, best_index = difference, nr * cols + nc
            alike = features is None or float(
                torch.nn.functional.cosine_similarity(features[r * cols + c], features[best_index], dim=0)) >= similarity
            if best < threshold and alike:
                candidates.append((best, r * cols + c, best_index))
    targets = list(range(rows * cols))
    for _, source, destination in sorted(candidates)[:max_merges]:
        targets[source] = destination
    return targets


def test_merge_targets_match_loop_reference():
    torch.manual_seed(0)
    grid = (9, 12)
    # Quantised scores make many near-ties inside ε, with distinct differences for the ranking.
    scores = torch.rand(3, 108) * 0.3
    for max_merges in (100, 20):
        targets = neighbour_merge_targets(scores, grid, threshold=0.05, max_merges=max_merges)
        for b in range(3):
            assert targets[b].tolist() == naive_merge_targets(scores[b], grid, 0.05, max_merges)
    limited = neighbour_merge_targets(scores, grid, 0.05, max_merges=20)
    merged_count = (limited != torch.arange(108)).sum(dim=1)
    assert (merged_count <= 20).all() and (merged_count == 20).any()


def test_feature_gate_matches_loop_reference_and_keeps_unlike_neighbours_apart():
    torch.manual_seed(4)
    grid = (9, 12)
    scores = (torch.rand(2, 108) * 0.3).round(decimals=2)
    # Half the grid holds two kinds of feature (like two glyphs that score alike), half is flat.
    features = torch.randn(2, 108, 6)
    features[:, 54:] = torch.tensor([1.0, 0, 0, 0, 0, 0]) + 0.05 * torch.randn(2, 54, 6)
    targets = neighbour_merge_targets(scores, grid, 0.05, 60, features=features, similarity=0.9)
    for b in range(2):
        assert targets[b].tolist() == naive_merge_targets(scores[b], grid, 0.05, 60, features[b], 0.9)
    moved = targets != torch.arange(108)
    cosine = torch.nn.functional.cosine_similarity(features, features.gather(1, targets[..., None].expand(-1, -1, 6)), dim=-1)
    assert (cosine[moved] >= 0.9).all()
    # Without the gate the score ties merge the unlike neighbours too.
    ungated = neighbour_merge_targets(scores, grid, 0.05, 60)
    assert (ungated != torch.arange(108))[:, :54].sum() > moved[:, :54].sum()


def test_merged_groups_are_grid_neighbours_within_epsilon():
    torch.manual_seed(1)
    scores = torch.rand(2, 48 * 48) * 0.2
    targets = neighbour_merge_targets(scores, (48, 48), 0.05)
    index = torch.arange(48 * 48)
    moved = targets != index
    assert moved.any()
    source_rc = torch.stack([index // 48, index % 48], -1).expand(2, -1, -1)[moved]
    target_rc = torch.stack([targets // 48, targets % 48], -1)[moved]
    assert ((source_rc - target_rc).abs().sum(-1) == 1).all()
    assert ((scores[moved] - scores.gather(1, targets)[moved]).abs() < 0.05).all()
    # Destinations never move, so groups never chain.
    assert (targets.gather(1, targets) == targets).all()


def test_group_features_centroid_extent_and_sources_are_weighted_means():
    torch.manual_seed(2)
    tokens = torch.randn(1, 6, 3)
    coords = torch.tensor(
        [[0.1, 0.1, 0.2, 0.2], [0.3, 0.1, 0.2, 0.2], [0.1, 0.3, 0.2, 0.2], [0.6, 0.5, 0.4, 0.2], [0.9, 0.9, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]]
    )
    assignment = torch.tensor([[0, 0, 0, 1, -1, 1]])
    grouped = group_reduce(tokens, coords, assignment, num_groups=2)
    torch.testing.assert_close(grouped.tokens[0, 0], tokens[0, :3].mean(0))
    torch.testing.assert_close(grouped.tokens[0, 1], tokens[0, [3, 5]].mean(0))
    # Group 1: areas 0.08 and 0.01 weight the centroid; the bounding box spans both patches.
    centroid = (torch.tensor([0.6, 0.5]) * 0.08 + torch.tensor([0.5, 0.5]) * 0.01) / 0.09
    torch.testing.assert_close(grouped.coords[0, 1, :2], centroid)
    # Extents (h, w): patch 3 spans x 0.5..0.7, y 0.3..0.7; patch 5 x 0.45..0.55, y 0.45..0.55.
    torch.testing.assert_close(grouped.coords[0, 1, 2:], torch.tensor([0.4, 0.25]))
    torch.testing.assert_close(grouped.coords[0, 0], torch.tensor([1 / 6, 1 / 6, 0.4, 0.4]))
    assert grouped.source_index[0].tolist() == [[0, 1, 2], [3, 5, -1]]
    assert grouped.sizes[0].tolist() == [3, 2]


def test_selected_tokens_are_means_of_their_source_patches_on_full_grid():
    torch.manual_seed(3)
    tokens = torch.randn(2, 48 * 48, 8)
    scores = (torch.rand(2, 48 * 48) * 0.3).round(decimals=2)
    targets = neighbour_merge_targets(scores, (48, 48), 0.05, max_merges=48 * 48 - 300)
    assignment, group_scores = select_top_groups(scores, targets, 300)
    grouped = group_reduce(tokens, grid_coords((48, 48)), assignment, 300, 5)
    patch_coords = grid_coords((48, 48))
    for b in range(2):
        for slot in range(0, 300, 37):
            members = [i for i in grouped.source_index[b, slot].tolist() if i >= 0]
            assert members and all(int(assignment[b, i]) == slot for i in members)
            torch.testing.assert_close(grouped.tokens[b, slot], tokens[b, members].mean(0))
            torch.testing.assert_close(grouped.coords[b, slot, :2], patch_coords[members, :2].mean(0))
            torch.testing.assert_close(group_scores[b, targets[b, members[0]]], scores[b, members].mean())
        # Every kept group scores at least as high as every dropped group.
        is_representative = targets[b] == torch.arange(2304)
        dropped = group_scores[b][(assignment[b] < 0) & is_representative]
        kept = group_scores[b][(assignment[b] >= 0) & is_representative]
        assert kept.numel() == 300 and float(kept.min()) >= float(dropped.max())
        # Slots follow raster order of representatives.
        representatives = [int(targets[b, grouped.source_index[b, s, 0]]) for s in range(300)]
        assert representatives == sorted(representatives)
