"""VLM-3R's cross-attention fusion: visual tokens (queries) attend to geometry tokens (keys/values)."""

from __future__ import annotations

from torch import Tensor, nn

from ..geometry.checks import check_bool, check_shape

__all__ = ["GeometryFusion"]


class GeometryFusion(nn.Module):
    """``H = Dropout(LN_out(OutProj(MHA(Q(LN(F)), K(LN(G)), V(LN(G))))) + F)``, as in VLM-3R.

    Submodule names match VLM-3R's ``CrossAttentionFusion`` (``clip_norm``, ``clip_query_proj``,
    ``spatial_encoder_key_proj``, ..., ``out_norm``, ``out_proj``), so a VLM-3R checkpoint's fusion
    weights load with ``load_state_dict``. Like VLM-3R, the dropout acts on the sum after the
    residual.

    Two additions over VLM-3R, both no-ops on its inputs:

    - ``key_padding_mask`` (True = padding) for geometry tokens of unequal count or invalid patches;
    - a frame whose keys are *all* padding gets no fused term (its output is ``Dropout(F)``), where a
      plain ``nn.MultiheadAttention`` would return NaN.

    Args:
        dim: visual width D (queries, output); the attention width is D as in VLM-3R.
        geometry_dim: geometry width Dg.
        num_heads: attention heads.
        dropout: dropout probability after the residual.
    """

    def __init__(self, dim: int, geometry_dim: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.geometry_dim = geometry_dim
        self.clip_norm = nn.LayerNorm(dim)
        self.spatial_encoder_norm = nn.LayerNorm(geometry_dim)
        self.clip_query_proj = nn.Linear(dim, dim)
        self.spatial_encoder_key_proj = nn.Linear(geometry_dim, dim)
        self.spatial_encoder_value_proj = nn.Linear(geometry_dim, dim)
        self.cross_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.out_norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, visual: Tensor, geometry_tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Args:
            visual: (B, N, D) query tokens (coordinate-injected when injection is on).
            geometry_tokens: (B, M, Dg) keys/values.
            key_padding_mask: (B, M) bool, True where a geometry token is padding; None: no padding.
        Returns:
            (B, N, D).
        """
        check_shape("visual", visual, ("B", "N", self.dim))
        batch = visual.shape[0]
        check_shape("geometry_tokens", geometry_tokens, (batch, "M", self.geometry_dim))
        if key_padding_mask is not None:
            check_shape("geometry_padding_mask", key_padding_mask, (batch, geometry_tokens.shape[1]))
            check_bool("geometry_padding_mask", key_padding_mask)
            # Padded slots may hold garbage; 0 · NaN in the value matmul would leak it.
            geometry_tokens = geometry_tokens.masked_fill(key_padding_mask[..., None], 0.0)
            no_keys = key_padding_mask.all(-1)
            # Unmask those frames so the softmax stays finite; their fused term is dropped below.
            key_padding_mask = key_padding_mask & ~no_keys[:, None]

        geometry = self.spatial_encoder_norm(geometry_tokens)
        attended, _ = self.cross_attention(
            self.clip_query_proj(self.clip_norm(visual)),
            self.spatial_encoder_key_proj(geometry),
            self.spatial_encoder_value_proj(geometry),
            key_padding_mask=key_padding_mask,
            need_weights=False,
        )
        fused_term = self.out_norm(self.out_proj(attended))
        if key_padding_mask is not None:
            fused_term = fused_term.masked_fill(no_keys[:, None, None], 0.0)
        return self.dropout(fused_term + visual)
