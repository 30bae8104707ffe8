"""Top-K over merged groups, with indices that stay consistent from score to gathered token.

Scores, representatives and assignments all index the same (B, N) patch axis: a group's score is the
mean score of its patches, written at its representative patch; the top K representatives become
output slots; every patch then takes the slot of its representative. Features are built afterwards
from that assignment only, so a kept token's features, coordinates and sources always describe the
same patches (the earlier attempt ranked unmerged scores but gathered merged features).
"""

from __future__ import annotations

import torch


def select_top_groups(scores: torch.Tensor, targets: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the K best groups.

    Args:
        scores: (B, N) patch scores.
        targets: (B, N) long representative patch of each patch (from ``neighbour_merge_targets``).
        budget: K, at most the number of groups in every image.

    Returns:
        assignment: (B, N) long, the output slot in [0, K) of each patch, −1 if its group is dropped.
            Slots follow the representatives' raster order, so kept tokens stay in reading order.
        group_scores: (B, N) mean score of each group at its representative, −inf elsewhere.
    """
    batch, num_patches = scores.shape
    summed = torch.zeros_like(scores).scatter_add_(1, targets, scores)
    sizes = torch.zeros_like(scores).scatter_add_(1, targets, torch.ones_like(scores))
    group_scores = torch.where(sizes > 0, summed / sizes.clamp(min=1), float("-inf"))
    kept = group_scores.topk(budget, dim=1, sorted=False).indices.sort(dim=1).values
    slot = torch.full((batch, num_patches), -1, dtype=torch.long, device=scores.device)
    slot.scatter_(1, kept, torch.arange(budget, device=scores.device).expand(batch, -1))
    return slot.gather(1, targets), group_scores
