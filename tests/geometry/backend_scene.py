"""A small known scene for the 3D-model reader tests: cameras, depth, and the expected answer.

Everything here is plain numpy written from the pinhole model, independent of the library:
camera-to-world poses from axis-angle (Rodrigues), pixel centres at integer (u, v), and the points
re-expressed in the first camera's frame by ``R0ᵀ (X − t0)``.
"""

from __future__ import annotations

import numpy as np

FRAMES, HEIGHT, WIDTH = 3, 6, 8


def rodrigues(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def quaternion_wxyz(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


class Scene:
    """Three cameras in an arbitrary world frame (camera 0 is *not* the identity)."""

    def __init__(self, seed: int = 0, scale: float = 1.0):
        rng = np.random.default_rng(seed)
        self.axes = [rng.normal(size=3) for _ in range(FRAMES)]
        self.angles = [0.3, -0.5, 0.9]
        self.rotations = np.stack([rodrigues(a, t) for a, t in zip(self.axes, self.angles)])
        self.translations = rng.normal(size=(FRAMES, 3)) * scale
        self.c2w = np.tile(np.eye(4), (FRAMES, 1, 1))
        self.c2w[:, :3, :3] = self.rotations
        self.c2w[:, :3, 3] = self.translations
        self.w2c = np.linalg.inv(self.c2w)
        self.fx, self.fy, self.cx, self.cy = 7.0, 6.5, WIDTH / 2, HEIGHT / 2
        self.intrinsics = np.tile(np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]]), (FRAMES, 1, 1))
        self.depth = (rng.uniform(1.0, 4.0, size=(FRAMES, HEIGHT, WIDTH)) * scale).astype(np.float32)
        self.confidence = rng.uniform(1.0, 5.0, size=(FRAMES, HEIGHT, WIDTH)).astype(np.float32)

    def camera_points(self):
        """(T, H, W, 3) camera-frame points from depth."""
        v, u = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
        x = (u - self.cx) / self.fx * self.depth
        y = (v - self.cy) / self.fy * self.depth
        return np.stack([x, y, self.depth], -1)

    def world_points(self):
        cam = self.camera_points()
        return np.einsum("tij,thwj->thwi", self.rotations, cam) + self.translations[:, None, None]

    def first_camera_points(self):
        """The expected answer: world points in camera 0's frame."""
        return np.einsum("ji,thwj->thwi", self.rotations[0], self.world_points() - self.translations[0])

    def first_camera_poses(self):
        """The expected answer: every camera-to-world pose relative to camera 0."""
        return np.linalg.inv(self.c2w[0]) @ self.c2w
