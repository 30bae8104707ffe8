"""ShirgXSelector end to end: counts, consistency, text conditioning, budget head, bad input."""

import pytest
import torch
from torch import nn

from spatialvlm.selection import (
    BudgetHead,
    CoordinateEmbedding,
    ShirgXConfig,
    ShirgXSelector,
    grid_coords,
    patch_entropy,
    text_relevance,
)

DIM = 48


@pytest.fixture(scope="module")
def tokens():
    torch.manual_seed(0)
    return torch.randn(3, 2304, DIM)


@pytest.fixture(scope="module")
def selector():
    torch.manual_seed(0)
    return ShirgXSelector(ShirgXConfig(vision_dim=DIM))


@pytest.mark.parametrize("budget", [512, 768, 1024, 37])
def test_exactly_k_plus_144_tokens_for_every_budget_and_image(selector, tokens, budget):
    out = selector(tokens, budget=budget)
    assert out.tokens.shape == (3, budget + 144, DIM)
    assert out.coords.shape == (3, budget + 144, 4)
    assert out.is_scaffold.shape == (3, budget + 144)
    assert (out.is_scaffold.sum(dim=1) == 144).all() and out.is_scaffold[:, :144].all()
    assert out.budget == budget
    # Every patch is covered by at most one kept high-detail token.
    hi_sources = out.source_index[:, 144:]
    for b in range(3):
        covered = hi_sources[b][hi_sources[b] >= 0]
        assert covered.numel() == covered.unique().numel()
    assert ((out.coords >= 0) & (out.coords <= 1)).all()


def test_untrained_coordinate_embedding_leaves_tokens_unchanged_and_tokens_match_sources(selector, tokens):
    out = selector(tokens, budget=512)
    raw = ShirgXSelector(ShirgXConfig(vision_dim=DIM, add_coord_embedding=False))(tokens, budget=512)
    torch.testing.assert_close(out.tokens, raw.tokens, rtol=0, atol=0)
    for b in range(3):
        for slot in range(0, 656, 41):
            members = out.source_index[b, slot][out.source_index[b, slot] >= 0]
            torch.testing.assert_close(out.tokens[b, slot], tokens[b, members].mean(0))


def test_trained_coordinate_embedding_is_added_to_every_patch_before_pooling(tokens):
    selector = ShirgXSelector(ShirgXConfig(vision_dim=DIM))
    nn.init.normal_(selector.coord_embed.out_proj.weight)
    out = selector(tokens, budget=512)
    embedded = tokens + selector.coord_embed(grid_coords((48, 48)))
    for b in range(3):
        for slot in range(0, 656, 37):
            members = out.source_index[b, slot][out.source_index[b, slot] >= 0]
            torch.testing.assert_close(out.tokens[b, slot], embedded[b, members].mean(0))
    assert CoordinateEmbedding(DIM)(torch.rand(5, 4)).abs().max() == 0


def test_with_a_projector_every_token_is_pooled_after_it(tokens):
    torch.manual_seed(7)
    projector = nn.Sequential(nn.Linear(DIM, 40), nn.GELU(), nn.Linear(40, 40))
    selector = ShirgXSelector(ShirgXConfig(vision_dim=DIM))
    with torch.no_grad():
        out = selector(tokens, torch.randn(3, 4, 40), budget=512, projector=projector)
        projected = projector(tokens)
    assert out.tokens.shape == (3, 656, 40)
    for b in range(3):
        for slot in (0, 77, 143, 144, 400, 655):  # scaffold (16 patches) and kept groups alike
            members = out.source_index[b, slot][out.source_index[b, slot] >= 0]
            torch.testing.assert_close(out.tokens[b, slot], projected[b, members].mean(0))


def test_deterministic(selector, tokens):
    first, second = selector(tokens, budget=768), selector(tokens, budget=768)
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.source_index, second.source_index)


def test_question_matching_one_region_keeps_most_tokens_there():
    torch.manual_seed(1)
    question = torch.randn(DIM)
    tokens = torch.randn(2, 2304, DIM)
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    regions = [((rows >= 24) & (cols < 24)).flatten(), ((rows < 20) & (cols >= 20)).flatten()]
    for b, region in enumerate(regions):
        tokens[b, region] += 2 * question
    out = ShirgXSelector(ShirgXConfig(vision_dim=DIM))(tokens, question.expand(2, 1, -1), budget=512)
    for b, region in enumerate(regions):
        first_sources = out.source_index[b, 144:, 0]
        assert region[first_sources].float().mean() > 0.5
    # On tokens unrelated to the question the same region gets no special share.
    neutral = ShirgXSelector(ShirgXConfig(vision_dim=DIM))(torch.randn(1, 2304, DIM), question[None], budget=512)
    assert regions[0][neutral.source_index[0, 144:, 0]].float().mean() < 0.4


def test_adaptive_budget_head_chooses_from_budgets():
    config = ShirgXConfig(vision_dim=DIM)
    selector = ShirgXSelector(config)
    tokens = torch.randn(2, 2304, DIM)
    out = selector(tokens)
    assert out.budget == 768 and out.tokens.shape == (2, 912, DIM)  # untrained head: default budget
    assert out.budget_logits.shape == (2, 3)
    with torch.no_grad():
        selector.budget_head.mlp[2].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    assert selector(tokens).budget == 1024
    # Input width D → 32 → 3: D·32 + 32 + 32·3 + 3 parameters.
    assert selector.budget_head.num_parameters() == DIM * 32 + 32 + 32 * 3 + 3
    assert BudgetHead(1152, (512, 768, 1024)).num_parameters() == 36995


def test_batch_uses_the_largest_chosen_budget():
    head = BudgetHead(4, (512, 768, 1024))
    assert head.choose(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])).tolist() == [512, 1024]


def test_patch_entropy_is_one_for_uniform_channels_and_low_for_peaked():
    tokens = torch.zeros(1, 100, 2)
    tokens[0, 7, 1] = 50.0
    entropy = patch_entropy(tokens)
    torch.testing.assert_close(entropy[0, 0], torch.tensor(1.0))
    assert entropy[0, 1] < 0.01


def test_relevance_is_the_exact_projected_score_on_a_real_dims_projector():
    """Sim = max over question tokens of ⟨P(f_i), e_q/‖e_q‖⟩, with LaViDa's projector shape
    (Linear 1152→4096, GELU, Linear 4096→4096, biases), computed by hand here."""
    torch.manual_seed(8)
    projector = nn.Sequential(nn.Linear(1152, 4096), nn.GELU(), nn.Linear(4096, 4096))
    with torch.no_grad():
        for layer in (projector[0], projector[2]):
            layer.bias.normal_(0.0, 0.5)  # biases matter: the old pull-back shortcut dropped them
    features = torch.randn(1, 2304, 1152)
    question = torch.randn(1, 6, 4096)
    mask = torch.tensor([[True, True, True, True, False, False]])  # padding is not a question token
    selector = ShirgXSelector(ShirgXConfig(vision_dim=1152, neighbour_weight=0.0, centre_weight=0.0))
    with torch.no_grad():
        out = selector(features, question, budget=512, text_mask=mask, projector=projector)
        hidden = torch.nn.functional.gelu(features[0] @ projector[0].weight.T + projector[0].bias)
        projected = hidden @ projector[2].weight.T + projector[2].bias
        unit = question[0, :4] / question[0, :4].norm(dim=-1, keepdim=True)
        exact = (projected @ unit.T).amax(dim=-1)
    torch.testing.assert_close(text_relevance(projector(features), question, mask)[0], exact, rtol=1e-4, atol=1e-3)
    # The patch scores are w_sim · minmax(exact score): the same ranking, exactly.
    normalised = (exact - exact.min()) / (exact.max() - exact.min())
    torch.testing.assert_close(out.patch_scores[0], 0.7 * normalised, rtol=1e-4, atol=1e-5)


def test_text_free_saliency_when_no_question(tokens):
    selector = ShirgXSelector(ShirgXConfig(vision_dim=DIM, neighbour_weight=0.0, centre_weight=0.0))
    out = selector(tokens[:1], budget=512)
    mean = tokens[0].mean(0)
    saliency = 1 - torch.nn.functional.cosine_similarity(tokens[0], mean[None], dim=-1)
    normalised = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    torch.testing.assert_close(out.patch_scores[0], 0.7 * normalised, rtol=1e-4, atol=1e-5)


def test_score_tokens_drive_text_free_selection_but_hi_tokens_are_handed_on():
    torch.manual_seed(3)
    hi_tokens, score_tokens = torch.randn(1, 2304, DIM), torch.randn(1, 2304, 16)
    selector = ShirgXSelector(ShirgXConfig(vision_dim=DIM, score_dim=16))
    out = selector(hi_tokens, budget=100, score_tokens=score_tokens)
    members = out.source_index[0, 150][out.source_index[0, 150] >= 0]
    torch.testing.assert_close(out.tokens[0, 150], hi_tokens[0, members].mean(0))
    other = selector(hi_tokens, budget=100, score_tokens=torch.randn(1, 2304, 16))
    assert not torch.equal(out.source_index, other.source_index)


def test_bad_input_errors(selector):
    with pytest.raises(ValueError, match="grid 48×48 needs 2304"):
        selector(torch.randn(1, 576, DIM))
    with pytest.raises(ValueError, match="budget K=3000"):
        selector(torch.randn(1, 2304, DIM), budget=3000)
    nan_tokens = torch.randn(1, 2304, DIM)
    nan_tokens[0, 17, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        selector(nan_tokens, budget=512)
    with pytest.raises(ValueError, match="text_embeds must be"):
        selector(torch.randn(1, 2304, DIM), torch.randn(1, 4, DIM + 1), budget=512)
    with pytest.raises(ValueError, match="vision_dim"):
        selector(torch.randn(1, 2304, DIM + 2), budget=512)
    with pytest.raises(ValueError, match="default_budget"):
        ShirgXConfig(default_budget=600)


def test_patch_entropy_matches_direct_formula():
    torch.manual_seed(4)
    tokens = 3 * torch.randn(2, 50, 7)
    probability = torch.softmax(tokens / 0.5, dim=1)
    expected = -(probability * probability.log()).sum(dim=1) / torch.log(torch.tensor(50.0))
    torch.testing.assert_close(patch_entropy(tokens, temperature=0.5), expected)


def test_bfloat16_tokens_keep_their_dtype_and_count():
    tokens = torch.randn(1, 2304, DIM).bfloat16()
    out = ShirgXSelector(ShirgXConfig(vision_dim=DIM))(tokens, torch.randn(1, DIM).bfloat16(), budget=512)
    assert out.tokens.dtype == torch.bfloat16 and out.tokens.shape == (1, 656, DIM)
    assert out.coords.dtype == torch.float32
