"""Neighbour merging, ToMe-style bipartite matching on the patch grid.

The grid is split like a checkerboard: cells with (row + col) odd are sources, the others
destinations, so every grid neighbour (up, down, left, right) of a source is a destination. Each
source picks the neighbour whose score is closest to its own; if they differ by less than ε, the
source merges into it. A destination can absorb up to its four sources, so a group is a plus shape of
at most five patches and keeps a local meaning. When more pairs qualify than may merge (at least K
tokens must remain), the closest pairs merge first, as in ToMe. Features are then averaged by size,
coordinates by area (see ``grouping.group_reduce``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_MERGED_GROUP = 5  # one destination plus its four grid neighbours


def neighbour_merge_targets(
    scores: torch.Tensor, grid: tuple[int, int], threshold: float = 0.05, max_merges: int | None = None
) -> torch.Tensor:
    """Where each patch goes after merging.

    Args:
        scores: (B, N) row-major patch scores.
        grid: (rows, cols).
        threshold: ε; a source merges only when |s_source − s_destination| < ε.
        max_merges: most merges per image (N − K keeps at least K tokens); ``None``: no limit.

    Returns:
        (B, N) long: the patch index of the group representative (the destination for merged
        sources, the patch itself otherwise).
    """
    rows, cols = grid
    batch, num_patches = scores.shape
    grid_scores = scores.view(batch, rows, cols)
    padded = F.pad(grid_scores, (1, 1, 1, 1), value=float("inf"))
    own_index = torch.arange(num_patches, device=scores.device).view(rows, cols)
    # Neighbours in the order up, down, left, right (index offsets −cols, +cols, −1, +1); outside
    # the image the difference is inf. Elementwise steps instead of min/argmin over a size-4 axis
    # and a gather, both slow on CPU; the strict < keeps the first direction on ties, like argmin.
    neighbours = (
        (padded[:, :-2, 1:-1], -cols),
        (padded[:, 2:, 1:-1], cols),
        (padded[:, 1:-1, :-2], -1),
        (padded[:, 1:-1, 2:], 1),
    )
    best_difference = torch.full_like(grid_scores, float("inf"))
    target = own_index.expand(batch, rows, cols)
    for neighbour, offset in neighbours:
        difference = (neighbour - grid_scores).abs()
        closer = difference < best_difference
        best_difference = torch.where(closer, difference, best_difference)
        target = torch.where(closer, own_index + offset, target)

    row = torch.arange(rows, device=scores.device)[:, None]
    col = torch.arange(cols, device=scores.device)[None, :]
    is_source = ((row + col) % 2 == 1).expand(batch, rows, cols)
    merge = is_source & (best_difference < threshold)
    if max_merges is not None and max_merges < num_patches:
        # Rank candidate sources by closeness; only the best max_merges of them merge.
        candidate_difference = torch.where(merge, best_difference, float("inf")).view(batch, -1)
        order = candidate_difference.argsort(dim=1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, own_index.view(1, -1).expand(batch, -1))
        rank = rank.view(batch, rows, cols)
        merge = merge & (rank < max_merges)
    return torch.where(merge, target, own_index).view(batch, num_patches)
