"""Camera intrinsics and a walking, turning camera path through a synthetic room.

Poses are camera-to-world 4×4 matrices in the OpenCV convention (camera x right, y down,
z forward). Pixel centres sit at integer pixel coordinates, as in
:func:`spatialvlm.geometry.unproject_depth`: the ray of pixel (row, col) is
``((col − cx) / fx, (row − cy) / fy, 1)`` in the camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatialvlm.data.synthetic.scene import Scene, SceneConfig

__all__ = ["CameraConfig", "make_intrinsics", "look_at", "sample_camera_path"]


@dataclass
class CameraConfig:
    """Knobs of the camera path (defaults: a person turning once around the middle of the room).

    Attributes:
        horizontal_fov_deg: horizontal field of view.
        eye_height: (min, max) camera height above the floor, metres.
        pitch_deg: (min, max) downward tilt of the view, degrees.
        turns: how many full turns the view direction makes over the video (> 1 so every wall is
            seen).
        path_radius: (min, max) mean distance from the room centre, as a fraction of the free
            ellipse's radii (:attr:`SceneConfig.free_radius_fraction`).
        radius_wobble: amplitude of the in-and-out motion, same units; mean + wobble stays < 1.
        yaw_wobble_deg: amplitude of the side-to-side look around the outward direction.
    """

    horizontal_fov_deg: float = 80.0
    eye_height: tuple[float, float] = (1.35, 1.6)
    pitch_deg: tuple[float, float] = (12.0, 22.0)
    turns: float = 1.15
    path_radius: tuple[float, float] = (0.35, 0.5)
    radius_wobble: float = 0.3
    yaw_wobble_deg: float = 35.0


def make_intrinsics(width: int, height: int, horizontal_fov_deg: float) -> np.ndarray:
    """(3, 3) pinhole intrinsics with square pixels and the principal point at the image centre."""
    focal = (width / 2) / np.tan(np.radians(horizontal_fov_deg) / 2)
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, forward: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """(4, 4) camera-to-world pose of a camera at ``eye`` looking along ``forward`` (OpenCV axes)."""
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def sample_camera_path(
    rng: np.random.Generator,
    scene: Scene,
    num_frames: int,
    config: CameraConfig | None = None,
    scene_config: SceneConfig | None = None,
) -> np.ndarray:
    """(num_frames, 4, 4) camera-to-world poses.

    The camera walks an in-and-out loop inside the free central ellipse while looking outward with
    a side-to-side wobble, so every object comes into view and camera motion relative to the view
    mixes forward, backward, left and right.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
    config = config or CameraConfig()
    scene_config = scene_config or SceneConfig()
    centre = scene.room_size[:2] / 2
    radii = scene_config.free_radius_fraction * scene.room_size[:2]
    direction = 1.0 if rng.random() < 0.5 else -1.0
    start = rng.uniform(0, 2 * np.pi)
    angle = start + direction * np.linspace(0.0, 2 * np.pi * config.turns, num_frames)
    phase_radius, phase_yaw = rng.uniform(0, 2 * np.pi, size=2)
    mean_radius = rng.uniform(*config.path_radius)
    radius = mean_radius + config.radius_wobble * np.sin(2 * angle + phase_radius)
    xy = centre + radii * radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    height = rng.uniform(*config.eye_height)
    pitch = np.radians(rng.uniform(*config.pitch_deg))
    yaw = angle + np.radians(config.yaw_wobble_deg) * np.sin(3 * angle + phase_yaw)
    forward = np.stack(
        [np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.full_like(yaw, -np.sin(pitch))], -1
    )
    eyes = np.concatenate([xy, np.full((num_frames, 1), height)], -1)
    return np.stack([look_at(eye, view) for eye, view in zip(eyes, forward)])
