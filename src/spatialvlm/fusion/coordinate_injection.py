"""Adaptive 3D position injection: ``F^pa = F + α ⊙ φ(C)`` (VLM², Sec. "3D position injection")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry.checks import check_bool, check_shape
from .config import GATE_TYPES

__all__ = ["CoordinateInjection", "CoordinateInjectionOutput", "patch_validity"]


def patch_validity(coords: Tensor, valid: Tensor | None) -> Tensor:
    """``valid`` AND finite coordinates: (B, N) bool from coords (B, N, 3) and valid (B, N) or None."""
    finite = torch.isfinite(coords).all(-1)
    if valid is None:
        return finite
    check_shape("coords_valid", valid, tuple(coords.shape[:-1]))
    check_bool("coords_valid", valid)
    return finite & valid


@dataclass
class CoordinateInjectionOutput:
    """Attributes:
        tokens: (B, N, D) coordinate-injected visual tokens ``F^pa``.
        gate: (B, N) α per patch, 0 where the patch is invalid.
    """

    tokens: Tensor
    gate: Tensor


class CoordinateInjection(nn.Module):
    """Adds a gated embedding of each patch's 3D coordinate to its visual token.

    φ is an MLP R³ → R^D (Linear, GELU, Linear) on *normalised* world coordinates
    (:func:`spatialvlm.geometry.normalize_world_coords`). The gate logit of a patch is a linear
    function of ``[F_i ; φ(C_i)]``, so α adapts to both what the patch shows and where it is:

    - ``gate="sigmoid"``: ``α_i = σ(logit_i)``, one independent strength per patch;
    - ``gate="softmax"``: ``α = softmax(logits)`` over the valid patches of the frame, so α is a
      spatial distribution (sums to 1) choosing where to inject; φ sets the overall strength.

    Invalid patches get α = 0 and come out bit-identical to the input.

    Initialisation: the gate's weights are zero and its bias is ``gate_init_bias`` (−4), so at
    start α = σ(−4) ≈ 0.018 on every valid patch (softmax: 1/#valid) and the output differs from a
    pretrained VLM's features by under 2% of φ(C), while every parameter still receives gradient
    (the zero weights get ``∂L/∂α · [F; φ(C)]``).

    Args:
        dim: token width D.
        gate: ``"sigmoid"`` or ``"softmax"``.
        hidden_dim: hidden width of φ.
        gate_init_bias: initial gate logit.
    """

    def __init__(self, dim: int, gate: str = "sigmoid", hidden_dim: int = 256, gate_init_bias: float = -4.0) -> None:
        super().__init__()
        if gate not in GATE_TYPES:
            raise ValueError(f"gate must be one of {GATE_TYPES}, got {gate!r}")
        self.dim = dim
        self.gate_type = gate
        self.coord_mlp = nn.Sequential(nn.Linear(3, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))  # φ
        self.gate_proj = nn.Linear(2 * dim, 1)
        nn.init.zeros_(self.gate_proj.weight)
        nn.init.constant_(self.gate_proj.bias, gate_init_bias)

    def compute(self, tokens: Tensor, coords: Tensor, valid: Tensor | None = None) -> CoordinateInjectionOutput:
        """Injected tokens and the gate.

        Args:
            tokens: (B, N, D) visual tokens F.
            coords: (B, N, 3) normalised patch coordinates C (non-finite entries count as invalid).
            valid: (B, N) bool patch validity, or None for "all finite coords are valid".
        """
        check_shape("tokens", tokens, ("B", "N", self.dim))
        check_shape("coords", coords, (tokens.shape[0], tokens.shape[1], 3))
        valid = patch_validity(coords, valid)
        safe_coords = coords.masked_fill(~valid[..., None], 0.0).to(tokens.dtype)
        embedding = self.coord_mlp(safe_coords)
        logits = self.gate_proj(torch.cat([tokens, embedding], -1)).squeeze(-1)
        if self.gate_type == "sigmoid":
            gate = torch.sigmoid(logits)
        else:
            # A finite fill, not -inf: an all-invalid frame must give a finite (then zeroed) softmax,
            # or its backward would be NaN.
            gate = logits.masked_fill(~valid, torch.finfo(logits.dtype).min).softmax(-1)
        gate = gate.masked_fill(~valid, 0.0)
        injected = tokens + gate[..., None] * embedding
        return CoordinateInjectionOutput(torch.where(valid[..., None], injected, tokens), gate)

    def forward(self, tokens: Tensor, coords: Tensor, valid: Tensor | None = None) -> Tensor:
        """``F^pa``: (B, N, D) from tokens (B, N, D), coords (B, N, 3), valid (B, N) or None."""
        return self.compute(tokens, coords, valid).tokens
