"""coordinate_normalization = "per_video" | "metric" | "fixed" (issue 14): the formulas by hand, the
processor, streaming = offline, and the refusal of "metric" for sources without metric scale."""

import json
import math

import numpy as np
import pytest
import torch

from spatialvlm.geometry import (
    METRIC_COORDINATE_SCALE,
    CoordinateStats,
    FrameGeometry,
    PrecomputedGeometrySource,
    RGBDGeometrySource,
    check_metric_scale,
    parse_coordinate_stats,
    points_to_patch_coords,
    save_frame_geometry,
    stack_frames,
)
from spatialvlm.models import VLM2ForConditionalGeneration, VLM2StreamingSession, build_tiny_processor, tiny_vlm2_config
from spatialvlm.models.tiny import tiny_frame_geometry


def _pose(angle: float, translation) -> torch.Tensor:
    """Camera-to-world: a rotation about the vertical (y) axis, then a translation."""
    c, s = math.cos(angle), math.sin(angle)
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    pose[:3, 3] = torch.tensor(translation)
    return pose


def _scene(scale: float = 1.0, frames: int = 3) -> FrameGeometry:
    torch.manual_seed(0)
    points = torch.randn(frames, 28, 28, 3) * 2 + torch.tensor([0.0, 0.0, 3.0])
    poses = torch.stack([_pose(0.3 * t + 0.4, [1.0 + t, 0.5, -2.0]) for t in range(frames)])
    poses[:, :3, 3] *= scale
    return FrameGeometry(points=points * scale, pose=poses)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


def _coords(processor, geometry):
    # The processor crops the point map to what SigLIP's patches cover, then pools it per patch.
    side = processor.patches_per_side
    points, _ = processor._covered_region(geometry.points, None)
    return points_to_patch_coords(points, None, grid=(side, side))[0]


def test_metric_is_metres_in_the_first_camera_frame_over_the_constant(processor):
    processor = build_tiny_processor()
    processor.coordinate_normalization = "metric"
    geometry = _scene()
    inputs, stats = processor.prepare_geometry(geometry)
    first = geometry.pose[0]
    world = _coords(processor, geometry)
    expected = ((world - first[:3, 3]) @ first[:3, :3]) / METRIC_COORDINATE_SCALE  # R₀ᵀ (p − t₀), row form
    torch.testing.assert_close(inputs["geometry_coords"], expected.clamp(-8, 8), atol=1e-5, rtol=1e-5)
    # Poses in the same frame: the first camera is the origin with the identity rotation.
    torch.testing.assert_close(inputs["camera_poses"][0], torch.eye(4), atol=1e-6, rtol=0)
    relative = torch.linalg.inv(first) @ geometry.pose[2]
    torch.testing.assert_close(inputs["camera_poses"][2, :3, :3], relative[:3, :3], atol=1e-5, rtol=0)
    torch.testing.assert_close(inputs["camera_poses"][2, :3, 3], relative[:3, 3] / METRIC_COORDINATE_SCALE, atol=1e-5, rtol=0)
    assert stats.rotation is not None and CoordinateStats.from_dict(stats.to_dict()).rotation.shape == (1, 3, 3)


def test_metric_keeps_scale_per_video_removes_it():
    small, large = _scene(1.0), _scene(3.0)
    outputs = {}
    for mode in ("per_video", "metric"):
        processor = build_tiny_processor()
        processor.coordinate_normalization = mode
        a = processor.prepare_geometry(small)[0]["geometry_coords"]
        b = processor.prepare_geometry(large)[0]["geometry_coords"]
        outputs[mode] = (a, b)
    torch.testing.assert_close(outputs["per_video"][0], outputs["per_video"][1], atol=1e-4, rtol=1e-4)
    a, b = outputs["metric"]
    inside = (a.abs() < 2.5).all(-1)  # away from the clip at 8 units
    torch.testing.assert_close(b[inside], 3.0 * a[inside], atol=1e-4, rtol=1e-4)


def test_fixed_uses_the_given_statistics(processor):
    processor = build_tiny_processor()
    processor.coordinate_normalization = "fixed"
    with pytest.raises(ValueError, match="needs the statistics"):
        processor.prepare_geometry(_scene())
    processor.coordinate_stats = parse_coordinate_stats("1, 2, 3, 4")
    geometry = _scene()
    inputs, _ = processor.prepare_geometry(geometry)
    expected = (_coords(processor, geometry) - torch.tensor([1.0, 2.0, 3.0])) / 4.0
    torch.testing.assert_close(inputs["geometry_coords"], expected.clamp(-8, 8), atol=1e-5, rtol=1e-5)
    # Saved with the processor and read back.
    again = type(processor)(processor.tokenizer, **{**processor.to_dict(), "coordinate_stats": processor.to_dict()["coordinate_stats"]})
    torch.testing.assert_close(again.prepare_geometry(geometry)[0]["geometry_coords"], inputs["geometry_coords"])
    with pytest.raises(ValueError, match="x,y,z,scale"):
        parse_coordinate_stats("1,2,3")
    with pytest.raises(ValueError, match="positive"):
        parse_coordinate_stats("1,2,3,0")


def test_metric_without_poses_and_unknown_modes_are_refused():
    processor = build_tiny_processor()
    processor.coordinate_normalization = "metric"
    with pytest.raises(ValueError, match="needs camera poses"):
        processor.prepare_geometry(FrameGeometry(points=_scene().points))
    with pytest.raises(ValueError, match="coordinate_normalization must be one of"):
        type(processor)(processor.tokenizer, coordinate_normalization="metres")


def test_relative_scale_source_refuses_metric(tmp_path):
    from spatialvlm.models import load_video_geometry

    folder = tmp_path / "pi3"
    for index in range(2):
        save_frame_geometry(folder / f"frame_{index:05d}.safetensors", FrameGeometry(points=torch.randn(4, 4, 3), pose=torch.eye(4)))
    (folder / "geometry.json").write_text(json.dumps({"metric_scale": False}))
    assert load_video_geometry(folder, [0, 1], coordinate_normalization="per_video").points.shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="no metric scale"):
        load_video_geometry(folder, [0, 1], coordinate_normalization="metric")
    check_metric_scale(PrecomputedGeometrySource(folder, metric_scale=True), "metric")  # the user says metres
    depth = RGBDGeometrySource(torch.ones(1, 4, 4), torch.eye(4)[None], torch.eye(3), metric_scale=False)
    with pytest.raises(ValueError, match="no metric scale"):
        check_metric_scale(depth, "metric")


@pytest.mark.parametrize("mode", ["metric", "fixed"])
def test_streaming_gives_the_offline_tokens(mode):
    torch.manual_seed(0)
    config = tiny_vlm2_config(use_dual_memory=True, memory_L_w=2, memory_L_e=3, coordinate_normalization=mode)
    model = VLM2ForConditionalGeneration(config).eval()
    processor = build_tiny_processor(config)
    processor.coordinate_normalization = mode
    processor.coordinate_stats = CoordinateStats.fixed([0.5, 0.0, 2.0], 3.0)
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    geometry = tiny_frame_geometry(5)
    batch = processor(processor.video_prompt("q"), videos=frames, geometry=stack_frames(geometry))
    with torch.no_grad():
        offline = model.model.get_video_features(
            **{k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}, return_dict=True
        )
    session = VLM2StreamingSession(model, processor, context_frames=5)  # no statistics handed over
    streamed = torch.stack([session.add_frame(frame, g) for frame, g in zip(frames, geometry)])
    # The geometry inputs a streamed frame gets are bit-identical to its share of the offline ones.
    for t, frame_geometry in enumerate(geometry):
        inputs, _ = processor.prepare_geometry(stack_frames([frame_geometry]), session.coordinate_stats)
        for name in ("geometry_coords", "camera_poses"):
            assert torch.equal(inputs[name][0], batch[name][0, t]), (name, t)
    # Tokens: the same up to float reassociation (SigLIP runs 1 frame vs 5 at once).
    torch.testing.assert_close(streamed, offline.frame_features, rtol=1e-5, atol=1e-6)


def test_per_video_streaming_statistics_differ_from_offline():
    # Why "metric"/"fixed" exist: per-video statistics need the whole video, a stream has one frame.
    processor = build_tiny_processor()
    geometry = tiny_frame_geometry(5)
    _, offline = processor.prepare_geometry(stack_frames(geometry))
    _, first_frame = processor.prepare_geometry(stack_frames(geometry[:1]))
    assert not torch.allclose(offline.center, first_frame.center)


def test_ask_command_passes_the_mode_and_refuses_metric_on_relative_geometry(tmp_path):
    import subprocess
    import sys

    from spatialvlm.models.tiny import make_tiny_video_sample

    video, geometry, _ = make_tiny_video_sample(tmp_path / "scene", num_frames=4)
    torch.manual_seed(0)
    config = tiny_vlm2_config()
    VLM2ForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    build_tiny_processor(config).save_pretrained(tmp_path / "model")
    command = [sys.executable, "-m", "spatialvlm.cli", "ask", "--model", str(tmp_path / "model"), "--no-progress",
               "--video", str(video), "--geometry", str(geometry), "--num-frames", "4", "--max-new-tokens", "2"]
    from spatialvlm.cli import main

    assert main([*command[3:], "--coordinate-normalization", "metric", "How far?"]) == 0  # in process: cheaper
    (geometry / "geometry.json").write_text(json.dumps({"metric_scale": False}))
    refused = subprocess.run([*command, "--coordinate-normalization", "metric", "How far?"], capture_output=True, text=True)
    assert refused.returncode == 2 and "no metric scale" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
