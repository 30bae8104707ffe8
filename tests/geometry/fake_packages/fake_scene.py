"""The scene every fake model "reconstructs" (shared by the fakes, not a real package).

Camera i: camera-to-world rotation about y by 0.3 + 0.2·i, centre (1 + 0.5·i, 0.2, −0.3) — camera 0
is not the identity, as in π³ / MapAnything / DA3, whose world frame is their own choice. It sees a
wall at z-depth 1 + mean brightness of its image (so a test can tell which frame it got); focal
0.6·W, principal point at the image centre.
"""

import math

import torch


def camera_to_world(frames):
    poses = torch.zeros(frames, 4, 4)
    for i in range(frames):
        a = 0.3 + 0.2 * i
        poses[i, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        poses[i, :3, 3] = torch.tensor([1 + 0.5 * i, 0.2, -0.3])
        poses[i, 3, 3] = 1
    return poses


def intrinsics(frames, height, width):
    k = torch.zeros(frames, 3, 3)
    k[:, 0, 0] = k[:, 1, 1] = 0.6 * width
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = width / 2, height / 2, 1
    return k


def camera_points(images):
    """images (N, 3, H, W) in [0, 1] → camera-frame points (N, H, W, 3)."""
    frames, _, height, width = images.shape
    depth = (1 + images.mean(dim=(1, 2, 3)))[:, None, None].expand(frames, height, width)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    f = 0.6 * width
    return torch.stack([(u - width / 2) / f * depth, (v - height / 2) / f * depth, depth], -1)


def world_points(images):
    poses = camera_to_world(images.shape[0])
    cam = camera_points(images)
    return torch.einsum("nij,nhwj->nhwi", poses[:, :3, :3], cam) + poses[:, None, None, :3, 3]


def rotation_to_quaternion_wxyz(rotation):
    """For rotations about y only (the fake scene): (cos a/2, 0, sin a/2, 0)."""
    a = math.atan2(float(rotation[0, 2]), float(rotation[0, 0]))
    return torch.tensor([math.cos(a / 2), 0.0, math.sin(a / 2), 0.0])
