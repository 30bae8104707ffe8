"""Reduce groups of patches to single tokens: the one routine every selector builds its output with.

A selector decides an assignment patch → group (or −1 for a dropped patch); features, coordinates
and source indices then all come from that one assignment, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupedTokens:
    """Tokens made by :func:`group_reduce`.

    Attributes:
        tokens: (B, G, D) size-weighted mean features (each patch has size 1, so the mean of the
            group's patches, which is also what repeated ToMe size-weighted merges give).
        coords: (B, G, 4) (x, y, h, w): area-weighted centroid and the extent of the union's
            bounding box.
        sizes: (B, G) number of patches per group.
        source_index: (B, G, S) long, the patch indices of each group in increasing order,
            padded with −1.
    """

    tokens: torch.Tensor
    coords: torch.Tensor
    sizes: torch.Tensor
    source_index: torch.Tensor


def group_reduce(
    tokens: torch.Tensor,
    coords: torch.Tensor,
    assignment: torch.Tensor,
    num_groups: int,
    max_group_size: int | None = None,
) -> GroupedTokens:
    """Average patches into groups.

    Args:
        tokens: (B, N, D) patch features.
        coords: (B, N, 4) or (N, 4) patch coordinates (x, y, h, w).
        assignment: (B, N) long, the group of each patch in [0, num_groups), or −1 to drop it.
        num_groups: G.
        max_group_size: S, the width of ``source_index``; ``None`` uses the largest group.

    Returns:
        :class:`GroupedTokens`.
    """
    batch, num_patches, dim = tokens.shape
    coords = coords.expand(batch, num_patches, 4)
    # Dropped patches go to a spare group G that is cut off at the end.
    group = torch.where(assignment < 0, num_groups, assignment)
    flat_group = (group + torch.arange(batch, device=tokens.device)[:, None] * (num_groups + 1)).reshape(-1)
    rows = batch * (num_groups + 1)

    counts = torch.zeros(batch, num_groups + 1, dtype=torch.long, device=tokens.device)
    counts = counts.scatter_add_(1, group, torch.ones_like(group))[:, :num_groups]
    if max_group_size is None:
        max_group_size = max(int(counts.max()), 1)
    elif bool((counts > max_group_size).any()):
        raise ValueError(f"a group has more than max_group_size={max_group_size} patches")
    source_index = _source_index(group, num_groups, max_group_size)
    mean_tokens = _group_means(tokens, source_index, counts)

    x, y, height, width = coords.reshape(-1, 4).unbind(-1)
    area = height * width
    weighted = torch.zeros(rows, 3, device=tokens.device, dtype=coords.dtype).index_add_(
        0, flat_group, torch.stack([x * area, y * area, area], dim=-1)
    )
    centre = weighted[:, :2] / weighted[:, 2:].clamp(min=torch.finfo(coords.dtype).tiny)
    edges = torch.stack([x - width / 2, y - height / 2, -(x + width / 2), -(y + height / 2)], dim=-1)
    # One amin over (left, top, −right, −bottom) gives the whole bounding box in a single scatter.
    box = torch.full((rows, 4), float("inf"), device=tokens.device, dtype=coords.dtype).scatter_reduce_(
        0, flat_group[:, None].expand(-1, 4), edges, "amin"
    )
    extent = torch.stack([-box[:, 3] - box[:, 1], -box[:, 2] - box[:, 0]], dim=-1)
    group_coords = torch.cat([centre, extent], dim=-1).view(batch, num_groups + 1, 4)[:, :num_groups]
    return GroupedTokens(mean_tokens, group_coords, counts, source_index)


def _group_means(tokens: torch.Tensor, source_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B, G, D) mean of each group's patches from its (B, G, S) source list.

    Whole-row gathers and copies, one member slot at a time, touching only the groups that have a
    member in that slot. On CPU this beats a scatter-add of every patch (``index_add_`` synchronises
    its threads once per row) and, unlike an accumulating put, it adds in a fixed order, so results
    are bit-for-bit deterministic. Most SHIRG-X groups are single patches.
    """
    batch, num_patches, dim = tokens.shape
    num_groups = source_index.shape[1]
    flat_tokens = tokens.reshape(-1, dim)
    flat_source = source_index.reshape(batch * num_groups, -1)
    patch_offset = torch.arange(batch * num_groups, device=tokens.device) // num_groups * num_patches
    summed = flat_tokens.index_select(0, flat_source[:, 0].clamp(min=0) + patch_offset)
    for slot in range(1, flat_source.shape[1]):
        rows = (flat_source[:, slot] >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            break  # slots fill in order: an empty slot means every later one is empty too
        members = flat_tokens.index_select(0, flat_source[rows, slot] + patch_offset[rows])
        summed.index_copy_(0, rows, summed.index_select(0, rows) + members)
    sizes = counts.reshape(-1)
    shared = (sizes != 1).nonzero().squeeze(1)
    # Only multi-patch (and empty) groups need dividing; empty ones become 0.
    scale = (sizes[shared] > 0).to(tokens.dtype) / sizes[shared].clamp(min=1).to(tokens.dtype)
    summed.index_copy_(0, shared, summed.index_select(0, shared) * scale[:, None])
    return summed.view(batch, num_groups, dim)


def _source_index(group: torch.Tensor, num_groups: int, max_group_size: int) -> torch.Tensor:
    """(B, G, S) patch indices per group, increasing, −1 padded; ``group`` uses G for dropped."""
    batch, num_patches = group.shape
    sorted_group, order = torch.sort(group, dim=1, stable=True)
    counts = torch.zeros(batch, num_groups + 1, dtype=torch.long, device=group.device)
    counts.scatter_add_(1, group, torch.ones_like(group))
    starts = counts.cumsum(1) - counts
    rank = torch.arange(num_patches, device=group.device) - starts.gather(1, sorted_group)
    keep = (sorted_group < num_groups) & (rank < max_group_size)
    size = batch * num_groups * max_group_size
    batch_offset = torch.arange(batch, device=group.device)[:, None] * num_groups
    # Flat positions; dropped patches all land in one spare slot past the end, cut off below.
    position = torch.where(keep, ((batch_offset + sorted_group) * max_group_size + rank), size)
    source = torch.full((size + 1,), -1, dtype=torch.long, device=group.device)
    source.scatter_(0, position.reshape(-1), order.reshape(-1))
    return source[:size].view(batch, num_groups, max_group_size)
