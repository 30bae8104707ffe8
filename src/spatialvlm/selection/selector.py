"""ShirgXSelector: score, merge, select and embed SigLIP patch tokens under a token budget.

Where it sits in a VLM (LLaVA-OneVision / LaViDa image path):

    image → 672 px → SigLIP (interpolate_pos_encoding) → projector-layer patch tokens f (B, 2304, 1152)
          → + CoordinateEmbedding(patch x, y, h, w) → projector P, per patch → t (B, 2304, H)
          → Sim = max_q ⟨t_i, ê_q⟩ (exact), merging, spreading top-K, pooling of t
          → tokens (B, K + 144, H) → language model

Pooling after the projector is LaViDa's order (``get_2dPool`` on ``mm_projector`` output): the
scaffold and every merged group average projected tokens. The coordinate embedding is added in the
projector's input space (``vision_dim``) to each patch, so a pooled token carries the mean of its
patches' embeddings. Without a projector the same path runs in the vision space (t = f + E(c)).
Scoring may use another layer (``score_tokens``: text-free saliency, merge gate, budget head); the
tokens handed on always come from ``hi_tokens`` (the layer the projector was trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import nn

from .budget import BudgetHead, patch_entropy
from .checks import check_budget, check_finite, check_patch_tokens
from .config import ShirgXConfig
from .coord_embed import CoordinateEmbedding
from .dual_scale import dual_scale_tokens, grid_coords, scaffold_source_index
from .grouping import group_reduce
from .merging import MAX_MERGED_GROUP, neighbour_merge_targets
from .output import SelectionOutput
from .scoring import distance_aware_score, distinctiveness, text_relevance
from .select import select_top_groups


class StageTiming(Protocol):
    """Anything with ``stage(name)`` returning a context manager (``diagnostics.StageTimer``)."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...


def _stage(timer: StageTiming | None, name: str) -> AbstractContextManager[None]:
    return nullcontext() if timer is None else timer.stage(name)


class ShirgXSelector(nn.Module):
    """SHIRG-X token selector (dual-scale, distance-aware, merging, adaptive K).

    Trainable parts: ``coord_embed`` (zero-initialised output) and ``budget_head``.
    """

    def __init__(self, config: ShirgXConfig | None = None) -> None:
        super().__init__()
        self.config = config or ShirgXConfig()
        self.coord_embed = CoordinateEmbedding(self.config.vision_dim, self.config.coord_hidden)
        self.budget_head = BudgetHead(
            self.config.scoring_dim,
            self.config.budgets,
            self.config.budget_hidden,
            default_index=self.config.budgets.index(self.config.default_budget),
        )
        pool = self.config.scaffold_pool
        self.source_width = max(pool * pool, MAX_MERGED_GROUP)

    def scaffold_sources(self, device: torch.device | None = None) -> torch.Tensor:
        """(num_scaffold, source_width) long: the patches each scaffold token averages, −1 padded.

        Computed from the config on each call, not stored as a buffer: a non-persistent buffer is
        in no state dict, so a selector built on the meta device and loaded would keep garbage.
        """
        pool = self.config.scaffold_pool
        index = scaffold_source_index(self.config.grid, pool, device)
        return nn.functional.pad(index, (0, self.source_width - pool * pool), value=-1)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part."""
        return {
            "coord_embed": sum(p.numel() for p in self.coord_embed.parameters()),
            "budget_head": self.budget_head.num_parameters(),
        }

    def relevance(
        self,
        tokens: torch.Tensor,
        score_tokens: torch.Tensor,
        text_embeds: torch.Tensor | None,
        text_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, N) raw Sim: exact ⟨t_i, ê_q⟩ on the per-patch output tokens when ``text_embeds`` is
        given (no gradient: it only ranks), distinctiveness of ``score_tokens`` otherwise."""
        if text_embeds is None:
            return distinctiveness(score_tokens)
        return text_relevance(tokens.detach(), text_embeds, text_mask)

    def forward(
        self,
        hi_tokens: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        budget: int | None = None,
        *,
        text_mask: torch.Tensor | None = None,
        score_tokens: torch.Tensor | None = None,
        projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        timer: StageTiming | None = None,
    ) -> SelectionOutput:
        """Select K + 144 tokens per image.

        Args:
            hi_tokens: (B, N, vision_dim) row-major patch tokens of the projector's layer.
            text_embeds: (B, T, H) or (B, H) embeddings of the question's own tokens in the space the
                output tokens live in: the language model's input embeddings when ``projector`` is
                given (H = its output width), the vision space without. None: text-free saliency.
            budget: K; None lets the adaptive head choose (the batch uses the largest choice).
            text_mask: (B, T) bool, True for real question tokens.
            score_tokens: (B, N, score_dim) features of another layer for the text-free saliency,
                the merge gate and the budget head; None uses ``hi_tokens``.
            projector: the multimodal projector (LoRA-adapted or not), applied to every patch; the
                scaffold and merged groups are pooled after it. None stays in the vision space.
            timer: optional ``StageTimer`` receiving stages embed, project, scaffold, score, budget,
                merge, select.

        Returns:
            :class:`SelectionOutput` with K + 144 tokens per image (width H with a projector).
        """
        config = self.config
        check_patch_tokens(hi_tokens, config.grid)
        if hi_tokens.shape[-1] != config.vision_dim:
            raise ValueError(f"hi_tokens must have width vision_dim={config.vision_dim}; got {hi_tokens.shape[-1]}")
        if score_tokens is None:
            score_tokens = hi_tokens
        else:
            check_patch_tokens(score_tokens, config.grid, name="score_tokens")
            if score_tokens.shape[:2] != hi_tokens.shape[:2] or score_tokens.shape[-1] != config.scoring_dim:
                raise ValueError(
                    f"score_tokens must be {(*hi_tokens.shape[:2], config.scoring_dim)}; got {tuple(score_tokens.shape)}"
                )
        if config.check_finite:
            check_finite(hi_tokens)
            if score_tokens is not hi_tokens:
                check_finite(score_tokens, "score_tokens")
        if budget is not None:
            check_budget(budget, config.num_patches)

        patch_coords = grid_coords(config.grid, hi_tokens.device)
        tokens = hi_tokens
        if config.add_coord_embedding:
            with _stage(timer, "embed"):
                tokens = tokens + self.coord_embed(patch_coords).to(tokens.dtype)
        if projector is not None:
            with _stage(timer, "project"):
                tokens = projector(tokens)
        with _stage(timer, "scaffold"):
            scaffold, hi_coords, scaffold_coords = dual_scale_tokens(tokens, config.grid, config.scaffold_pool)
        with _stage(timer, "score"):
            scores = distance_aware_score(
                self.relevance(tokens, score_tokens, text_embeds, text_mask),
                hi_coords[0],
                config.relevance_weight,
                config.centre_weight,
            )
        budget_logits = chosen = None
        if budget is None:
            with _stage(timer, "budget"):
                budget_logits = self.budget_head(patch_entropy(score_tokens, config.entropy_temperature))
                chosen = self.budget_head.choose(budget_logits)
                budget = int(chosen.max())
        with _stage(timer, "merge"):
            targets = neighbour_merge_targets(
                scores, config.grid, config.merge_threshold, max_merges=config.num_patches - budget,
                features=score_tokens, similarity=config.merge_similarity,
            )
        with _stage(timer, "select"):
            assignment, _ = select_top_groups(
                scores, targets, budget, config.grid, config.neighbour_weight, config.neighbour_sigma, config.spread_rounds
            )
            kept = group_reduce(tokens, hi_coords[0], assignment, budget, self.source_width)
            batch = hi_tokens.shape[0]
            scaffold_sources = self.scaffold_sources(tokens.device).expand(batch, -1, -1)
            source_index = torch.cat([scaffold_sources, kept.source_index], dim=1)
            is_scaffold = torch.zeros(batch, budget + scaffold.shape[1], dtype=torch.bool, device=tokens.device)
            is_scaffold[:, : scaffold.shape[1]] = True
        return SelectionOutput(
            tokens=torch.cat([scaffold, kept.tokens], dim=1),
            coords=torch.cat([scaffold_coords, kept.coords], dim=1),
            is_scaffold=is_scaffold,
            budget=budget,
            source_index=source_index,
            patch_scores=scores,
            budget_logits=budget_logits,
            chosen_budgets=chosen,
        )
