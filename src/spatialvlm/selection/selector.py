"""ShirgXSelector: score, merge, select and embed SigLIP patch tokens under a token budget.

Where it sits in a VLM (LLaVA-OneVision / LaViDa image path):

    image → 672 px → SigLIP (interpolate_pos_encoding) → penultimate-layer patch tokens (B, 2304, 1152)
          → ShirgXSelector → tokens (B, K + 144, 1152) = selected SigLIP features + CoordinateEmbedding
          → multimodal projector → language model

The coordinate embedding is added in the projector's input space (``vision_dim``), to every output
token, scaffold included. Scoring may use another layer (``score_tokens``); the tokens handed on are
always the ones passed as ``hi_tokens`` (the layer the projector was trained on).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import nn

from .budget import BudgetHead, patch_entropy
from .checks import check_budget, check_finite, check_patch_tokens
from .config import ShirgXConfig
from .coord_embed import CoordinateEmbedding
from .dual_scale import dual_scale_tokens, scaffold_source_index
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
        self.register_buffer(
            "scaffold_sources",
            nn.functional.pad(scaffold_source_index(self.config.grid, pool), (0, self.source_width - pool * pool), value=-1),
            persistent=False,
        )

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part."""
        return {
            "coord_embed": sum(p.numel() for p in self.coord_embed.parameters()),
            "budget_head": self.budget_head.num_parameters(),
        }

    def relevance(
        self, score_tokens: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, N) raw Sim: question cosine when ``text_embeds`` is given, distinctiveness otherwise."""
        if text_embeds is None:
            return distinctiveness(score_tokens)
        return text_relevance(score_tokens, text_embeds, text_mask)

    def forward(
        self,
        hi_tokens: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        budget: int | None = None,
        *,
        text_mask: torch.Tensor | None = None,
        score_tokens: torch.Tensor | None = None,
        timer: StageTiming | None = None,
    ) -> SelectionOutput:
        """Select K + 144 tokens per image.

        Args:
            hi_tokens: (B, N, vision_dim) row-major patch tokens of the projector's layer.
            text_embeds: (B, T, score_dim) or (B, score_dim) question embeddings in the scoring
                feature space (``pull_back_text_embeds`` maps LLM embeddings there), or None for
                text-free saliency.
            budget: K; None lets the adaptive head choose (the batch uses the largest choice).
            text_mask: (B, T) bool, True for real question tokens.
            score_tokens: (B, N, score_dim) features of another layer to score with; None uses
                ``hi_tokens``.
            timer: optional ``StageTimer`` receiving stages scaffold, score, budget, merge, select,
                embed.

        Returns:
            :class:`SelectionOutput` with K + 144 tokens per image.
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

        with _stage(timer, "scaffold"):
            scaffold, hi_coords, scaffold_coords = dual_scale_tokens(hi_tokens, config.grid, config.scaffold_pool)
        with _stage(timer, "score"):
            scores = distance_aware_score(
                self.relevance(score_tokens, text_embeds, text_mask),
                config.grid,
                hi_coords[0],
                (config.relevance_weight, config.neighbour_weight, config.centre_weight),
                config.neighbour_sigma,
            )
        budget_logits = chosen = None
        if budget is None:
            with _stage(timer, "budget"):
                budget_logits = self.budget_head(patch_entropy(score_tokens, config.entropy_temperature))
                chosen = self.budget_head.choose(budget_logits)
                budget = int(chosen.max())
        with _stage(timer, "merge"):
            targets = neighbour_merge_targets(
                scores, config.grid, config.merge_threshold, max_merges=config.num_patches - budget
            )
        with _stage(timer, "select"):
            assignment, _ = select_top_groups(scores, targets, budget)
            kept = group_reduce(hi_tokens, hi_coords[0], assignment, budget, self.source_width)
            batch = hi_tokens.shape[0]
            tokens = torch.cat([scaffold, kept.tokens], dim=1)
            coords = torch.cat([scaffold_coords, kept.coords], dim=1)
            source_index = torch.cat([self.scaffold_sources.expand(batch, -1, -1), kept.source_index], dim=1)
            is_scaffold = torch.zeros(batch, tokens.shape[1], dtype=torch.bool, device=tokens.device)
            is_scaffold[:, : scaffold.shape[1]] = True
        if config.add_coord_embedding:
            with _stage(timer, "embed"):
                tokens = tokens + self.coord_embed(coords).to(tokens.dtype)
        return SelectionOutput(
            tokens=tokens,
            coords=coords,
            is_scaffold=is_scaffold,
            budget=budget,
            source_index=source_index,
            patch_scores=scores,
            budget_logits=budget_logits,
            chosen_budgets=chosen,
        )
