"""Write a synthetic benchmark split in the VSI-Bench layout.

Layout of ``out_dir`` (what ``spatialvlm eval --benchmark vsibench|vstibench --data out_dir`` reads)::

    <split>.jsonl                                 one question per line (VSI-Bench columns + extras)
    synthetic/<scene_name>.mp4                    the video (H.264, yuv420p)
    synthetic/<scene_name>.json                   the scene: room, objects, poses, intrinsics, visibility
    synthetic/<scene_name>_geometry/frame_00000.safetensors ...   per-frame geometry
                                                  (points, depth, valid, pose, intrinsics)

The geometry files are in the **first frame's camera frame** (OpenCV: x right, y down, z forward;
metres), as CUT3R, VGGT and π³ give theirs: frame 0's pose is the identity, points and poses are
rotated and translated away from the room's axes, so neither the floor nor a room corner sits at a
known place. The scene json keeps the answer-side world frame (z up, room ``[0, W] × [0, D]``) and
``world_from_geometry``, the 4×4 that maps geometry-frame points into it.

Scene ``k`` of split ``s`` with seed ``S`` is drawn from ``np.random.SeedSequence([S, s, k])``, so
splits never share scenes, and a scene is the same whatever the number of scenes generated.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spatialvlm.data.readers import write_jsonl
from spatialvlm.data.synthetic.camera import CameraConfig, make_intrinsics, sample_camera_path
from spatialvlm.data.synthetic.questions import QuestionConfig, SceneView, generate_questions
from spatialvlm.data.synthetic.render import RenderedFrames, render_scene
from spatialvlm.data.synthetic.scene import Scene, SceneConfig, sample_scene

__all__ = [
    "SynthConfig",
    "SyntheticScene",
    "make_scene",
    "generate_split",
    "write_scene_files",
    "first_camera_geometry",
    "DATASET_NAME",
]

DATASET_NAME = "synthetic"


@dataclass
class SynthConfig:
    """Everything that determines a synthetic split.

    Attributes:
        num_scenes: scenes (videos) in the split.
        num_frames: frames per video; keep well above the working memory (8) so memory matters.
        image_size: square frame side in pixels (even, for H.264).
        seed: base seed.
        split: split name ("train", "test", ...); also the jsonl file stem.
        fps: video frame rate.
        write_points: store world point maps (else depth + pose + intrinsics, which readers
            unproject).
        scene, camera, questions: the sub-configs.
    """

    num_scenes: int = 8
    num_frames: int = 48
    image_size: int = 96
    seed: int = 0
    split: str = "test"
    fps: float = 8.0
    write_points: bool = True
    scene: SceneConfig = field(default_factory=SceneConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    questions: QuestionConfig = field(default_factory=QuestionConfig)


@dataclass
class SyntheticScene:
    """One generated scene: its name, geometry, rendering and question rows."""

    name: str
    scene: Scene
    frames: RenderedFrames
    questions: list[dict[str, Any]]


def make_scene(config: SynthConfig, index: int) -> SyntheticScene:
    """Sample, film, render and question scene ``index`` of ``config.split`` (no files written)."""
    if config.image_size % 2:
        raise ValueError(f"image_size must be even for H.264 yuv420p; got {config.image_size}")
    split_code = zlib.crc32(config.split.encode())
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, split_code, index]))
    scene = sample_scene(rng, config.scene)
    poses = sample_camera_path(rng, scene, config.num_frames, config.camera, config.scene)
    intrinsics = make_intrinsics(config.image_size, config.image_size, config.camera.horizontal_fov_deg)
    frames = render_scene(scene, poses, intrinsics, config.image_size, config.image_size)
    view = SceneView(scene, poses, frames.visible_pixels, config.image_size**2)
    questions = generate_questions(view, rng, config.questions)
    return SyntheticScene(f"{config.split}_{index:05d}", scene, frames, questions)


def first_camera_geometry(frames: RenderedFrames) -> tuple[np.ndarray, np.ndarray]:
    """World points and poses re-expressed in frame 0's camera frame (what the geometry files hold).

    Returns:
        points (T, H, W, 3) float32 and poses (T, 4, 4) float64 camera-to-first-camera; poses[0] is
        the identity. ``frames.poses[0] @ [p; 1]`` maps a returned point p back to the world.
    """
    reference = frames.poses[0]
    rotation, origin = reference[:3, :3], reference[:3, 3]
    # Camera coordinates are Rᵀ (p − o); with row vectors that is (p − o) R.
    points = ((frames.points.astype(np.float64) - origin) @ rotation).astype(np.float32)
    poses = np.linalg.inv(reference)[None] @ frames.poses
    return points, poses


def write_scene_files(out_dir: Path, item: SyntheticScene, config: SynthConfig) -> None:
    """Write the video, scene json and per-frame geometry of one scene under ``out_dir/synthetic``."""
    import torch

    from spatialvlm.data.video import write_video
    from spatialvlm.geometry import FrameGeometry, frame_filename, save_frame_geometry

    folder = out_dir / DATASET_NAME
    write_video(folder / f"{item.name}.mp4", item.frames.rgb, fps=config.fps)
    description = {
        "scene_name": item.name,
        **item.scene.to_dict(),
        "image_size": [config.image_size, config.image_size],
        "intrinsics": item.frames.intrinsics.tolist(),
        "poses": item.frames.poses.tolist(),
        "geometry_frame": "camera of frame 0 (OpenCV: x right, y down, z forward), metres",
        "world_from_geometry": item.frames.poses[0].tolist(),
        "visible_pixels": item.frames.visible_pixels.tolist(),
        "config": asdict(config),
    }
    (folder / f"{item.name}.json").write_text(json.dumps(description))
    geometry_dir = folder / f"{item.name}_geometry"
    intrinsics = torch.from_numpy(item.frames.intrinsics).float()
    points, poses = first_camera_geometry(item.frames)
    for index in range(len(poses)):
        frame = FrameGeometry(
            points=torch.from_numpy(points[index]) if config.write_points else None,
            depth=torch.from_numpy(item.frames.depth[index]),
            valid=torch.ones(item.frames.depth.shape[1:], dtype=torch.bool),
            pose=torch.from_numpy(poses[index]).float(),
            intrinsics=intrinsics,
        )
        save_frame_geometry(geometry_dir / frame_filename(index), frame)


def generate_split(out_dir: str | Path, config: SynthConfig | None = None, show_progress: bool = True) -> Path:
    """Generate ``config.num_scenes`` scenes and write the split (see the module docstring).

    Returns the path of ``<split>.jsonl``; ids run 0.. within the split.
    """
    config = config or SynthConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for index in tqdm(range(config.num_scenes), desc=f"synth {config.split}", unit="scene", disable=not show_progress):
        item = make_scene(config, index)
        write_scene_files(out_dir, item, config)
        for question in item.questions:
            rows.append({"id": len(rows), "dataset": DATASET_NAME, "scene_name": item.name, **question})
    path = out_dir / f"{config.split}.jsonl"
    write_jsonl(path, rows)
    return path
