"""Baselines: same call shape and count as SHIRG-X, each against a direct reference."""

import pytest
import torch
import torch.nn.functional as F

from spatialvlm.selection import (
    BASELINES,
    BaselineSelector,
    ShirgXConfig,
    divprune_assignment,
    tome_assignment,
    uniform_pool_assignment,
    visionzip_assignment,
)
from spatialvlm.selection.baselines import attention_received

DIM = 16


@pytest.fixture(scope="module")
def tokens():
    torch.manual_seed(0)
    return torch.randn(2, 2304, DIM)


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("keep_scaffold", [False, True])
def test_same_count_as_shirgx_and_tokens_are_means_of_sources(method, keep_scaffold, tokens):
    out = BaselineSelector(method, ShirgXConfig(vision_dim=DIM), keep_scaffold=keep_scaffold)(tokens, budget=100)
    assert out.tokens.shape == (2, 244, DIM) and out.coords.shape == (2, 244, 4)
    assert int(out.is_scaffold.sum()) == (288 if keep_scaffold else 0)
    for b in range(2):
        hi = out.source_index[b][~out.is_scaffold[b]]
        assert hi.numel() and hi[hi >= 0].unique().numel() == hi[hi >= 0].numel()
        for slot in (0, 150, 243):
            members = out.source_index[b, slot][out.source_index[b, slot] >= 0]
            torch.testing.assert_close(out.tokens[b, slot], tokens[b, members].mean(0))


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


def test_tome_matches_direct_reference():
    torch.manual_seed(1)
    tokens = torch.randn(1, 40, 5)
    count = 12
    features, sizes = tokens[0], torch.ones(40)
    while features.shape[0] > count:
        features, sizes = naive_tome_round(features, sizes, min((features.shape[0] + 1) // 2, features.shape[0] - count))
    assignment = tome_assignment(tokens, count)
    ours = torch.stack([tokens[0, assignment[0] == g].mean(0) for g in range(count)])
    torch.testing.assert_close(ours, features)
    assert torch.equal(torch.bincount(assignment[0], minlength=count).float(), sizes)


def test_divprune_matches_greedy_max_min_reference():
    torch.manual_seed(2)
    tokens = torch.randn(1, 30, 4)
    unit = F.normalize(tokens[0], dim=-1)
    distance = 1 - unit @ unit.T
    off_diagonal = distance + torch.eye(30) * 4
    picked = [int(off_diagonal.amin(-1).argmax())]
    while len(picked) < 8:
        rest = [i for i in range(30) if i not in picked]
        picked.append(max(rest, key=lambda i: float(distance[i, picked].min())))
    assignment = divprune_assignment(tokens, 8)
    assert sorted(picked) == torch.nonzero(assignment[0] >= 0).flatten().tolist()


def test_visionzip_keeps_most_attended_tokens_and_merges_the_rest():
    torch.manual_seed(3)
    tokens = torch.randn(1, 64, 8)
    assignment = visionzip_assignment(tokens, 16)
    received = attention_received(tokens)
    dominant = set(received[0].argsort(descending=True)[:14].tolist())
    singletons = {int(i) for i in range(64) if (assignment[0] == assignment[0, i]).sum() == 1 and assignment[0, i] < 14}
    assert singletons == dominant
    assert (assignment[0] >= 0).all() and assignment[0].max() == 15
    logits = tokens[0] @ tokens[0].T / 8**0.5
    torch.testing.assert_close(received[0], logits.softmax(-1).mean(0))


def test_random_is_reproducible_and_bad_method_errors(tokens):
    selector = BaselineSelector("random", ShirgXConfig(vision_dim=DIM), seed=3)
    assert torch.equal(selector(tokens).source_index, selector(tokens).source_index)
    assert selector(tokens).budget == 768
    with pytest.raises(ValueError, match="method must be one of"):
        BaselineSelector("topk")
    with pytest.raises(ValueError, match="budget K=2200"):
        BaselineSelector("pool", ShirgXConfig(vision_dim=DIM))(tokens, budget=2200)
