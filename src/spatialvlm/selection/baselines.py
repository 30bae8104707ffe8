"""Baseline selectors with SHIRG-X's call shape and output count, for side-by-side comparison.

Each ``*_assignment`` function maps every patch to one of ``count`` output groups (−1 = dropped);
:class:`BaselineSelector` turns that into a :class:`SelectionOutput` through ``group_reduce``.
By default a baseline spends the whole K + 144 on its own method (what a user would run instead of
SHIRG-X); ``keep_scaffold=True`` gives it SHIRG-X's scaffold plus K of its own tokens instead.

Where a projector is passed, every patch is projected first and groups are averaged *after* it, as
LaViDa pools (``get_2dPool`` runs on ``mm_projector`` output); VisionZip forms its tokens before the
projector, as its ``llava_arch`` does. The methods, named for what they are:

- ``pool``       uniform average pooling to exactly K + 144 near-square cells (after the projector).
- ``random``     K + 144 patches uniformly at random.
- ``bipartite``  post-hoc bipartite soft matching (ToMe's matching rule) on the final features, in
                 rounds down to K + 144: *not* ToMe, which merges inside the ViT.
- ``tome``       ToMe inside SigLIP (r per layer, keys as the metric, proportional attention): the
                 merging runs in ``models.siglip.tome_siglip_forward``; this selector projects the
                 tokens it produced (pass ``tome=`` the ``ToMeSiglipOutput``).
- ``visionzip``  VisionZip (Yang et al., 2025): dominant tokens by attention received at the
                 projector's SigLIP layer (SigLIP has no CLS: received attention summed over heads,
                 averaged over queries), contextual tokens by key-similarity merging into evenly
                 spaced targets, contextual token = target + mean of its merged tokens (as the code).
- ``divprune``   DivPrune (Alvar et al., 2025): greedy max-min cosine diversity on the projected
                 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_budget, check_finite, check_patch_tokens
from .config import ShirgXConfig
from .dual_scale import dual_scale_tokens, grid_coords, scaffold_source_index
from .grouping import group_reduce
from .output import SelectionOutput

BASELINES = ("pool", "random", "bipartite", "tome", "visionzip", "divprune")


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


def bipartite_assignment(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N) post-hoc bipartite soft matching (ToMe's matching rule) down to ``count`` tokens.

    Not ToMe itself (that merges inside the ViT, see ``models.siglip.tome_siglip_forward``). Per round: alternate tokens form sets A and B; each A token's best match in B by cosine of the
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


def visionzip_split(
    attention_received: torch.Tensor, keys: torch.Tensor, count: int, dominant_fraction: float = 54 / 64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VisionZip's token choice, from ``visionzip/clip_encoder.py`` with SigLIP's missing CLS replaced.

    Args:
        attention_received: (B, N) attention each patch receives at the projector's layer (softmax
            probabilities summed over heads, averaged over queries: VisionZip sums CLS attention
            over heads).
        keys: (B, N, C) that layer's keys averaged over heads (VisionZip's ``metric``).
        count: output tokens; ``round(count · dominant_fraction)`` dominant (VisionZip: 54 of 64).
        dominant_fraction: share of dominant tokens.

    Returns:
        ``(dominant, targets, nearest)``: (B, d) dominant patch indices in raster order; (B, c)
        contextual target patches (every ``step``-th remaining patch, step = max(1, R // c));
        (B, N) the contextual slot in [0, c) each remaining non-target patch merges into (by key
        cosine), −1 for dominant patches and targets.
    """
    batch, num_patches = attention_received.shape
    dominant_count = min(count - 1, round(count * dominant_fraction)) if count > 1 else 1
    context_count = count - dominant_count
    dominant = attention_received.topk(dominant_count, dim=1).indices.sort(dim=1).values
    is_dominant = torch.zeros(batch, num_patches, dtype=torch.bool, device=keys.device).scatter_(1, dominant, True)
    # Remaining patches keep raster order, as VisionZip's masked_select does.
    remaining = (~is_dominant).nonzero()[:, 1].view(batch, num_patches - dominant_count)
    step = max(1, remaining.shape[1] // max(context_count, 1))
    target_position = torch.arange(0, remaining.shape[1], step, device=keys.device)[:context_count]
    targets = remaining[:, target_position]
    unit = keys / keys.norm(dim=-1, keepdim=True)
    remaining_keys = unit.gather(1, remaining[..., None].expand(-1, -1, unit.shape[-1]))
    target_keys = unit.gather(1, targets[..., None].expand(-1, -1, unit.shape[-1]))
    best = (remaining_keys @ target_keys.transpose(1, 2)).argmax(dim=-1)
    best[:, target_position] = -1
    nearest = torch.full((batch, num_patches), -1, dtype=torch.long, device=keys.device)
    return dominant, targets, nearest.scatter(1, remaining, best)


def divprune_assignment(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N) DivPrune (Alvar et al., 2025): greedy max-min diversity under cosine distance.

    Run it on the tokens the language model receives (the projected tokens), as DivPrune does.

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
        method: one of ``BASELINES`` (see the module docstring).
        config: the grid, pool, budgets and default budget are read from a ``ShirgXConfig``.
        keep_scaffold: spend 144 tokens on the SHIRG-X scaffold and K on the method, instead of
            K + 144 on the method (not for ``tome``, whose tokens come out of SigLIP merged).
        seed: seed of the random baseline (each call restarts it, so calls are reproducible).
    """

    def __init__(self, method: str, config: ShirgXConfig | None = None, keep_scaffold: bool = False, seed: int = 0) -> None:
        super().__init__()
        if method not in BASELINES:
            raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
        if method == "tome" and keep_scaffold:
            raise ValueError("keep_scaffold does not apply to tome: its tokens are merged inside SigLIP")
        self.method = method
        self.config = config or ShirgXConfig()
        self.keep_scaffold = keep_scaffold
        self.seed = seed

    def token_count(self, budget: int) -> int:
        """Tokens this baseline outputs at budget K (K + 144 either way)."""
        return budget + self.config.num_scaffold

    def forward(
        self,
        hi_tokens: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        budget: int | None = None,
        *,
        projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        attention_received: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        tome: object | None = None,
        **unused,
    ) -> SelectionOutput:
        """(B, N, D) → :class:`SelectionOutput` with K + 144 tokens; ``text_embeds`` is ignored.

        Args:
            hi_tokens: (B, N, D) patch tokens of the projector's layer.
            budget: K (default: the config's ``default_budget``).
            projector: applied to every patch before groups are averaged (LaViDa's order); None
                leaves the tokens in the vision space.
            attention_received, keys: ``visionzip`` only, (B, N) and (B, N, C) of the projector's
                SigLIP layer (``models.siglip.capture_layer_attention``).
            tome: ``tome`` only, the ``ToMeSiglipOutput`` of ``models.siglip.tome_siglip_forward``
                run to K + 144 tokens (``hi_tokens`` is then unused).
        """
        config = self.config
        budget = config.default_budget if budget is None else budget
        check_budget(budget, config.num_patches)
        scaffold_count = config.num_scaffold
        count = budget if self.keep_scaffold else budget + scaffold_count
        project = projector if projector is not None else (lambda x: x)
        if self.method == "tome":
            return self._tome_output(tome, count, budget, project)
        check_patch_tokens(hi_tokens, config.grid)
        if config.check_finite:
            check_finite(hi_tokens)
        batch, num_patches, _ = hi_tokens.shape
        if count > num_patches:
            raise ValueError(
                f"budget K={budget} plus the {scaffold_count} scaffold-equivalent tokens is {count}, "
                f"more than the {num_patches} patches available"
            )
        hi_coords = grid_coords(config.grid, hi_tokens.device)

        if self.method == "visionzip":
            grouped, tokens = self._visionzip(hi_tokens, hi_coords, attention_received, keys, count, project)
        else:
            projected = project(hi_tokens)
            if self.method == "pool":
                assignment = uniform_pool_assignment(config.grid, count, hi_tokens.device).expand(batch, -1)
            elif self.method == "random":
                generator = torch.Generator().manual_seed(self.seed)
                assignment = random_assignment(batch, num_patches, count, generator).to(hi_tokens.device)
            elif self.method == "bipartite":
                assignment = bipartite_assignment(hi_tokens, count)
            else:
                assignment = divprune_assignment(projected, count)
            grouped = group_reduce(projected, hi_coords, assignment, count)
            tokens = grouped.tokens

        if not self.keep_scaffold:
            return SelectionOutput(
                tokens=tokens,
                coords=grouped.coords,
                is_scaffold=torch.zeros(batch, count, dtype=torch.bool, device=hi_tokens.device),
                budget=budget,
                source_index=grouped.source_index,
            )
        pool = config.scaffold_pool
        scaffold, _, scaffold_coords = dual_scale_tokens(project(hi_tokens), config.grid, pool)
        width = max(pool * pool, grouped.source_index.shape[-1])
        scaffold_sources = F.pad(scaffold_source_index(config.grid, pool, hi_tokens.device), (0, width - pool * pool), value=-1)
        kept_sources = F.pad(grouped.source_index, (0, width - grouped.source_index.shape[-1]), value=-1)
        is_scaffold = torch.zeros(batch, scaffold_count + count, dtype=torch.bool, device=hi_tokens.device)
        is_scaffold[:, :scaffold_count] = True
        return SelectionOutput(
            tokens=torch.cat([scaffold, tokens], dim=1),
            coords=torch.cat([scaffold_coords, grouped.coords], dim=1),
            is_scaffold=is_scaffold,
            budget=budget,
            source_index=torch.cat([scaffold_sources.expand(batch, -1, -1), kept_sources], dim=1),
        )

    def _visionzip(self, hi_tokens, hi_coords, attention_received, keys, count, project):
        if attention_received is None or keys is None:
            raise ValueError(
                "visionzip needs attention_received and keys of the projector's SigLIP layer "
                "(models.siglip.capture_layer_attention; ShirgXImagePath passes them)"
            )
        batch, num_patches, dim = hi_tokens.shape
        dominant, targets, nearest = visionzip_split(attention_received, keys, count)
        dominant_count = dominant.shape[1]
        # Groups: dominant patches alone, each target with the patches merged into it.
        target_slot = torch.full((batch, num_patches), -1, dtype=torch.long, device=hi_tokens.device)
        target_slot.scatter_(1, targets, torch.arange(targets.shape[1], device=hi_tokens.device).expand(batch, -1))
        assignment = torch.where(nearest >= 0, dominant_count + nearest, -1)
        assignment = torch.where(target_slot >= 0, dominant_count + target_slot, assignment)
        assignment = assignment.scatter(1, dominant, torch.arange(dominant_count, device=hi_tokens.device).expand(batch, -1))
        grouped = group_reduce(hi_tokens, hi_coords, assignment, count)
        # VisionZip's contextual token is target + mean of the merged ones (not the mean of all).
        merged_only = torch.where(nearest >= 0, nearest, -1)
        merged_means = group_reduce(hi_tokens, hi_coords, merged_only, targets.shape[1]).tokens
        target_tokens = hi_tokens.gather(1, targets[..., None].expand(-1, -1, dim))
        vision_tokens = torch.cat([grouped.tokens[:, :dominant_count], target_tokens + merged_means], dim=1)
        return grouped, project(vision_tokens)

    def _tome_output(self, tome, count, budget, project) -> SelectionOutput:
        if tome is None:
            raise ValueError("tome merges inside SigLIP: pass tome=models.siglip.tome_siglip_forward(...) output")
        tokens = tome.tokens
        if tokens.shape[1] != count:
            raise ValueError(f"the ToMe SigLIP pass gave {tokens.shape[1]} tokens; budget K={budget} needs {count}")
        batch = tokens.shape[0]
        sources = tome.source  # (B, count, N) 0/1
        hi_coords = grid_coords(self.config.grid, tokens.device)
        assignment = sources.argmax(dim=1)  # every patch is in exactly one merged token
        grouped = group_reduce(tokens.new_zeros(batch, sources.shape[2], 1), hi_coords, assignment, count)
        return SelectionOutput(
            tokens=project(tokens),
            coords=grouped.coords,
            is_scaffold=torch.zeros(batch, count, dtype=torch.bool, device=tokens.device),
            budget=budget,
            source_index=grouped.source_index,
        )
