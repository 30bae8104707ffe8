"""Input validation shared by the selectors: errors that name the tensor and the expected shape."""

from __future__ import annotations

import torch


def check_patch_tokens(tokens: torch.Tensor, grid: tuple[int, int], name: str = "hi_tokens") -> None:
    """Raise ValueError unless ``tokens`` is (B, rows·cols, D) for ``grid`` = (rows, cols)."""
    rows, cols = grid
    if tokens.dim() != 3:
        raise ValueError(f"{name} must be (B, N, D) with N = {rows}×{cols} = {rows * cols}; got shape {tuple(tokens.shape)}")
    if tokens.shape[1] != rows * cols:
        raise ValueError(
            f"{name} has {tokens.shape[1]} tokens but grid {rows}×{cols} needs {rows * cols}; "
            "pass the grid the tokens were made on (672 px at patch 14 is 48×48)"
        )


def check_finite(tokens: torch.Tensor, name: str = "hi_tokens") -> None:
    if not torch.isfinite(tokens).all():
        raise ValueError(f"{name} contains NaN or inf values")


def check_budget(budget: int, available: int) -> None:
    if not 1 <= budget <= available:
        raise ValueError(f"budget K={budget} must be between 1 and the {available} high-detail tokens available")
