"""Geometry tokens from patch coordinates, for sources without a 3D model (RGB-D + pose)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..geometry.checks import check_shape

__all__ = ["PointTokenEncoder"]


class PointTokenEncoder(nn.Module):
    """One geometry token per patch: ``MLP([C ; sin(2^k π C) ; cos(2^k π C)])``, k = 0..F−1.

    The sin/cos octaves let a small MLP tell apart nearby positions (a plain MLP on three numbers
    is smooth, so neighbouring patches would get nearly the same key). Inputs are normalised patch
    coordinates (a few units across), so octaves 1..2^(F−1) span the room down to ~1/2^F of a spread.

    Args:
        geometry_dim: output width Dg.
        num_frequencies: F.
    """

    def __init__(self, geometry_dim: int, num_frequencies: int = 6) -> None:
        super().__init__()
        self.geometry_dim = geometry_dim
        self.num_frequencies = num_frequencies
        in_dim = 3 * (1 + 2 * num_frequencies)
        self.mlp = nn.Sequential(nn.Linear(in_dim, geometry_dim), nn.GELU(), nn.Linear(geometry_dim, geometry_dim))

    def frequencies(self, device: torch.device | str | None = None) -> Tensor:
        """(F,) float32 octaves ``π · 2^k``.

        Computed on each call, never stored: a non-persistent buffer is not in the checkpoint, and
        transformers' ``from_pretrained`` (built on the meta device) leaves such a buffer as
        uninitialised memory; a buffer would also be cast to bf16 by ``model.to(torch.bfloat16)``.
        """
        return math.pi * 2.0 ** torch.arange(self.num_frequencies, dtype=torch.float32, device=device)

    def forward(self, coords: Tensor, valid: Tensor) -> Tensor:
        """Args:
            coords: (B, N, 3) normalised patch coordinates.
            valid: (B, N) bool; invalid patches are encoded from the origin (and masked as keys by the caller).
        Returns:
            (B, N, Dg).
        """
        check_shape("coords", coords, ("B", "N", 3))
        # float32 even under bf16: octave 2^5·π times a coordinate of 8 needs the mantissa.
        coords = coords.masked_fill(~valid[..., None], 0.0).float()
        angles = (coords[..., None] * self.frequencies(coords.device)).flatten(-2)  # (B, N, 3F)
        features = torch.cat([coords, angles.sin(), angles.cos()], -1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
