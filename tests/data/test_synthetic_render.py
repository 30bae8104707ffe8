"""Renderer geometry consistency, seeding, and the files ``generate_split`` writes."""

import json

import numpy as np
import pytest
import torch

from spatialvlm.data.synthetic import (
    ROOM_ID,
    Scene,
    SceneObject,
    SynthConfig,
    generate_split,
    look_at,
    make_intrinsics,
    make_scene,
    render_scene,
)
from spatialvlm.geometry import load_frame_geometry, unproject_depth


@pytest.fixture(scope="module")
def rendered():
    scene = Scene(
        np.array([5.0, 4.0, 2.8]),
        [
            SceneObject("table", np.array([3.5, 2.0, 0.37]), np.array([1.2, 0.8, 0.74])),
            SceneObject("chair", np.array([3.0, 3.2, 0.45]), np.array([0.5, 0.5, 0.9])),
        ],
    )
    poses = np.stack(
        [look_at(np.array([1.0, 2.0, 1.5]), np.array([1.0, 0.1 * k, -0.3])) for k in range(-2, 3)]
    )
    intrinsics = make_intrinsics(40, 32, 90.0)
    return scene, render_scene(scene, poses, intrinsics, height=32, width=40)


def test_depth_unprojects_to_the_rendered_points(rendered):
    _, frames = rendered
    points, valid = unproject_depth(
        torch.from_numpy(frames.depth), torch.from_numpy(frames.intrinsics).float(), torch.from_numpy(frames.poses).float()
    )
    assert valid.all()
    np.testing.assert_allclose(points.numpy(), frames.points, atol=2e-4)


def test_points_project_back_to_their_pixels(rendered):
    _, frames = rendered
    world_to_camera = np.linalg.inv(frames.poses)
    homogeneous = np.concatenate([frames.points, np.ones(frames.points.shape[:-1] + (1,))], -1)
    camera = np.einsum("tij,thwj->thwi", world_to_camera, homogeneous)[..., :3]
    np.testing.assert_allclose(camera[..., 2], frames.depth, atol=1e-4)  # depth is z, not ray length
    pixels = camera @ frames.intrinsics.T
    rows, cols = np.meshgrid(np.arange(32), np.arange(40), indexing="ij")
    np.testing.assert_allclose(pixels[..., 0] / pixels[..., 2], np.broadcast_to(cols, pixels.shape[:-1]), atol=1e-3)
    np.testing.assert_allclose(pixels[..., 1] / pixels[..., 2], np.broadcast_to(rows, pixels.shape[:-1]), atol=1e-3)


def test_every_pixel_lies_on_the_surface_it_is_labelled_with(rendered):
    scene, frames = rendered
    assert set(np.unique(frames.instance)) == {ROOM_ID, 0, 1}
    for index, obj in enumerate(scene.objects):
        points = frames.points[frames.instance == index]
        inside = np.all((points >= obj.lower - 1e-4) & (points <= obj.upper + 1e-4), -1)
        on_face = np.any(np.isclose(points, obj.lower, atol=1e-4) | np.isclose(points, obj.upper, atol=1e-4), -1)
        assert inside.all() and on_face.all()
        assert frames.visible_pixels[:, index].sum() == len(points)
    room = frames.points[frames.instance == ROOM_ID]
    on_wall = np.isclose(room, 0.0, atol=1e-4) | np.isclose(room, scene.room_size, atol=1e-4)
    assert on_wall.any(-1).all()
    # Flat colour per face: the chair's pixels carry its category red, shaded.
    red = frames.rgb[frames.instance == 1]
    assert (red[:, 0] > 2 * red[:, 1]).all()


def test_seeded_scenes_are_reproducible_and_splits_differ():
    config = SynthConfig(num_frames=12, image_size=32, seed=4)
    first, second = make_scene(config, 0), make_scene(config, 0)
    assert first.questions == second.questions
    np.testing.assert_array_equal(first.frames.rgb, second.frames.rgb)
    other = make_scene(SynthConfig(num_frames=12, image_size=32, seed=4, split="train"), 0)
    assert not np.array_equal(other.frames.poses, first.frames.poses)
    assert make_scene(config, 1).scene.to_dict() != first.scene.to_dict()


def test_generate_split_writes_the_documented_layout(tmp_path):
    from spatialvlm.data.video import count_video_frames, read_video

    config = SynthConfig(num_scenes=1, num_frames=16, image_size=32, seed=2)
    path = generate_split(tmp_path, config, show_progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.name == "test.jsonl" and rows
    assert [row["id"] for row in rows] == list(range(len(rows)))
    assert {"id", "dataset", "scene_name", "question_type", "question", "ground_truth", "options"} <= set(rows[0])
    scene_name = rows[0]["scene_name"]
    video = tmp_path / "synthetic" / f"{scene_name}.mp4"
    assert count_video_frames(video) == 16
    expected = make_scene(config, 0)
    decoded = read_video(video, num_frames=None).frames
    assert np.abs(decoded.astype(float) - expected.frames.rgb).mean() < 8  # H.264 is lossy
    geometry_dir = tmp_path / "synthetic" / f"{scene_name}_geometry"
    frame = load_frame_geometry(geometry_dir / "frame_00007.safetensors")
    first = load_frame_geometry(geometry_dir / "frame_00000.safetensors")
    np.testing.assert_allclose(frame.depth.numpy(), expected.frames.depth[7])
    # Geometry is in frame 0's camera frame: world → camera 0 with the inverse of its pose.
    world_to_first = np.linalg.inv(expected.frames.poses[0])
    world = np.concatenate([expected.frames.points[7], np.ones((32, 32, 1))], -1)
    np.testing.assert_allclose(frame.points.numpy(), (world @ world_to_first.T)[..., :3], atol=1e-4)
    np.testing.assert_allclose(frame.pose.numpy(), world_to_first @ expected.frames.poses[7], atol=1e-5)
    np.testing.assert_allclose(first.pose.numpy(), np.eye(4), atol=1e-6)
    # Rotated and translated: the stored points are not the world's (no room corner at the origin).
    assert np.abs(frame.points.numpy() - expected.frames.points[7]).max() > 0.5
    points, valid = unproject_depth(frame.depth[None], frame.intrinsics, frame.pose[None])
    np.testing.assert_allclose(points[0].numpy(), frame.points.numpy(), atol=2e-4)
    assert frame.valid.all()
    description = json.loads((tmp_path / "synthetic" / f"{scene_name}.json").read_text())
    assert len(description["poses"]) == 16 and description["room_size"] == expected.scene.room_size.tolist()
    back = frame.points.numpy().reshape(-1, 3) @ np.array(description["world_from_geometry"])[:3, :3].T
    back += np.array(description["world_from_geometry"])[:3, 3]
    np.testing.assert_allclose(back, expected.frames.points[7].reshape(-1, 3), atol=1e-4)
