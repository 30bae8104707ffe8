"""The whole VLM² fusion block: coordinate injection → viewpoint alignment → cross-attention."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry.checks import check_shape
from .config import SpatialFusionConfig
from .coordinate_injection import CoordinateInjection, patch_validity
from .geometry_fusion import GeometryFusion
from .point_encoder import PointTokenEncoder
from .viewpoint_alignment import ViewpointAlignment

__all__ = ["SpatialFusion", "SpatialFusionOutput"]


@dataclass
class SpatialFusionOutput:
    """Attributes:
        tokens: (B, N, D) fused visual tokens ``H_t``.
        gate: (B, N) coordinate-injection gate α, or None when injection did not run.
        geometry_tokens: (B, M', Dg) the keys/values the visual tokens attended to (M' = M + 1 with
            viewpoint alignment).
        geometry_padding_mask: (B, M') bool, True for padding, or None when nothing was padded.
    """

    tokens: Tensor
    gate: Tensor | None
    geometry_tokens: Tensor
    geometry_padding_mask: Tensor | None


class SpatialFusion(nn.Module):
    """VLM²'s semantic–geometric fusion for one batch of frames (B = videos × frames, flattened).

    1. Coordinate injection (``use_coordinate_injection`` and ``coords`` given):
       ``F^pa = F + α ⊙ φ(C)``; invalid patches untouched.
    2. Geometry tokens: the 3D model's ``geometry_tokens`` when given; otherwise (RGB-D sources, no
       3D model) one token per patch from the coordinates by a :class:`PointTokenEncoder`, invalid
       patches masked out as keys, so the cross-attention keeps a working 3D branch.
    3. Viewpoint alignment (``use_viewpoint_alignment``): ``G^vc`` = view-conditioned tokens + a view
       token, from ``camera_token`` or else ``pose``. With alignment off, a given ``camera_token``
       joins the keys in front of the geometry tokens (``camera_token_as_key``, VLM-3R's "all
       tokens").
    4. Cross-attention (:class:`GeometryFusion`): queries ``F^pa``, keys/values ``G^vc``, residual
       onto ``F^pa``.

    With both switches off this is exactly VLM-3R's cross-attention fusion (keys [camera; patches]
    when a camera token is given, patches only when not).

    Parameters on a path a batch does not take (the pose encoder when camera tokens are given, the
    point encoder when geometry tokens are given) get no gradient: use
    ``find_unused_parameters=True`` under DDP, or turn the path off in the config.
    """

    def __init__(self, config: SpatialFusionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SpatialFusionConfig()
        self.coordinate_injection = (
            CoordinateInjection(config.dim, config.coordinate_gate_type, config.coordinate_hidden_dim, config.gate_init_bias)
            if config.use_coordinate_injection
            else None
        )
        self.viewpoint_alignment = (
            ViewpointAlignment(config.geometry_dim, config.view_dim, config.alignment_hidden_dim)
            if config.use_viewpoint_alignment
            else None
        )
        self.point_encoder = (
            PointTokenEncoder(config.geometry_dim, config.point_encoder_frequencies) if config.use_point_tokens else None
        )
        self.geometry_fusion = GeometryFusion(config.dim, config.geometry_dim, config.num_heads, config.dropout)
        self._reported_unused_camera = False

    def forward(
        self,
        visual: Tensor,
        coords: Tensor | None = None,
        coords_valid: Tensor | None = None,
        geometry_tokens: Tensor | None = None,
        camera_token: Tensor | None = None,
        pose: Tensor | None = None,
        geometry_padding_mask: Tensor | None = None,
        return_dict: bool = False,
    ) -> Tensor | SpatialFusionOutput:
        """Fuse one batch of frames.

        Args:
            visual: (B, N, D) vision-tower patch tokens F.
            coords: (B, N, 3) *normalised* patch coordinates (``points_to_patch_coords`` then
                ``normalize_world_coords``), or None.
            coords_valid: (B, N) bool patch validity, or None (then every finite coord is valid).
            geometry_tokens: (B, M, Dg) 3D-model tokens, or None (built from ``coords``).
            camera_token: (B, Dv) view token of the 3D model, or None.
            pose: (B, 4, 4) camera-to-world with normalised translation (``normalize_pose``); the
                view descriptor when ``camera_token`` is None.
            geometry_padding_mask: (B, M) bool, True for padding geometry tokens, or None.
            return_dict: return a :class:`SpatialFusionOutput` instead of the tokens.
        Returns:
            (B, N, D) fused tokens, or :class:`SpatialFusionOutput`.
        """
        config = self.config
        check_shape("visual", visual, ("B", "N", config.dim))
        batch, num_patches, _ = visual.shape
        valid = None
        if coords is not None:
            check_shape("coords", coords, (batch, num_patches, 3))
            valid = patch_validity(coords, coords_valid)

        queries, gate = visual, None
        if self.coordinate_injection is not None and coords is not None:
            injection = self.coordinate_injection.compute(visual, coords, valid)
            queries, gate = injection.tokens, injection.gate

        if geometry_tokens is None:
            if coords is None:
                raise ValueError("SpatialFusion needs geometry_tokens (B, M, Dg) or coords (B, N, 3); got neither")
            if self.point_encoder is None:
                raise ValueError("geometry_tokens is None and use_point_tokens=False: pass geometry_tokens (B, M, Dg)")
            if geometry_padding_mask is not None:
                raise ValueError("geometry_padding_mask given without geometry_tokens; point tokens are masked by coords_valid")
            geometry_tokens = self.point_encoder(coords, valid).to(visual.dtype)
            geometry_padding_mask = ~valid
        else:
            check_shape("geometry_tokens", geometry_tokens, (batch, "M", config.geometry_dim))

        if self.viewpoint_alignment is not None:
            aligned = self.viewpoint_alignment(geometry_tokens, camera_token, pose, geometry_padding_mask)
            geometry_tokens, geometry_padding_mask = aligned.tokens, aligned.padding_mask
        elif camera_token is not None and config.camera_token_as_key:
            # VLM-3R "all tokens": keys/values are [camera; geometry tokens] (M + 1).
            check_shape("camera_token", camera_token, (batch, config.geometry_dim))
            geometry_tokens = torch.cat([camera_token[:, None].to(geometry_tokens.dtype), geometry_tokens], 1)
            if geometry_padding_mask is not None:
                geometry_padding_mask = torch.cat([geometry_padding_mask.new_zeros(batch, 1), geometry_padding_mask], 1)
        elif camera_token is not None and not self._reported_unused_camera:
            self._reported_unused_camera = True
            warnings.warn(
                "SpatialFusion: camera tokens were given but neither viewpoint alignment nor "
                "camera_token_as_key uses them; they are ignored",
                stacklevel=2,
            )

        tokens = self.geometry_fusion(queries, geometry_tokens, geometry_padding_mask)
        if not return_dict:
            return tokens
        return SpatialFusionOutput(tokens, gate, geometry_tokens, geometry_padding_mask)
