"""Baselines: same call shape and count as SHIRG-X, each against a direct reference or a hand case."""

import pytest
import torch
import torch.nn.functional as F

from spatialvlm.selection import (
    BASELINES,
    BaselineSelector,
    ShirgXConfig,
    bipartite_assignment,
    bipartite_soft_matching,
    divprune_assignment,
    merge_source,
    merge_wavg,
    tome_schedule,
    uniform_pool_assignment,
    visionzip_split,
)

DIM = 16


@pytest.fixture(scope="module")
def tokens():
    torch.manual_seed(0)
    return torch.randn(2, 2304, DIM)


def _projector():
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Linear(DIM, 24), torch.nn.GELU(), torch.nn.Linear(24, 24))


@pytest.mark.parametrize("method", ["pool", "random", "bipartite", "divprune"])
@pytest.mark.parametrize("keep_scaffold", [False, True])
def test_same_count_as_shirgx_and_tokens_are_means_of_projected_sources(method, keep_scaffold, tokens):
    projector = _projector()
    selector = BaselineSelector(method, ShirgXConfig(vision_dim=DIM), keep_scaffold=keep_scaffold)
    with torch.no_grad():
        out = selector(tokens, budget=100, projector=projector)
        projected = projector(tokens)
    assert out.tokens.shape == (2, 244, 24) and out.coords.shape == (2, 244, 4)
    assert int(out.is_scaffold.sum()) == (288 if keep_scaffold else 0)
    for b in range(2):
        hi = out.source_index[b][~out.is_scaffold[b]]
        assert hi.numel() and hi[hi >= 0].unique().numel() == hi[hi >= 0].numel()
        for slot in (0, 150, 243):
            members = out.source_index[b, slot][out.source_index[b, slot] >= 0]
            # Pooled after the projector (LaViDa's order), not P(mean of features).
            torch.testing.assert_close(out.tokens[b, slot], projected[b, members].mean(0))


def test_uniform_pooling_cells_are_exactly_count_contiguous_and_even():
    for count in (656, 912, 1168, 144):
        groups = uniform_pool_assignment((48, 48), count)
        sizes = torch.bincount(groups, minlength=count)
        assert groups.max() == count - 1 and (sizes > 0).all()
        assert sizes.max() - sizes.min() <= 3
    # 144 cells on 48×48 is exactly the 4×4 scaffold pooling.
    expected = (torch.arange(48)[:, None] // 4 * 12 + torch.arange(48)[None, :] // 4).flatten()
    assert torch.equal(uniform_pool_assignment((48, 48), 144), expected)


def naive_tome_round(features, sizes, merges):
    """One ToMe round written directly from the paper (no batching)."""
    a, b = features[::2], features[1::2]
    sa, sb = sizes[::2], sizes[1::2]
    similarity = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    best, best_b = similarity.max(-1)
    order = best.argsort(descending=True)
    b_sum, b_size = (b * sb[:, None]).clone(), sb.clone()
    for i in order[:merges].tolist():
        b_sum[best_b[i]] += a[i] * sa[i]
        b_size[best_b[i]] += sa[i]
    keep_a = order[merges:]
    return torch.cat([a[keep_a], b_sum / b_size[:, None]]), torch.cat([sa[keep_a], b_size])


def test_post_hoc_bipartite_matches_direct_reference():
    torch.manual_seed(1)
    tokens = torch.randn(1, 40, 5)
    count = 12
    features, sizes = tokens[0], torch.ones(40)
    while features.shape[0] > count:
        features, sizes = naive_tome_round(features, sizes, min((features.shape[0] + 1) // 2, features.shape[0] - count))
    assignment = bipartite_assignment(tokens, count)
    ours = torch.stack([tokens[0, assignment[0] == g].mean(0) for g in range(count)])
    torch.testing.assert_close(ours, features)
    assert torch.equal(torch.bincount(assignment[0], minlength=count).float(), sizes)


def test_divprune_matches_greedy_max_min_reference_on_projected_tokens():
    torch.manual_seed(2)
    projector = _projector()
    tokens = torch.randn(1, 2304, DIM)
    with torch.no_grad():
        projected = projector(tokens)
    unit = F.normalize(projected[0], dim=-1)
    distance = 1 - unit @ unit.T
    # DivPrune's max-min greedy (Alvar et al., Algorithm 1), one pick at a time in Python.
    picked = [int((distance + torch.eye(2304) * 4).amin(-1).argmax())]
    nearest = distance[picked[0]].clone()
    while len(picked) < 244:
        nearest[picked] = -1
        picked.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, distance[picked[-1]])
    with torch.no_grad():
        out = BaselineSelector("divprune", ShirgXConfig(vision_dim=DIM))(tokens, budget=100, projector=projector)
    assert sorted(picked) == sorted(out.source_index[0, :, 0].tolist())
    # On the raw SigLIP features (the old behaviour) a different set is kept.
    raw = divprune_assignment(tokens, 244)
    assert sorted(picked) != torch.nonzero(raw[0] >= 0).flatten().tolist()


def _visionzip_reference(hidden, attention, metric, dominant_num, contextual_num):
    """visionzip/clip_encoder.py, CLS removed: masks, one-hot assignment, bmm, target + mean."""
    topk = attention.topk(dominant_num, dim=1).indices
    mask = torch.ones_like(hidden[:, :, 0], dtype=torch.bool).scatter_(1, topk, False)
    dominant = hidden.masked_select(~mask.unsqueeze(-1)).view(hidden.shape[0], dominant_num, hidden.shape[2])
    metric_filtered = metric[mask].view(hidden.shape[0], hidden.shape[1] - dominant_num, metric.shape[2])
    hidden_filtered = hidden.masked_select(mask.unsqueeze(-1)).view(hidden.shape[0], -1, hidden.shape[2])
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    step = max(1, metric_normalized.shape[1] // contextual_num)
    target_indices = torch.arange(0, metric_normalized.shape[1], step)[:contextual_num]
    target_tokens = metric_normalized[:, target_indices, :]
    others = ~torch.isin(torch.arange(metric_normalized.shape[1]), target_indices)
    similarity = torch.bmm(metric_normalized[:, others, :], target_tokens.transpose(1, 2))
    one_hot = torch.zeros(hidden.shape[0], int(others.sum()), contextual_num)
    one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    aggregated = torch.bmm(one_hot.transpose(1, 2), hidden_filtered[:, others, :]) / counts
    return torch.cat([dominant, hidden_filtered[:, target_indices, :] + aggregated], dim=1)


def test_visionzip_matches_its_code_and_a_hand_case():
    # Hand case, 8 patches on a 2×4 grid: attention picks patches 5 and 2 as dominant (count 3 →
    # round(3·54/64) = 3 → capped at 2); the 6 left are 0 1 3 4 6 7, step 6 // 1 = 6 → target 0;
    # every other left patch joins it: contextual = x0 + mean(x1, x3, x4, x6, x7).
    hidden = torch.arange(8.0)[None, :, None].repeat(1, 1, 2)
    attention = torch.tensor([[0.1, 0.2, 0.9, 0.0, 0.3, 1.0, 0.1, 0.2]])
    keys = torch.randn(1, 8, 3)
    dominant, targets, nearest = visionzip_split(attention, keys, 3)
    assert dominant.tolist() == [[2, 5]] and targets.tolist() == [[0]]
    assert nearest.tolist() == [[-1, 0, -1, 0, 0, -1, 0, 0]]
    # (A 2×4 grid has no room for K + scaffold tokens, so the token step is called directly.)
    _, tokens = BaselineSelector("visionzip")._visionzip(hidden, torch.rand(8, 4), attention, keys, 3, lambda x: x)
    expected_context = hidden[0, 0] + hidden[0, [1, 3, 4, 6, 7]].mean(0)
    torch.testing.assert_close(tokens[0], torch.stack([hidden[0, 2], hidden[0, 5], expected_context]))
    # Against the original code's formulation on a real-size case.
    torch.manual_seed(3)
    hidden, attention, keys = torch.randn(2, 2304, DIM), torch.rand(2, 2304), torch.randn(2, 2304, 8)
    with torch.no_grad():
        out = BaselineSelector("visionzip", ShirgXConfig(vision_dim=DIM))(hidden, budget=100, attention_received=attention, keys=keys)
    dominant_num = round(244 * 54 / 64)
    torch.testing.assert_close(out.tokens, _visionzip_reference(hidden, attention, keys, dominant_num, 244 - dominant_num))
    with pytest.raises(ValueError, match="attention_received and keys"):
        BaselineSelector("visionzip", ShirgXConfig(vision_dim=DIM))(hidden, budget=100)


def test_tome_matching_hand_case():
    # ToMe's bipartite rule on 6 tokens: A = 0, 2, 4; B = 1, 3, 5. Metric: token 0 ≡ 3, token 4 ≡ 5,
    # token 2 orthogonal to everything. r = 2: A0→B3 and A4→B5 merge; A2 stays. Order: unmerged A, then B.
    e = torch.eye(4)
    metric = torch.stack([e[0], e[1], e[2], e[0], e[3], e[3]])[None]
    x = torch.tensor([[1.0], [2.0], [3.0], [5.0], [7.0], [11.0]])[None]
    merge = bipartite_soft_matching(metric, 2)
    merged, size = merge_wavg(merge, x)
    assert merged[0, :, 0].tolist() == [3.0, 2.0, 3.0, 9.0] and size[0, :, 0].tolist() == [1, 1, 2, 2]
    # A second step weights by size: merging (size 2, value 3) with (size 1, value 2) gives 8/3.
    source = merge_source(merge, x)
    assert source[0].tolist() == [[0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    # Second step, sizes now differ: A = (3, s1), (3, s2); B = (2, s1), (9, s2). The second A token
    # matches B's first exactly (cos 1 > 0.89 of the first A with B's second), so r = 1 merges them:
    # (3·2 + 2·1) / 3 = 8/3 with size 3.
    metric2 = torch.tensor([[[0.5, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    again, size2 = merge_wavg(bipartite_soft_matching(metric2, 1), merged, size)
    torch.testing.assert_close(again[0, :, 0], torch.tensor([3.0, 8.0 / 3.0, 9.0]))
    assert size2[0, :, 0].tolist() == [1, 3, 2]


def test_tome_schedule_reaches_the_count_within_the_halving_limit():
    for tokens, count, layers in ((2304, 656, 26), (2304, 1168, 26), (64, 20, 3), (10, 3, 2)):
        schedule = tome_schedule(tokens, count, layers)
        assert sum(schedule) == tokens - count and len(schedule) == layers
        left = tokens
        for r in schedule:
            assert r <= left // 2
            left -= r
    with pytest.raises(ValueError, match="cannot go"):
        tome_schedule(2304, 100, 2)


def test_random_is_reproducible_and_bad_method_errors(tokens):
    selector = BaselineSelector("random", ShirgXConfig(vision_dim=DIM), seed=3)
    assert torch.equal(selector(tokens).source_index, selector(tokens).source_index)
    assert selector(tokens).budget == 768
    with pytest.raises(ValueError, match="method must be one of"):
        BaselineSelector("topk")
    assert BASELINES == ("pool", "random", "bipartite", "tome", "visionzip", "divprune")
    with pytest.raises(ValueError, match="keep_scaffold does not apply to tome"):
        BaselineSelector("tome", keep_scaffold=True)
    with pytest.raises(ValueError, match="budget K=2200"):
        BaselineSelector("pool", ShirgXConfig(vision_dim=DIM))(tokens, budget=2200)
