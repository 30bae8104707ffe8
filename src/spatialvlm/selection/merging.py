"""Neighbour merging, ToMe-style bipartite matching on the patch grid.

The grid is split like a checkerboard: cells with (row + col) odd are sources, the others
destinations, so every grid neighbour (up, down, left, right) of a source is a destination. Each
source picks the neighbour whose score is closest to its own; it merges into it only if the scores
differ by less than ε *and* their features are alike, cos(f_source, f_destination) ≥ τ (ToMe's
criterion is feature similarity; a score tie alone would average away detail, e.g. two different
glyphs of one text line scoring alike). A destination can absorb up to its four sources, so a group is a plus shape of
at most five patches and keeps a local meaning. When more pairs qualify than may merge (at least K
tokens must remain), the closest pairs merge first, as in ToMe. Features are then averaged by size,
coordinates by area (see ``grouping.group_reduce``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

MAX_MERGED_GROUP = 5  # one destination plus its four grid neighbours


def neighbour_merge_targets(
    scores: torch.Tensor,
    grid: tuple[int, int],
    threshold: float = 0.05,
    max_merges: int | None = None,
    features: torch.Tensor | None = None,
    similarity: float = 0.0,
) -> torch.Tensor:
    """Where each patch goes after merging.

    Args:
        scores: (B, N) row-major patch scores.
        grid: (rows, cols).
        threshold: ε; a source merges only when |s_source − s_destination| < ε.
        max_merges: most merges per image (N − K keeps at least K tokens); ``None``: no limit.
        features: (B, N, D) patch features for the similarity gate; ``None``: scores alone decide.
        similarity: τ; with ``features``, a source merges only when cos(f_source, f_dest) ≥ τ.

    Returns:
        (B, N) long: the patch index of the group representative (the destination for merged
        sources, the patch itself otherwise).
    """
    rows, cols = grid
    batch, num_patches = scores.shape
    grid_scores = scores.view(batch, 1, rows, cols)
    padded = F.pad(grid_scores, (1, 1, 1, 1), value=float("inf"))
    # (B, 4, rows, cols) neighbour scores: up, down, left, right; inf outside the image.
    neighbours = torch.cat(
        [padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]], dim=1
    )
    # min over a leading axis of 4 (first direction wins ties, like argmin), not a trailing one,
    # which takes a slow path on CPU.
    best_difference, direction = (neighbours - grid_scores).abs_().min(dim=1)
    own_index, is_source, offsets = _grid_layout(rows, cols, scores.device)
    target = own_index + offsets.gather(0, direction.view(-1)).view_as(direction)

    merge = is_source & (best_difference < threshold)
    if features is not None:
        # One cosine per patch, with the neighbour it would join (not all four): N·D work.
        unit = F.normalize(features.float(), dim=-1)
        partner = unit.gather(1, target.view(batch, -1, 1).clamp(0, num_patches - 1).expand(-1, -1, unit.shape[-1]))
        alike = (unit * partner).sum(-1).view(batch, rows, cols) >= similarity
        merge = merge & alike
    if max_merges is not None and max_merges < num_patches:
        # Rank candidate sources by closeness; only the best max_merges of them merge.
        candidate_difference = torch.where(merge, best_difference, float("inf")).view(batch, -1)
        order = candidate_difference.argsort(dim=1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, own_index.view(1, -1).expand(batch, -1))
        merge = merge & (rank.view(batch, rows, cols) < max_merges)
    return torch.where(merge, target, own_index).view(batch, num_patches)


@functools.lru_cache(maxsize=8)
def _grid_layout(rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch indices (rows, cols), the checkerboard source mask ((row + col) odd), and the index
    offsets of the up, down, left, right neighbours."""
    own_index = torch.arange(rows * cols, device=device).view(rows, cols)
    is_source = (own_index // cols + own_index % cols) % 2 == 1
    offsets = torch.tensor([-cols, cols, -1, 1], device=device)
    return own_index, is_source, offsets
