import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from spatialvlm.geometry import (
    FrameGeometry,
    GeometrySource,
    PrecomputedGeometrySource,
    RGBDGeometrySource,
    ScanNetFolderSource,
    frame_filename,
    load_geometry_source,
    make_intrinsics,
    make_pose,
    read_frames,
    save_frame_geometry,
    unproject_depth,
)

K = make_intrinsics(8.0, 8.0, 3.5, 2.5)


def camera_frame(seed: int) -> FrameGeometry:
    gen = torch.Generator().manual_seed(seed)
    depth = 1.0 + torch.rand(6, 8, generator=gen)
    depth[0, 0] = 0.0
    pose = make_pose(torch.eye(3), torch.randn(3, generator=gen))
    return FrameGeometry(depth=depth, pose=pose, intrinsics=K)


def test_save_load_round_trip_all_fields(tmp_path):
    gen = torch.Generator().manual_seed(0)
    frame = FrameGeometry(
        camera_token=torch.randn(16, generator=gen),
        geometry_tokens=torch.randn(12, 32, generator=gen),
        points=torch.randn(6, 8, 3, generator=gen),
        confidence=torch.rand(6, 8, generator=gen),
        valid=torch.rand(6, 8, generator=gen) > 0.5,
        depth=torch.rand(6, 8, generator=gen),
        pose=torch.eye(4),
        intrinsics=K,
    )
    path = tmp_path / frame_filename(3)
    save_frame_geometry(path, frame)
    assert path.name == "frame_00003.safetensors"
    assert load_file(str(path))["valid"].dtype == torch.uint8  # readable without bool support
    loaded = PrecomputedGeometrySource(tmp_path).frame(3)
    for name, tensor in frame.present().items():
        assert torch.equal(getattr(loaded, name), tensor), name
    assert loaded.valid.dtype == torch.bool


def test_precomputed_depth_only_files_are_unprojected(tmp_path):
    for index in (0, 2, 5):
        save_frame_geometry(tmp_path / frame_filename(index), camera_frame(index))
    source = load_geometry_source(tmp_path)
    assert isinstance(source, PrecomputedGeometrySource)
    assert len(source) == 6 and source.frame_indices == [0, 2, 5]
    frame = source.frame(2)
    points, valid = unproject_depth(camera_frame(2).depth[None], K, camera_frame(2).pose)
    assert torch.allclose(frame.points, points[0]) and torch.equal(frame.valid, valid[0])
    assert not frame.valid[0, 0]
    with pytest.raises(KeyError, match="no frame 3"):
        source.frame(3)
    batch = read_frames(source, [0, 5])
    assert batch.points.shape == (2, 6, 8, 3) and batch.pose.shape == (2, 4, 4)


def test_uint8_valid_written_by_another_tool_reads_as_bool(tmp_path):
    save_file({"points": torch.zeros(2, 2, 3), "valid": torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8)},
              str(tmp_path / "frame_00000.safetensors"))
    frame = PrecomputedGeometrySource(tmp_path).frame(0)
    assert frame.valid.tolist() == [[True, False], [False, True]]


def test_unknown_keys_and_shape_mismatches_are_rejected(tmp_path):
    save_file({"point": torch.zeros(2, 2, 3)}, str(tmp_path / "frame_00000.safetensors"))
    with pytest.raises(ValueError, match="unknown keys"):
        PrecomputedGeometrySource(tmp_path).frame(0)
    with pytest.raises(ValueError, match="H=3"):
        FrameGeometry(points=torch.zeros(2, 2, 3), depth=torch.zeros(3, 2)).validate()


def test_scannet_folder_reader(tmp_path):
    frames = [camera_frame(i) for i in range(3)]
    (tmp_path / "depth").mkdir()
    (tmp_path / "pose").mkdir()
    (tmp_path / "intrinsic").mkdir()
    k4 = torch.eye(4)
    k4[:3, :3] = K
    np.savetxt(tmp_path / "intrinsic" / "intrinsic_depth.txt", k4.numpy())
    for i, frame in enumerate(frames):
        millimetres = (frame.depth * 1000).round().numpy().astype(np.uint16)
        Image.fromarray(millimetres).save(tmp_path / "depth" / f"{i}.png")
        pose = frame.pose.numpy()
        if i == 2:
            pose = np.full((4, 4), -np.inf)  # lost tracking
        np.savetxt(tmp_path / "pose" / f"{i}.txt", pose)
    source = load_geometry_source(tmp_path)
    assert isinstance(source, ScanNetFolderSource) and len(source) == 3
    got = source.frame(1)
    expected_depth = (frames[1].depth * 1000).round() / 1000
    points, valid = unproject_depth(expected_depth[None], K, frames[1].pose)
    assert torch.allclose(got.depth, expected_depth)
    assert torch.allclose(got.points, points[0], atol=1e-5) and torch.equal(got.valid, valid[0])
    lost = source.frame(2)
    assert not lost.valid.any() and torch.isfinite(lost.points).all()


def test_rgbd_source_matches_unprojection():
    frames = [camera_frame(i) for i in range(4)]
    depth_mm = torch.stack([f.depth for f in frames]) * 1000
    poses = torch.stack([f.pose for f in frames])
    source = RGBDGeometrySource(depth_mm, poses, K, depth_scale=1000.0)
    batch = read_frames(source)
    points, valid = unproject_depth(depth_mm / 1000, K, poses)
    assert torch.allclose(batch.points, points, atol=1e-6) and torch.equal(batch.valid, valid)
    assert batch.geometry_tokens is None
    with pytest.raises(ValueError, match="poses"):
        RGBDGeometrySource(depth_mm, poses[:2], K)


class OnlineModelSource:
    """What a user writes to run their own 3D model per frame."""

    def __init__(self, num_frames: int, with_tokens_until: int | None = None):
        self.num_frames = num_frames
        self.with_tokens_until = with_tokens_until

    def __len__(self) -> int:
        return self.num_frames

    def frame(self, index: int) -> FrameGeometry:
        tokens = torch.full((4, 8), float(index))
        if self.with_tokens_until is not None and index >= self.with_tokens_until:
            tokens = None
        return FrameGeometry(camera_token=torch.full((8,), float(index)), geometry_tokens=tokens)


def test_user_protocol_source():
    source = OnlineModelSource(5)
    assert isinstance(source, GeometrySource)
    assert load_geometry_source(source) is source
    batch = read_frames(source, [1, 3])
    assert batch.geometry_tokens.shape == (2, 4, 8) and batch.geometry_tokens[:, 0, 0].tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="geometry_tokens"):
        read_frames(OnlineModelSource(5, with_tokens_until=2))


def test_load_geometry_source_rejects_unknown_layouts(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        load_geometry_source(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_geometry_source(tmp_path / "missing")
    with pytest.raises(TypeError):
        load_geometry_source(42)
