"""The distance-aware score, term by term, against direct formulas; its spreading effect."""

import math

import torch
import torch.nn.functional as F

from spatialvlm.selection import (
    ShirgXConfig,
    ShirgXSelector,
    centre_distance,
    distance_aware_score,
    distinctiveness,
    grid_coords,
    minmax_normalise,
    neighbour_crowding,
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


def test_text_relevance_is_max_cosine_over_unmasked_question_tokens():
    torch.manual_seed(1)
    tokens, question = torch.randn(2, 10, 6), torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    relevance = text_relevance(tokens, question, mask)
    for b in range(2):
        for i in range(10):
            cosines = [F.cosine_similarity(tokens[b, i], question[b, t], dim=0) for t in range(3) if mask[b, t]]
            torch.testing.assert_close(relevance[b, i], max(cosines))


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
    score = distance_aware_score(relevance, (4, 4), coords, (0.5, 0.3, 0.2), sigma=1.0)
    sim = minmax_normalise(relevance)
    expected = 0.5 * sim - 0.3 * minmax_normalise(neighbour_crowding(sim, (4, 4), 1.0)) - 0.2 * distance
    torch.testing.assert_close(score, expected)


def _cells_covered(out) -> int:
    sources = out.source_index[0][~out.is_scaffold[0]]
    sources = sources[sources >= 0]
    return len(set(((sources // 48 // 4) * 12 + (sources % 48) // 4).tolist()))


def test_distance_terms_spread_selection_over_more_cells_than_plain_topk():
    torch.manual_seed(3)
    dim = 32
    question = torch.randn(dim)
    tokens = 0.3 * torch.randn(1, 2304, dim)
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    blob = ((rows >= 4) & (rows < 20) & (cols >= 4) & (cols < 20)).flatten()
    tokens[0, blob] += question
    details = (torch.rand(2304) < 0.05) & ~blob
    tokens[0, details] += 0.6 * question

    def run(weights):
        config = ShirgXConfig(vision_dim=dim, relevance_weight=weights[0], neighbour_weight=weights[1], centre_weight=weights[2])
        return ShirgXSelector(config)(tokens, question[None], budget=128)

    plain = run((1.0, 0.0, 0.0))
    distance_aware = run((0.7, 0.2, 0.1))
    assert _cells_covered(distance_aware) >= 2 * _cells_covered(plain)
