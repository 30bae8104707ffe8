"""Baseline selectors with SHIRG-X's call shape and output count, for side-by-side comparison.

Each ``*_assignment`` function maps every patch to one of ``count`` output groups (−1 = dropped);
:class:`BaselineSelector` turns that into a :class:`SelectionOutput` through ``group_reduce``.
By default a baseline spends the whole K + 144 on its own method (what a user would run instead of
SHIRG-X); ``keep_scaffold=True`` gives it SHIRG-X's scaffold plus K of its own tokens instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_budget, check_finite, check_patch_tokens
from .config import ShirgXConfig
from .dual_scale import dual_scale_tokens, scaffold_source_index
from .grouping import group_reduce
from .output import SelectionOutput

BASELINES = ("pool", "random", "tome", "visionzip", "divprune")


def uniform_pool_assignment(grid: tuple[int, int], count: int, device: torch.device | None = None) -> torch.Tensor:
    """(N,) group of each patch for average pooling to exactly ``count`` near-square cells.

    The grid is cut into ``bands`` row bands; band b is cut into ``count // bands`` (+1 for the first
    ``count % bands``) column bins. Bands and bins are as even as integer boundaries allow.
    """
    rows, cols = grid
    bands = min(rows, max(math.ceil(count / cols), round(math.sqrt(count * rows / cols))))
    band = torch.arange(rows, device=device) * bands // rows
    bins_per_band = count // bands + (torch.arange(bands, device=device) < count % bands).long()
    first_group = bins_per_band.cumsum(0) - bins_per_band
    bins = bins_per_band[band][:, None]
    column_bin = torch.arange(cols, device=device)[None, :] * bins // cols
    return (first_group[band][:, None] + column_bin).reshape(-1)


def random_assignment(batch: int, num_patches: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(B, N) keep ``count`` patches chosen uniformly at random, slots in raster order."""
    keep = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)[:, :count].sort(dim=1).values
    return _slots_for(keep, num_patches)


def tome_assignment(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N) ToMe bipartite soft matching down to ``count`` tokens (Bolya et al., 2023).

    Per round: alternate tokens form sets A and B; each A token's best match in B by cosine of the
    (size-weighted mean) features; the r most similar edges merge, r = min(|A|, current − count).
    Rounds repeat until ``count`` tokens remain. Merged features are size-weighted means, i.e. the
    mean of all original patches of the group, which ``group_reduce`` recomputes from the assignment.
    """
    batch, num_patches, _ = tokens.shape
    features = tokens
    sizes = tokens.new_ones(batch, num_patches, 1)
    assignment = torch.arange(num_patches, device=tokens.device).expand(batch, -1)
    while features.shape[1] > count:
        current = features.shape[1]
        merges = min((current + 1) // 2, current - count)
        a, b = features[:, ::2], features[:, 1::2]
        similarity = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2)
        best, best_b = similarity.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
        unmerged, merged = order[:, merges:], order[:, :merges]
        merged_b = best_b.gather(1, merged)

        size_a, size_b = sizes[:, ::2], sizes[:, 1::2]
        weighted_b = (b * size_b).scatter_add(
            1, merged_b[..., None].expand(-1, -1, b.shape[-1]), (a * size_a).gather(1, merged[..., None].expand(-1, -1, a.shape[-1]))
        )
        new_size_b = size_b.scatter_add(1, merged_b[..., None], size_a.gather(1, merged[..., None]))
        kept_a = unmerged.shape[1]
        features = torch.cat([a.gather(1, unmerged[..., None].expand(-1, -1, a.shape[-1])), weighted_b / new_size_b], dim=1)
        sizes = torch.cat([size_a.gather(1, unmerged[..., None]), new_size_b], dim=1)

        # Where each old token went: unmerged A to its new slot, merged A to its B's slot, B after A.
        new_index_a = torch.empty_like(order)
        new_index_a.scatter_(1, unmerged, torch.arange(kept_a, device=tokens.device).expand(batch, -1))
        new_index_a.scatter_(1, merged, kept_a + merged_b)
        new_index = torch.empty(batch, current, dtype=torch.long, device=tokens.device)
        new_index[:, ::2] = new_index_a
        new_index[:, 1::2] = kept_a + torch.arange(b.shape[1], device=tokens.device)
        assignment = new_index.gather(1, assignment)
    return assignment


def attention_received(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, D) → (B, N) mean attention each token receives under softmax(X Xᵀ / √D).

    SigLIP has no CLS token, so VisionZip's CLS attention becomes the attention a token receives
    averaged over all queries; the features stand in for queries and keys (parameter-free proxy).
    """
    logits = tokens @ tokens.transpose(1, 2) / math.sqrt(tokens.shape[-1])
    return logits.softmax(dim=-1).mean(dim=1)


def visionzip_assignment(tokens: torch.Tensor, count: int, dominant_fraction: float = 54 / 64) -> torch.Tensor:
    """(B, N) VisionZip-style: dominant tokens by attention received, contextual tokens by merging.

    ``dominant_fraction`` of the count (VisionZip's 54 of 64) are the patches receiving most
    attention. Of the rest, evenly spaced patches become contextual centres and every other remaining
    patch is averaged into its most cosine-similar centre.
    """
    batch, num_patches, _ = tokens.shape
    dominant_count = min(count - 1, round(count * dominant_fraction)) if count > 1 else 1
    context_count = count - dominant_count
    received = attention_received(tokens)
    ranked = received.argsort(dim=1, descending=True)
    dominant = ranked[:, :dominant_count].sort(dim=1).values
    assignment = _slots_for(dominant, num_patches)
    if context_count == 0:
        return assignment
    remaining = ranked[:, dominant_count:].sort(dim=1).values
    step = remaining.shape[1] / context_count
    centre_position = (torch.arange(context_count, device=tokens.device) * step).long()
    centres = remaining[:, centre_position]
    remaining_features = tokens.gather(1, remaining[..., None].expand(-1, -1, tokens.shape[-1]))
    centre_features = tokens.gather(1, centres[..., None].expand(-1, -1, tokens.shape[-1]))
    nearest = (F.normalize(remaining_features, dim=-1) @ F.normalize(centre_features, dim=-1).transpose(1, 2)).argmax(-1)
    nearest[:, centre_position] = torch.arange(context_count, device=tokens.device)
    return assignment.scatter(1, remaining, dominant_count + nearest)


def divprune_assignment(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N) DivPrune (Alvar et al., 2025): greedy max-min diversity under cosine distance.

    The first pick is the patch farthest from its nearest neighbour; each next pick maximises its
    distance to the nearest already picked patch. The greedy steps are sequential by nature (one
    vectorised update over all patches per pick).
    """
    batch, num_patches, _ = tokens.shape
    unit = F.normalize(tokens, dim=-1)
    distance = 1.0 - unit @ unit.transpose(1, 2)
    batch_index = torch.arange(batch, device=tokens.device)
    nearest = distance + torch.eye(num_patches, device=tokens.device, dtype=distance.dtype) * 4.0
    pick = nearest.amin(dim=-1).argmax(dim=-1)
    picked = torch.empty(batch, count, dtype=torch.long, device=tokens.device)
    to_picked = torch.full((batch, num_patches), float("inf"), device=tokens.device, dtype=distance.dtype)
    for step in range(count):
        picked[:, step] = pick
        # A picked patch is at distance 0 from the set; −inf keeps it from being picked again.
        to_picked = torch.minimum(to_picked, distance[batch_index, pick])
        to_picked[batch_index, pick] = float("-inf")
        pick = to_picked.argmax(dim=-1)
    return _slots_for(picked.sort(dim=1).values, num_patches)


def _slots_for(keep: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(B, k) kept patch indices → (B, N) slot of each kept patch, −1 for the rest."""
    batch, count = keep.shape
    slots = torch.full((batch, num_patches), -1, dtype=torch.long, device=keep.device)
    return slots.scatter(1, keep, torch.arange(count, device=keep.device).expand(batch, -1))


class BaselineSelector(nn.Module):
    """A baseline with ``ShirgXSelector``'s call shape and K + 144 output tokens.

    Args:
        method: one of ``BASELINES``: "pool" (uniform average pooling, LaViDa's default), "random",
            "tome", "visionzip", "divprune".
        config: the grid, pool, budgets and default budget are read from a ``ShirgXConfig``.
        keep_scaffold: spend 144 tokens on the SHIRG-X scaffold and K on the method, instead of
            K + 144 on the method.
        seed: seed of the random baseline (each call restarts it, so calls are reproducible).
    """

    def __init__(self, method: str, config: ShirgXConfig | None = None, keep_scaffold: bool = False, seed: int = 0) -> None:
        super().__init__()
        if method not in BASELINES:
            raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
        self.method = method
        self.config = config or ShirgXConfig()
        self.keep_scaffold = keep_scaffold
        self.seed = seed

    def forward(
        self, hi_tokens: torch.Tensor, text_embeds: torch.Tensor | None = None, budget: int | None = None, **unused
    ) -> SelectionOutput:
        """(B, N, D) → :class:`SelectionOutput` with K + 144 tokens; ``text_embeds`` is ignored."""
        config = self.config
        check_patch_tokens(hi_tokens, config.grid)
        if config.check_finite:
            check_finite(hi_tokens)
        budget = config.default_budget if budget is None else budget
        check_budget(budget, config.num_patches)
        batch, num_patches, _ = hi_tokens.shape
        scaffold_count = config.num_scaffold
        count = budget if self.keep_scaffold else budget + scaffold_count
        if count > num_patches:
            raise ValueError(
                f"budget K={budget} plus the {scaffold_count} scaffold-equivalent tokens is {count}, "
                f"more than the {num_patches} patches available"
            )

        if self.method == "pool":
            assignment = uniform_pool_assignment(config.grid, count, hi_tokens.device).expand(batch, -1)
        elif self.method == "random":
            generator = torch.Generator().manual_seed(self.seed)
            assignment = random_assignment(batch, num_patches, count, generator).to(hi_tokens.device)
        elif self.method == "tome":
            assignment = tome_assignment(hi_tokens, count)
        elif self.method == "visionzip":
            assignment = visionzip_assignment(hi_tokens, count)
        else:
            assignment = divprune_assignment(hi_tokens, count)

        scaffold, hi_coords, scaffold_coords = dual_scale_tokens(hi_tokens, config.grid, config.scaffold_pool)
        grouped = group_reduce(hi_tokens, hi_coords[0], assignment, count)
        if not self.keep_scaffold:
            return SelectionOutput(
                tokens=grouped.tokens,
                coords=grouped.coords,
                is_scaffold=torch.zeros(batch, count, dtype=torch.bool, device=hi_tokens.device),
                budget=budget,
                source_index=grouped.source_index,
            )
        pool = config.scaffold_pool
        width = max(pool * pool, grouped.source_index.shape[-1])
        scaffold_sources = F.pad(scaffold_source_index(config.grid, pool, hi_tokens.device), (0, width - pool * pool), value=-1)
        kept_sources = F.pad(grouped.source_index, (0, width - grouped.source_index.shape[-1]), value=-1)
        is_scaffold = torch.zeros(batch, scaffold_count + count, dtype=torch.bool, device=hi_tokens.device)
        is_scaffold[:, :scaffold_count] = True
        return SelectionOutput(
            tokens=torch.cat([scaffold, grouped.tokens], dim=1),
            coords=torch.cat([scaffold_coords, grouped.coords], dim=1),
            is_scaffold=is_scaffold,
            budget=budget,
            source_index=torch.cat([scaffold_sources.expand(batch, -1, -1), kept_sources], dim=1),
        )
