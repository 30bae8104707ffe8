"""Top-K over merged groups with real spreading, and indices consistent from score to gathered token.

Scores, representatives and assignments all index the same (B, N) patch axis: a group's score is the
mean score of its patches, written at its representative patch; the kept representatives become
output slots; every patch then takes the slot of its representative. Features are built afterwards
from that assignment only, so a kept token's features, coordinates and sources always describe the
same patches (the earlier attempt ranked unmerged scores but gathered merged features).

Spreading is greedy, NMS-style, in ``rounds`` tensor passes: round r keeps the next K/rounds best
groups under ``score − w_nbr · D_nbr``, where D_nbr of a group is the mean, over its patches, of the
share of their neighbourhood already kept (``scoring.neighbour_crowding`` of the kept-patch map).
With w_nbr = 0 this is plain top-K.
"""

from __future__ import annotations

import torch

from .scoring import NeighbourKernel


def _group_mean(values: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(B, N) per-patch values → (B, N) mean over each group, at its representative (0 elsewhere)."""
    summed = torch.zeros_like(values).scatter_add_(1, targets, values)
    return summed / sizes.clamp(min=1)


def select_top_groups(
    scores: torch.Tensor,
    targets: torch.Tensor,
    budget: int,
    grid: tuple[int, int] | None = None,
    spread_weight: float = 0.0,
    sigma: float = 2.0,
    rounds: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the K best groups, spreading them over the grid when ``spread_weight`` > 0.

    Args:
        scores: (B, N) patch scores (w_sim·Sim − w_ctr·D_ctr).
        targets: (B, N) long representative patch of each patch (from ``neighbour_merge_targets``).
        budget: K, at most the number of groups in every image.
        grid: (rows, cols), needed when ``spread_weight`` > 0.
        spread_weight: w_nbr, the weight of D_nbr (proximity to groups already kept).
        sigma: Gaussian width of D_nbr in patches.
        rounds: greedy rounds; round r keeps ⌊K(r+1)/R⌋ − ⌊Kr/R⌋ groups.

    Returns:
        assignment: (B, N) long, the output slot in [0, K) of each patch, −1 if its group is dropped.
            Slots follow the representatives' raster order, so kept tokens stay in reading order.
        group_scores: (B, N) mean score of each group at its representative, −inf elsewhere (before
            D_nbr, which depends on the order of keeping).
    """
    batch, num_patches = scores.shape
    sizes = torch.zeros_like(scores).scatter_add_(1, targets, torch.ones_like(scores))
    is_group = sizes > 0
    group_scores = torch.where(is_group, _group_mean(scores, targets, sizes), float("-inf"))
    if spread_weight and rounds > 1:
        if grid is None:
            raise ValueError("select_top_groups needs the grid to spread (spread_weight > 0)")
        kept = torch.zeros(batch, num_patches, dtype=torch.bool, device=scores.device)
        crowding = NeighbourKernel(grid, sigma, scores.device, scores.dtype)
        for step in range(rounds):
            count = budget * (step + 1) // rounds - budget * step // rounds
            if count == 0:
                continue
            kept_patches = kept.gather(1, targets).to(scores.dtype)
            proximity = _group_mean(crowding(kept_patches), targets, sizes)
            current = (group_scores - spread_weight * proximity).masked_fill(kept, float("-inf"))
            kept.scatter_(1, current.topk(count, dim=1, sorted=False).indices, True)
        chosen = kept
    else:
        chosen = torch.zeros(batch, num_patches, dtype=torch.bool, device=scores.device)
        chosen.scatter_(1, group_scores.topk(budget, dim=1, sorted=False).indices, True)
    # Raster order of the kept representatives: cumulative count over the patch axis.
    slot = torch.where(chosen, chosen.long().cumsum(dim=1) - 1, -1)
    return slot.gather(1, targets), group_scores
