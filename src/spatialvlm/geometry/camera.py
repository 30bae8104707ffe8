"""Camera utilities: intrinsics, camera-to-world poses, quaternions, unprojection.

Conventions used everywhere in ``spatialvlm``:

- Cameras follow OpenCV: x right, y down, z forward. Pixel ``(u, v)`` = (column, row) and integer
  pixel coordinates are pixel centres (ScanNet, ARKitScenes and CUT3R all store intrinsics this way).
- A *pose* is a camera-to-world 4×4 matrix ``[[R, t], [0, 1]]``: ``p_world = R @ p_cam + t``.
- A *pose vector* is CUT3R's ``absT_quaR`` 7-vector ``(tx, ty, tz, qw, qx, qy, qz)``: translation then
  a unit quaternion, real part first, of the same camera-to-world transform.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_shape

__all__ = [
    "make_intrinsics",
    "scale_intrinsics",
    "make_pose",
    "invert_pose",
    "relative_pose",
    "transform_points",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "pose_to_vector",
    "vector_to_pose",
    "pose_view_descriptor",
    "unproject_depth",
    "project_points",
    "POSE_DESCRIPTOR_DIM",
]

POSE_DESCRIPTOR_DIM = 12
"""Width of :func:`pose_view_descriptor`: the 3×4 top of a camera-to-world matrix."""


def make_intrinsics(fx: float | Tensor, fy: float | Tensor, cx: float | Tensor, cy: float | Tensor) -> Tensor:
    """Pinhole intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.

    Scalars give a (3, 3) matrix; tensors of shape (...,) give (..., 3, 3).
    """
    fx, fy, cx, cy = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float32) for v in (fx, fy, cx, cy)))
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([fx, zeros, cx], -1),
        torch.stack([zeros, fy, cy], -1),
        torch.stack([zeros, zeros, ones], -1),
    ]
    return torch.stack(rows, -2)


def scale_intrinsics(intrinsics: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Intrinsics of the same camera after resizing its image from ``from_size`` to ``to_size``.

    Sizes are ``(height, width)``. Pixel centres move as ``u' = (u + 0.5)·sx − 0.5``, which is what
    bilinear / area resizing does, so the principal point gets the half-pixel correction.

    Args:
        intrinsics: (..., 3, 3).
    Returns:
        (..., 3, 3).
    """
    check_shape("intrinsics", intrinsics, (..., 3, 3))
    scale_y = to_size[0] / from_size[0]
    scale_x = to_size[1] / from_size[1]
    out = intrinsics.clone()
    out[..., 0, 0] = intrinsics[..., 0, 0] * scale_x
    out[..., 1, 1] = intrinsics[..., 1, 1] * scale_y
    out[..., 0, 2] = (intrinsics[..., 0, 2] + 0.5) * scale_x - 0.5
    out[..., 1, 2] = (intrinsics[..., 1, 2] + 0.5) * scale_y - 0.5
    return out


def make_pose(rotation: Tensor, translation: Tensor) -> Tensor:
    """Camera-to-world 4×4 from rotation (..., 3, 3) and translation (..., 3)."""
    check_shape("rotation", rotation, (..., 3, 3))
    check_shape("translation", translation, (..., 3))
    batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    pose = torch.zeros(*batch, 4, 4, dtype=rotation.dtype, device=rotation.device)
    pose[..., :3, :3] = rotation
    pose[..., :3, 3] = translation
    pose[..., 3, 3] = 1.0
    return pose


def invert_pose(pose: Tensor) -> Tensor:
    """Inverse of a rigid 4×4 transform (camera-to-world ↔ world-to-camera), using Rᵀ not a solve.

    Args:
        pose: (..., 4, 4).
    Returns:
        (..., 4, 4).
    """
    check_shape("pose", pose, (..., 4, 4))
    rotation_t = pose[..., :3, :3].transpose(-1, -2)
    translation = -(rotation_t @ pose[..., :3, 3:4]).squeeze(-1)
    return make_pose(rotation_t, translation)


def relative_pose(pose_from: Tensor, pose_to: Tensor) -> Tensor:
    """Transform taking points in camera ``pose_from``'s frame to camera ``pose_to``'s frame.

    Both are camera-to-world (..., 4, 4); the result is ``inv(pose_to) @ pose_from``.
    """
    return invert_pose(pose_to) @ pose_from


def transform_points(transform: Tensor, points: Tensor) -> Tensor:
    """Apply a 4×4 rigid transform to points.

    Args:
        transform: (B, 4, 4) or (4, 4).
        points: (B, ..., 3) or (..., 3) when ``transform`` is (4, 4).
    Returns:
        points in the new frame, same shape as ``points``.
    """
    check_shape("points", points, (..., 3))
    if transform.dim() == 2:
        check_shape("transform", transform, (4, 4))
        return points @ transform[:3, :3].T + transform[:3, 3]
    check_shape("transform", transform, (points.shape[0], 4, 4))
    flat = points.reshape(points.shape[0], -1, 3)
    moved = flat @ transform[:, :3, :3].transpose(-1, -2) + transform[:, None, :3, 3]
    return moved.reshape(points.shape)


def quaternion_to_matrix(quaternion: Tensor) -> Tensor:
    """Rotation matrices from quaternions ``(w, x, y, z)`` (need not be unit length).

    Args:
        quaternion: (..., 4).
    Returns:
        (..., 3, 3).
    """
    check_shape("quaternion", quaternion, (..., 4))
    w, x, y, z = quaternion.unbind(-1)
    two_s = 2.0 / (quaternion * quaternion).sum(-1)
    matrix = torch.stack(
        [
            1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
            two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
            two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
        ],
        -1,
    )
    return matrix.reshape(quaternion.shape[:-1] + (3, 3))


def matrix_to_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``(w, x, y, z)`` with ``w ≥ 0`` from rotation matrices.

    Each candidate quaternion is computed by dividing by one of its four components; the candidate
    built from the largest component is kept, which stays accurate near 180° rotations where the
    trace formula alone loses precision.

    Args:
        rotation: (..., 3, 3).
    Returns:
        (..., 4).
    """
    check_shape("rotation", rotation, (..., 3, 3))
    m = rotation.reshape(rotation.shape[:-2] + (9,)).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    four_squares = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    magnitudes = four_squares.clamp_min(0).sqrt()  # 2·|w|, 2·|x|, 2·|y|, 2·|z|
    candidates = torch.stack(
        [
            torch.stack([four_squares[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, four_squares[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, four_squares[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, four_squares[..., 3]], -1),
        ],
        -2,
    ) / (2.0 * magnitudes[..., None].clamp_min(0.1))
    best = magnitudes.argmax(-1)
    quaternion = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quaternion = quaternion / quaternion.norm(dim=-1, keepdim=True)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def pose_to_vector(pose: Tensor) -> Tensor:
    """CUT3R ``absT_quaR`` vector ``(tx, ty, tz, qw, qx, qy, qz)`` from a camera-to-world pose.

    Args:
        pose: (..., 4, 4).
    Returns:
        (..., 7).
    """
    check_shape("pose", pose, (..., 4, 4))
    return torch.cat([pose[..., :3, 3], matrix_to_quaternion(pose[..., :3, :3])], -1)


def vector_to_pose(vector: Tensor) -> Tensor:
    """Camera-to-world 4×4 from a CUT3R ``absT_quaR`` 7-vector (the quaternion is normalised).

    Args:
        vector: (..., 7).
    Returns:
        (..., 4, 4).
    """
    check_shape("vector", vector, (..., 7))
    return make_pose(quaternion_to_matrix(vector[..., 3:]), vector[..., :3])


def pose_view_descriptor(pose: Tensor) -> Tensor:
    """The view descriptor used when a 3D model gives no camera token: the top 3×4 of the pose.

    Flattened row-major: ``(r00, r01, r02, tx, r10, r11, r12, ty, r20, r21, r22, tz)``. Pass a pose
    whose translation is already in normalised world units (:func:`spatialvlm.geometry.normalize_pose`)
    so the descriptor has the same scale across scenes.

    Args:
        pose: (..., 4, 4).
    Returns:
        (..., 12).
    """
    check_shape("pose", pose, (..., 4, 4))
    return pose[..., :3, :].reshape(pose.shape[:-2] + (POSE_DESCRIPTOR_DIM,))


def _pixel_rays(height: int, width: int, intrinsics: Tensor) -> Tensor:
    """Camera-frame rays with z = 1 through every pixel centre: (B, H, W, 3)."""
    rows = torch.arange(height, dtype=intrinsics.dtype, device=intrinsics.device)
    cols = torch.arange(width, dtype=intrinsics.dtype, device=intrinsics.device)
    fx, fy = intrinsics[:, 0, 0], intrinsics[:, 1, 1]
    cx, cy = intrinsics[:, 0, 2], intrinsics[:, 1, 2]
    x = (cols[None, None, :] - cx[:, None, None]) / fx[:, None, None]  # (B, 1, W)
    y = (rows[None, :, None] - cy[:, None, None]) / fy[:, None, None]  # (B, H, 1)
    x, y = torch.broadcast_tensors(x, y)
    return torch.stack([x, y, torch.ones_like(x)], -1)


def unproject_depth(
    depth: Tensor,
    intrinsics: Tensor,
    pose: Tensor | None = None,
    *,
    max_depth: float | None = None,
) -> tuple[Tensor, Tensor]:
    """World point maps from z-depth maps.

    ``depth`` is z-depth along the optical axis (what ScanNet / ARKitScenes store), in metres.
    Pixels with depth ≤ 0, non-finite depth, or depth above ``max_depth`` are invalid; their points
    are set to 0 so nothing downstream sees NaN.

    Args:
        depth: (B, H, W).
        intrinsics: (B, 3, 3) or (3, 3) shared by the batch.
        pose: camera-to-world (B, 4, 4), (4, 4), or None for camera-frame points.
        max_depth: optional far cut-off in metres.
    Returns:
        points: (B, H, W, 3) world coordinates; valid: (B, H, W) bool.
    """
    check_shape("depth", depth, (None, None, None))
    batch, height, width = depth.shape
    if height == 0 or width == 0:
        raise ValueError(f"depth is empty: shape {tuple(depth.shape)}")
    depth = depth.float()
    intrinsics = intrinsics.to(depth).expand(batch, 3, 3) if intrinsics.dim() == 2 else intrinsics.to(depth)
    check_shape("intrinsics", intrinsics, (batch, 3, 3))
    valid = torch.isfinite(depth) & (depth > 0)
    if max_depth is not None:
        valid &= depth <= max_depth
    safe_depth = torch.where(valid, depth, torch.zeros_like(depth))
    points = _pixel_rays(height, width, intrinsics) * safe_depth[..., None]
    if pose is not None:
        pose = pose.to(depth).expand(batch, 4, 4) if pose.dim() == 2 else pose.to(depth)
        check_shape("pose", pose, (batch, 4, 4))
        # A ScanNet frame whose tracking failed stores a pose of -inf: all its pixels are invalid.
        pose_ok = torch.isfinite(pose).flatten(1).all(-1)
        valid &= pose_ok[:, None, None]
        safe_pose = torch.where(pose_ok[:, None, None], pose, torch.eye(4, dtype=pose.dtype, device=pose.device))
        points = transform_points(safe_pose, points)
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    return points, valid


def project_points(points: Tensor, intrinsics: Tensor, pose: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Pixel coordinates and z-depth of world points seen by a camera (inverse of unprojection).

    Args:
        points: (B, ..., 3) world points.
        intrinsics: (B, 3, 3).
        pose: camera-to-world (B, 4, 4) or None when ``points`` are already in the camera frame.
    Returns:
        pixels: (B, ..., 2) as (u, v); depth: (B, ..., ) z in the camera frame.
    """
    check_shape("points", points, (None, ..., 3))
    batch = points.shape[0]
    check_shape("intrinsics", intrinsics, (batch, 3, 3))
    camera_points = points if pose is None else transform_points(invert_pose(pose), points)
    flat = camera_points.reshape(batch, -1, 3)
    homogeneous = flat @ intrinsics.transpose(-1, -2)
    depth = flat[..., 2]
    pixels = homogeneous[..., :2] / depth[..., None]
    return pixels.reshape(points.shape[:-1] + (2,)), depth.reshape(points.shape[:-1])
