"""VLM² semantic–geometric fusion: coordinate injection, viewpoint alignment, cross-attention.

Typical use (B frames flattened from videos × frames)::

    block = SpatialFusion(SpatialFusionConfig(dim=1152, geometry_dim=768, view_dim=768))
    fused = block(visual, coords=coords, coords_valid=patch_valid,
                  geometry_tokens=geometry_tokens, camera_token=camera_token)   # (B, N, D)
"""

from .config import SpatialFusionConfig
from .coordinate_injection import CoordinateInjection, CoordinateInjectionOutput, patch_validity
from .geometry_fusion import GeometryFusion
from .point_encoder import PointTokenEncoder
from .spatial_fusion import SpatialFusion, SpatialFusionOutput
from .viewpoint_alignment import ViewpointAlignment, ViewpointAlignmentOutput

__all__ = [
    "CoordinateInjection",
    "CoordinateInjectionOutput",
    "GeometryFusion",
    "PointTokenEncoder",
    "SpatialFusion",
    "SpatialFusionConfig",
    "SpatialFusionOutput",
    "ViewpointAlignment",
    "ViewpointAlignmentOutput",
    "patch_validity",
]
