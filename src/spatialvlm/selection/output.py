"""The output every selector returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SelectionOutput:
    """Selected tokens ready for the projector.

    Attributes:
        tokens: (B, K + S, D) tokens; for SHIRG-X the S = 144 scaffold tokens come first, then the
            K high-detail tokens in raster order of their representative patch; the coordinate
            embedding is already added when the selector has one.
        coords: (B, K + S, 4) (x, y, h, w) in [0, 1]: centroid and extent of each token's patches.
        is_scaffold: (B, K + S) bool, True for the always-kept scaffold tokens.
        budget: K used for this batch.
        source_index: (B, K + S, M) long, the original patch indices (row-major over the grid)
            each token covers, −1 padded.
        patch_scores: (B, N) per-patch score that drove the selection (None where a method has
            none), for diagnostics.
        budget_logits: (B, len(budgets)) logits of the adaptive head when it chose K, else None.
        chosen_budgets: (B,) the K each image's head chose; the batch uses their maximum so every
            image gets at least its choice and the output stays one rectangular tensor.
    """

    tokens: torch.Tensor
    coords: torch.Tensor
    is_scaffold: torch.Tensor
    budget: int
    source_index: torch.Tensor
    patch_scores: torch.Tensor | None = None
    budget_logits: torch.Tensor | None = None
    chosen_budgets: torch.Tensor | None = None
