"""Viewpoint-aware geometry alignment: ``G^va = MLP([G ; ψ_v(Z)])`` plus an appended view token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..geometry.camera import POSE_DESCRIPTOR_DIM, pose_view_descriptor
from ..geometry.checks import check_bool, check_shape

__all__ = ["ViewpointAlignment", "ViewpointAlignmentOutput"]


@dataclass
class ViewpointAlignmentOutput:
    """Attributes:
        tokens: (B, M + 1, Dg) view-conditioned geometry tokens ``G^vc``; the last one is the view token.
        padding_mask: (B, M + 1) bool, True where a token is padding (the view token never is);
            None when the input had no padding mask.
    """

    tokens: Tensor
    padding_mask: Tensor | None


class ViewpointAlignment(nn.Module):
    """Conditions geometry tokens on the camera view and appends a view token.

    View descriptor Z: the 3D model's camera token (B, Dv) when there is one; otherwise the pose,
    encoded as the top 3×4 of the camera-to-world matrix (B, 12, translation in normalised world
    units) and lifted to Dv by ``pose_encoder``. Then

    - ``v = ψ_v(Z)`` (MLP Dv → Dg);
    - ``G^va_i = G_i + MLP([G_i ; v])``, the MLP's last layer initialised at zero so alignment starts
      as the identity and pretrained VLM-3R fusion weights keep working;
    - view token ``= Linear([mean of the non-padded G^va ; v])``, appended: M + 1 tokens.

    The first alignment layer is applied to ``G`` and ``v`` separately (the same Linear on the
    concatenation, split by columns), so the view half is computed once per frame, not per token.

    Args:
        geometry_dim: Dg.
        view_dim: Dv.
        hidden_dim: hidden width of ψ_v and the alignment MLP; None means Dg.
    """

    def __init__(self, geometry_dim: int, view_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.geometry_dim = geometry_dim
        self.view_dim = view_dim
        hidden_dim = hidden_dim or geometry_dim
        self.pose_encoder = nn.Sequential(nn.Linear(POSE_DESCRIPTOR_DIM, view_dim), nn.GELU(), nn.Linear(view_dim, view_dim))
        self.view_encoder = nn.Sequential(nn.Linear(view_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, geometry_dim))  # ψ_v
        self.align_in = nn.Linear(2 * geometry_dim, hidden_dim)
        self.align_out = nn.Linear(hidden_dim, geometry_dim)
        nn.init.zeros_(self.align_out.weight)
        nn.init.zeros_(self.align_out.bias)
        self.view_token_proj = nn.Linear(2 * geometry_dim, geometry_dim)

    def view_descriptor(self, batch: int, camera_token: Tensor | None, pose: Tensor | None) -> Tensor:
        """Z: (B, Dv) from the camera token if given, else from the pose (B, 4, 4)."""
        if camera_token is not None:
            check_shape("camera_token", camera_token, (batch, self.view_dim))
            return camera_token
        if pose is not None:
            check_shape("pose", pose, (batch, 4, 4))
            return self.pose_encoder(pose_view_descriptor(pose).to(self.pose_encoder[0].weight.dtype))
        raise ValueError("viewpoint alignment needs camera_token (B, Dv) or pose (B, 4, 4); got neither "
                         "(set use_viewpoint_alignment=False for sources without a camera)")

    def forward(
        self,
        geometry_tokens: Tensor,
        camera_token: Tensor | None = None,
        pose: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> ViewpointAlignmentOutput:
        """Args:
            geometry_tokens: (B, M, Dg).
            camera_token: (B, Dv) or None.
            pose: (B, 4, 4) camera-to-world, translation normalised; used when camera_token is None.
            padding_mask: (B, M) bool, True for padding tokens; None means no padding.
        Returns:
            :class:`ViewpointAlignmentOutput` with M + 1 tokens.
        """
        check_shape("geometry_tokens", geometry_tokens, ("B", "M", self.geometry_dim))
        batch, num_tokens, _ = geometry_tokens.shape
        if padding_mask is not None:
            check_shape("geometry_padding_mask", padding_mask, (batch, num_tokens))
            check_bool("geometry_padding_mask", padding_mask)

        view = self.view_encoder(self.view_descriptor(batch, camera_token, pose).to(geometry_tokens.dtype))
        weight_geometry, weight_view = self.align_in.weight.split(self.geometry_dim, dim=1)
        hidden = F.linear(geometry_tokens, weight_geometry) + F.linear(view, weight_view, self.align_in.bias)[:, None]
        aligned = geometry_tokens + self.align_out(F.gelu(hidden))

        if padding_mask is None:
            pooled = aligned.mean(1)
        else:
            kept = (~padding_mask).sum(1, keepdim=True).clamp_min(1)
            pooled = aligned.masked_fill(padding_mask[..., None], 0.0).sum(1) / kept
        view_token = self.view_token_proj(torch.cat([pooled, view], -1))
        tokens = torch.cat([aligned, view_token[:, None]], 1)
        if padding_mask is not None:
            padding_mask = torch.cat([padding_mask, padding_mask.new_zeros(batch, 1)], 1)
        return ViewpointAlignmentOutput(tokens, padding_mask)
