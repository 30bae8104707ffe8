"""Configuration of the VLM² semantic–geometric fusion block."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

GATE_TYPES = ("sigmoid", "softmax")


@dataclass
class SpatialFusionConfig:
    """Every knob of :class:`spatialvlm.fusion.SpatialFusion`, with VLM² / VLM-3R defaults.

    Attributes:
        dim: width D of the visual tokens (SigLIP so400m: 1152).
        geometry_dim: width Dg of the geometry tokens (CUT3R: 768).
        view_dim: width Dv of the camera / view token (CUT3R: 768).
        num_heads: cross-attention heads (VLM-3R: 18, i.e. 64 per head at D = 1152).
        dropout: dropout after the residual, as VLM-3R applies it.
        use_coordinate_injection: add gated 3D coordinate embeddings to the visual tokens
            (``F^pa = F + α ⊙ φ(C)``).
        use_viewpoint_alignment: condition the geometry tokens on the view descriptor and append a
            view token (``G^vc``, M + 1 tokens).
        coordinate_gate_type: ``"sigmoid"`` (an independent α ∈ [0, 1] per patch) or ``"softmax"``
            (α is a distribution over the valid patches of a frame).
        coordinate_hidden_dim: hidden width of φ (R³ → R^D); three numbers need no 1152-wide
            hidden layer, and 256 keeps φ under 2% of the block's cost.
        gate_init_bias: initial sigmoid gate logit; −4 gives α ≈ 0.018 so a pretrained VLM's
            features move by under 2% of φ(C) at initialisation.
        alignment_hidden_dim: hidden width of ψ_v and the alignment MLP; None means ``geometry_dim``.
        use_point_tokens: when a frame has no geometry tokens (RGB-D sources), build them from the
            patch coordinates with a point encoder so the cross-attention still has 3D keys.
            False makes missing geometry tokens an error.
        point_encoder_frequencies: octaves of the sin/cos encoding of coordinates in that encoder.
        camera_token_as_key: with viewpoint alignment off, put a given camera token in front of the
            geometry tokens as one more key/value (VLM-3R's "all tokens": [camera; 729 patches]).
            None (default) means True when ``view_dim == geometry_dim`` (CUT3R: 768 and 768) and
            False otherwise (a Dv-wide token cannot be a Dg-wide key); True with unequal widths is
            an error. Unused camera tokens are reported once.
    """

    dim: int = 1152
    geometry_dim: int = 768
    view_dim: int = 768
    num_heads: int = 18
    dropout: float = 0.1
    use_coordinate_injection: bool = True
    use_viewpoint_alignment: bool = True
    coordinate_gate_type: str = "sigmoid"
    coordinate_hidden_dim: int = 256
    gate_init_bias: float = -4.0
    alignment_hidden_dim: int | None = None
    use_point_tokens: bool = True
    point_encoder_frequencies: int = 6
    camera_token_as_key: bool | None = None

    def __post_init__(self) -> None:
        if self.camera_token_as_key is None:
            self.camera_token_as_key = self.view_dim == self.geometry_dim
        if self.camera_token_as_key and self.view_dim != self.geometry_dim:
            raise ValueError(
                f"camera_token_as_key=True needs view_dim == geometry_dim (the camera token becomes a key "
                f"beside the geometry tokens); got view_dim={self.view_dim}, geometry_dim={self.geometry_dim}"
            )
        if self.coordinate_gate_type not in GATE_TYPES:
            raise ValueError(f"coordinate_gate_type must be one of {GATE_TYPES}, got {self.coordinate_gate_type!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SpatialFusionConfig":
        """Build from a dict, rejecting unknown keys (a misspelt switch would otherwise be ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SpatialFusionConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)
