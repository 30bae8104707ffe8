"""VLM-3R's fusion block (multimodal_fusion_block/builder.py ``CrossAttentionFusion``), rewritten
here from its code: the one independent reference the fusion and converter tests compare against.
Parameter names are VLM-3R's, so a ``fusion_block.*`` state dict loads into it unchanged."""

from torch import Tensor, nn


class VLM3RCrossAttentionFusion(nn.Module):
    def __init__(self, d_clip: int, d_spatial: int, num_heads: int = 18, dropout: float = 0.1) -> None:
        super().__init__()
        self.clip_norm = nn.LayerNorm(d_clip)
        self.spatial_encoder_norm = nn.LayerNorm(d_spatial)
        self.clip_query_proj = nn.Linear(d_clip, d_clip)
        self.spatial_encoder_key_proj = nn.Linear(d_spatial, d_clip)
        self.spatial_encoder_value_proj = nn.Linear(d_spatial, d_clip)
        self.cross_attention = nn.MultiheadAttention(embed_dim=d_clip, num_heads=num_heads, batch_first=True)
        self.out_norm = nn.LayerNorm(d_clip)
        self.out_proj = nn.Linear(d_clip, d_clip)
        self.dropout = nn.Dropout(dropout)

    def forward(self, clip_features: Tensor, spatial_features: Tensor) -> Tensor:
        """(B, N, d_clip) visual tokens attend to (B, M, d_spatial) spatial tokens -> (B, N, d_clip)."""
        q = self.clip_query_proj(self.clip_norm(clip_features))
        s = self.spatial_encoder_norm(spatial_features)
        fused, _ = self.cross_attention(query=q, key=self.spatial_encoder_key_proj(s), value=self.spatial_encoder_value_proj(s))
        fused = self.out_norm(self.out_proj(fused))  # out_proj, then out_norm, then the residual
        return self.dropout(fused + clip_features)
