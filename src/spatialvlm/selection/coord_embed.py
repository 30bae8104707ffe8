"""Coordinate embedding: (x, y, h, w) → hidden → token width, added to the selected tokens."""

from __future__ import annotations

import torch
from torch import nn


class CoordinateEmbedding(nn.Module):
    """MLP from token coordinates to the token width, last layer zero-initialised.

    Starting at zero means an untrained selector hands the projector the plain SigLIP features, so the
    base model's behaviour is unchanged until the embedding is trained.

    Args:
        dim: token width D (the projector's input width, ``vision_dim``).
        hidden: hidden width (128 in the SHIRG-X plan).
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.coord_linear = nn.Linear(4, hidden)
        self.act = nn.GELU()
        self.out_proj = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 4) coordinates in [0, 1] → (..., D) embedding."""
        # Centring on 0 keeps the GELU in its curved range for every position.
        coords = coords.to(self.coord_linear.weight.dtype)
        return self.out_proj(self.act(self.coord_linear(coords * 2.0 - 1.0)))
