"""3D inputs for VLM²: cameras, point maps, patch pooling, coordinate normalisation, geometry sources.

Typical use (one video)::

    source = load_geometry_source("scene0000_00/")                     # folder or your own source
    frames = read_frames(source, sampled_indices)                      # batched FrameGeometry (T, ...)
    coords, patch_valid = points_to_patch_coords(frames.points, frames.pixel_valid(), grid=(27, 27))
    coords = normalize_world_coords(coords[None], patch_valid[None])[0]   # one frame of reference per video
"""

from .camera import (
    POSE_DESCRIPTOR_DIM,
    invert_pose,
    make_intrinsics,
    make_pose,
    matrix_to_quaternion,
    pose_to_vector,
    pose_view_descriptor,
    project_points,
    quaternion_to_matrix,
    relative_pose,
    scale_intrinsics,
    transform_points,
    unproject_depth,
    vector_to_pose,
)
from .checks import MAX_ABS_METRES, GeometryError, check_geometry_values
from .frames import FRAME_FIELDS, FrameGeometry, frame_filename, load_frame_geometry, save_frame_geometry, stack_frames
from .normalize import (
    COORDINATE_NORMALIZATIONS,
    METRIC_COORDINATE_SCALE,
    CoordinateStats,
    check_metric_scale,
    compute_coordinate_stats,
    metric_coordinate_stats,
    normalize_pose,
    normalize_world_coords,
    parse_coordinate_stats,
    video_coordinate_stats,
)
from .patches import PatchCoords, patch_assignment, points_to_patch_coords
from .sources import (
    GeometrySource,
    PrecomputedGeometrySource,
    RGBDGeometrySource,
    ScanNetFolderSource,
    load_geometry_source,
    read_frames,
)
from .vlm3r_features import VLM3RFeatureSource, vlm3r_frame_indices

__all__ = [
    "GeometryError",
    "MAX_ABS_METRES",
    "check_geometry_values",
    "POSE_DESCRIPTOR_DIM",
    "FRAME_FIELDS",
    "COORDINATE_NORMALIZATIONS",
    "METRIC_COORDINATE_SCALE",
    "CoordinateStats",
    "check_metric_scale",
    "metric_coordinate_stats",
    "parse_coordinate_stats",
    "video_coordinate_stats",
    "FrameGeometry",
    "GeometrySource",
    "PatchCoords",
    "PrecomputedGeometrySource",
    "RGBDGeometrySource",
    "ScanNetFolderSource",
    "VLM3RFeatureSource",
    "vlm3r_frame_indices",
    "compute_coordinate_stats",
    "frame_filename",
    "invert_pose",
    "load_frame_geometry",
    "load_geometry_source",
    "make_intrinsics",
    "make_pose",
    "matrix_to_quaternion",
    "normalize_pose",
    "normalize_world_coords",
    "patch_assignment",
    "points_to_patch_coords",
    "pose_to_vector",
    "pose_view_descriptor",
    "project_points",
    "quaternion_to_matrix",
    "read_frames",
    "relative_pose",
    "save_frame_geometry",
    "scale_intrinsics",
    "stack_frames",
    "transform_points",
    "unproject_depth",
    "vector_to_pose",
]
