import math

import pytest
import torch

from spatialvlm.geometry import (
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


def rodrigues(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Independent rotation construction: R = I + sinθ K + (1 − cosθ) K²."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis.dtype).expand_as(k)
    s, c = angle.sin()[..., None, None], angle.cos()[..., None, None]
    return eye + s * k + (1 - c) * (k @ k)


def look_pose(position, forward, world_up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenCV camera-to-world looking along ``forward`` (x right, y down, z forward)."""
    forward = torch.tensor(forward, dtype=torch.float64)
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.tensor(world_up, dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward], 1)
    assert torch.isclose(torch.det(rotation), torch.tensor(1.0, dtype=torch.float64))
    return make_pose(rotation, torch.tensor(position, dtype=torch.float64)).float()


def test_quaternion_hand_case_90_degrees_about_z():
    rotation = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
    assert torch.allclose(matrix_to_quaternion(rotation), expected, atol=1e-6)
    assert torch.allclose(quaternion_to_matrix(expected), rotation, atol=1e-6)


def test_rotation_quaternion_round_trip_including_half_turns():
    gen = torch.Generator().manual_seed(0)
    axes = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    angles = torch.rand(64, generator=gen, dtype=torch.float64) * math.pi
    angles[:8] = math.pi  # 180° turns, where the trace formula alone breaks down
    angles[8:12] = 0.0
    rotations = rodrigues(axes, angles)
    quaternions = matrix_to_quaternion(rotations)
    assert torch.allclose(quaternions.norm(dim=-1), torch.ones(64, dtype=torch.float64))
    assert (quaternions[:, 0] >= 0).all()
    assert torch.allclose(quaternion_to_matrix(quaternions), rotations, atol=1e-9)
    # the rotation angle is encoded in w = cos(θ/2)
    assert torch.allclose(quaternions[:, 0], (angles / 2).cos(), atol=1e-7)


def test_pose_vector_round_trip_and_sign_ambiguity():
    gen = torch.Generator().manual_seed(1)
    rotations = rodrigues(torch.randn(10, 3, generator=gen), torch.rand(10, generator=gen) * 3)
    translations = torch.randn(10, 3, generator=gen) * 5
    poses = make_pose(rotations, translations)
    vectors = pose_to_vector(poses)
    assert vectors.shape == (10, 7)
    assert torch.allclose(vectors[:, :3], translations)
    assert torch.allclose(vector_to_pose(vectors), poses, atol=1e-5)
    flipped = torch.cat([vectors[:, :3], -vectors[:, 3:] * 2.0], -1)  # -q, unnormalised: same rotation
    assert torch.allclose(vector_to_pose(flipped), poses, atol=1e-5)


def test_invert_and_relative_pose():
    gen = torch.Generator().manual_seed(2)
    poses = make_pose(rodrigues(torch.randn(2, 3, generator=gen), torch.rand(2, generator=gen) * 3), torch.randn(2, 3, generator=gen))
    assert torch.allclose(poses @ invert_pose(poses), torch.eye(4).expand(2, 4, 4), atol=1e-5)
    point_in_a = torch.tensor([0.3, -0.2, 2.0])
    world = transform_points(poses[0], point_in_a)
    expected_in_b = transform_points(invert_pose(poses[1]), world)
    assert torch.allclose(transform_points(relative_pose(poses[0], poses[1]), point_in_a), expected_in_b, atol=1e-5)


def test_scale_intrinsics_hand_case():
    k = make_intrinsics(500.0, 400.0, 319.5, 239.5)
    half = scale_intrinsics(k, (480, 640), (240, 320))
    assert torch.allclose(half, make_intrinsics(250.0, 200.0, 159.5, 119.5))


def test_unprojecting_a_rendered_floor_recovers_the_plane():
    height, width = 24, 32
    k = make_intrinsics(30.0, 30.0, (width - 1) / 2, (height - 1) / 2)
    pose = look_pose((0.5, -1.0, 1.5), (0.0, 1.0, -0.15))  # 1.5 m above the floor z = 0, looking down
    # Render the floor by ray casting: ray through pixel (u, v) with z_cam = 1, hit z_world = 0.
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    rays_cam = torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)], -1)
    rays_world = rays_cam @ pose[:3, :3].T
    hit = -pose[2, 3] / rays_world[..., 2]
    depth = torch.where(hit > 0, hit, torch.zeros_like(hit))  # above the horizon: no depth
    assert 0 < (depth > 0).sum() < height * width
    points, valid = unproject_depth(depth[None], k, pose)
    assert torch.equal(valid[0], depth > 0)
    assert torch.allclose(points[0][valid[0]][:, 2], torch.zeros(int(valid.sum())), atol=1e-4)
    assert (points[0][~valid[0]] == 0).all()
    # each point lies where its pixel's ray meets the floor, and projects back to its pixel
    expected = pose[:3, 3] + hit[..., None] * rays_world
    assert torch.allclose(points[0][valid[0]], expected[valid[0]], atol=1e-4)
    pixels, z = project_points(points, k[None], pose[None])
    assert torch.allclose(pixels[0][valid[0]], torch.stack([u, v], -1)[valid[0]], atol=1e-3)
    assert torch.allclose(z[0][valid[0]], depth[valid[0]], atol=1e-4)


def test_unprojecting_a_box_seen_from_inside_recovers_its_walls():
    # Camera at the centre of a 4 × 4 × 4 box looking along +x: every wall point has one coordinate at ±2.
    height, width = 16, 16
    k = make_intrinsics(6.0, 6.0, 7.5, 7.5)
    pose = look_pose((0.0, 0.0, 0.0), (1.0, 0.2, 0.1))
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    rays_cam = torch.stack([(u - 7.5) / 6.0, (v - 7.5) / 6.0, torch.ones_like(u)], -1)
    rays_world = rays_cam @ pose[:3, :3].T
    depth = (2.0 / rays_world.abs()).min(-1).values  # distance along the ray to the nearest wall
    points, valid = unproject_depth(depth[None], k, pose)
    assert valid.all()
    assert torch.allclose(points.abs().amax(-1), torch.full((1, height, width), 2.0), atol=1e-4)


def test_unproject_masks_bad_depth_and_failed_poses_without_nan():
    depth = torch.tensor([[[1.0, 0.0], [float("nan"), 9.0]], [[1.0, 1.0], [1.0, 1.0]]])
    k = make_intrinsics(1.0, 1.0, 0.5, 0.5)
    poses = torch.eye(4).repeat(2, 1, 1)
    poses[1, 0, 0] = float("-inf")  # ScanNet's marker of a lost frame
    points, valid = unproject_depth(depth, k, poses, max_depth=5.0)
    assert valid.tolist() == [[[True, False], [False, False]], [[False, False], [False, False]]]
    assert torch.isfinite(points).all()


def test_pose_view_descriptor_layout():
    pose = make_pose(torch.arange(9.0).reshape(3, 3), torch.tensor([10.0, 11.0, 12.0]))
    assert pose_view_descriptor(pose).tolist() == [0, 1, 2, 10, 3, 4, 5, 11, 6, 7, 8, 12]


def test_bad_inputs_name_the_tensor():
    with pytest.raises(ValueError, match="pose"):
        pose_to_vector(torch.eye(3))
    with pytest.raises(ValueError, match="intrinsics"):
        unproject_depth(torch.ones(2, 4, 4), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError, match="empty"):
        unproject_depth(torch.ones(1, 0, 4), torch.eye(3))
