"""The distance-aware score, term by term, against direct formulas; greedy spreading; its effect."""

import math

import torch

from spatialvlm.selection import (
    ShirgXConfig,
    ShirgXSelector,
    centre_distance,
    distance_aware_score,
    distinctiveness,
    grid_coords,
    minmax_normalise,
    neighbour_crowding,
    select_top_groups,
    text_relevance,
)


def test_neighbour_crowding_matches_pairwise_distance_formula():
    torch.manual_seed(0)
    grid, sigma = (7, 9), 1.5
    relevance = torch.rand(2, 63)
    radius = math.ceil(3 * sigma)
    rows = torch.arange(63) // 9
    cols = torch.arange(63) % 9
    expected = torch.zeros(2, 63)
    for i in range(63):
        numerator = denominator = 0.0
        for j in range(63):
            dr, dc = int(rows[i] - rows[j]), int(cols[i] - cols[j])
            if j == i or abs(dr) > radius or abs(dc) > radius:
                continue
            weight = math.exp(-(dr * dr + dc * dc) / (2 * sigma * sigma))
            numerator = numerator + weight * relevance[:, j]
            denominator += weight
        expected[:, i] = numerator / denominator
    torch.testing.assert_close(neighbour_crowding(relevance, grid, sigma), expected)


def test_text_relevance_is_max_inner_product_with_unit_unmasked_question_tokens():
    torch.manual_seed(1)
    tokens, question = torch.randn(2, 10, 6), torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    relevance = text_relevance(tokens, question, mask)
    for b in range(2):
        for i in range(10):
            products = [float(tokens[b, i] @ question[b, t]) / float(question[b, t].norm()) for t in range(3) if mask[b, t]]
            torch.testing.assert_close(relevance[b, i], torch.tensor(max(products)))


def test_distinctiveness_is_high_for_the_odd_patch_out():
    tokens = torch.ones(1, 16, 4) + 0.01 * torch.randn(1, 16, 4)
    tokens[0, 5] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    saliency = distinctiveness(tokens)
    assert int(saliency.argmax()) == 5
    assert saliency.std() > 0.1  # a real signal, not the constant norm of unit vectors


def test_centre_distance_and_score_combination():
    coords = grid_coords((4, 4))
    distance = centre_distance(coords)
    assert float(distance.max()) == 1.0
    torch.testing.assert_close(distance[0], distance[15])  # corners
    assert distance[5] < distance[4]  # inner ring is nearer the centre
    torch.manual_seed(2)
    relevance = torch.randn(1, 16)
    score = distance_aware_score(relevance, coords, 0.5, 0.2)
    torch.testing.assert_close(score, 0.5 * minmax_normalise(relevance) - 0.2 * distance)


def naive_greedy_spread(scores, grid, budget, weight, sigma, rounds):
    """Per-pick reference of the round-based greedy: D_nbr from the pairwise formula, one image."""
    rows, cols = grid
    n = rows * cols
    radius = math.ceil(3 * sigma)
    kept: list[int] = []
    for step in range(rounds):
        count = budget * (step + 1) // rounds - budget * step // rounds
        proximity = []
        for i in range(n):
            numerator = denominator = 0.0
            for j in range(n):
                dr, dc = i // cols - j // cols, i % cols - j % cols
                if j == i or abs(dr) > radius or abs(dc) > radius:
                    continue
                w = math.exp(-(dr * dr + dc * dc) / (2 * sigma * sigma))
                numerator += w * (j in kept)
                denominator += w
            proximity.append(numerator / denominator)
        current = [(float(scores[i]) - weight * proximity[i], i) for i in range(n) if i not in kept]
        kept += [i for _, i in sorted(current, reverse=True)[:count]]
    return sorted(kept)


def test_greedy_spreading_matches_a_per_pick_reference():
    torch.manual_seed(5)
    grid = (6, 7)
    scores = torch.rand(2, 42)
    identity = torch.arange(42).expand(2, -1)
    for weight, rounds in ((0.0, 1), (0.8, 3), (2.0, 5)):
        assignment, _ = select_top_groups(scores, identity, 12, grid, weight, 1.5, rounds)
        for b in range(2):
            assert torch.nonzero(assignment[b] >= 0).flatten().tolist() == naive_greedy_spread(
                scores[b], grid, 12, weight, 1.5, rounds
            )
            # Slots follow raster order.
            kept = assignment[b][assignment[b] >= 0]
            assert kept.tolist() == list(range(12))


def _cells_covered(out) -> int:
    sources = out.source_index[0][~out.is_scaffold[0]]
    sources = sources[sources >= 0]
    return len(set(((sources // 48 // 4) * 12 + (sources % 48) // 4).tolist()))


def _mean_nearest_distance(out) -> float:
    sources = out.source_index[0][~out.is_scaffold[0], 0]
    points = torch.stack([sources // 48, sources % 48], dim=-1).float()
    distance = torch.cdist(points, points) + torch.eye(len(points)) * 1e9
    return float(distance.amin(dim=-1).mean())


def _clustered_question_case(dim=32):
    torch.manual_seed(3)
    question = torch.randn(dim)
    tokens = 0.3 * torch.randn(1, 2304, dim)
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    blob = ((rows >= 4) & (rows < 20) & (cols >= 4) & (cols < 20)).flatten()
    tokens[0, blob] += question
    details = (torch.rand(2304) < 0.05) & ~blob
    tokens[0, details] += 0.6 * question
    return tokens, question


def test_grid_coverage_rises_monotonically_with_the_neighbour_weight():
    """The issue-13 measurement (98 → 108 → 109 → 81 cells for the static term) must now rise."""
    tokens, question = _clustered_question_case()
    cells, spacing = [], []
    for weight in (0.0, 0.1, 0.2, 0.4, 0.8, 1.6):
        config = ShirgXConfig(vision_dim=32, neighbour_weight=weight, centre_weight=0.0, merge_threshold=0.0)
        out = ShirgXSelector(config)(tokens, question[None], budget=256)  # = the blob's size
        cells.append(_cells_covered(out))
        spacing.append(_mean_nearest_distance(out))
    assert all(a <= b for a, b in zip(cells, cells[1:])), cells
    assert cells[-1] >= 2 * cells[0], cells
    assert spacing[-1] > spacing[0], spacing
