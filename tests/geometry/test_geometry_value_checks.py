"""Frame files with values no 3D source produces are refused, naming the field and the file;
a frame without a single valid point loads with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from spatialvlm.geometry import GeometryError, PrecomputedGeometrySource, load_frame_geometry


def _frame(**overrides) -> dict[str, torch.Tensor]:
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([0.5, -0.2, 1.0])
    fields = {
        "points": torch.randn(4, 6, 3),
        "pose": pose,
        "intrinsics": torch.tensor([[50.0, 0, 3], [0, 50.0, 2], [0, 0, 1]]),
        "camera_token": torch.randn(16),
    }
    fields.update(overrides)
    return fields


def _write(tmp_path, **overrides):
    path = tmp_path / "frame_00007.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in _frame(**overrides).items()}, str(path))
    return path


def test_a_sound_frame_loads_silently(tmp_path):
    path = _write(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = load_frame_geometry(path)
    assert torch.equal(frame.pose, _frame()["pose"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pose", torch.full((4, 4), float("nan")), "pose in {path} contains NaN or inf"),
        ("pose", torch.tensor([[1.0, 0, 0, float("inf")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
         "pose in {path} contains NaN or inf"),
        ("intrinsics", torch.tensor([[float("nan"), 0, 3], [0, 50.0, 2], [0, 0, 1]]), "intrinsics in {path} contains NaN"),
        ("camera_token", torch.full((16,), float("inf")), "camera_token in {path} contains NaN or inf"),
        ("points", torch.full((4, 6, 3), 1e30), "points in {path} reaches 1e+30"),
        ("pose", torch.tensor([[1.0, 0, 0, 3e6], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "pose translation in {path} reaches 3e+06"),
        ("intrinsics", torch.tensor([[0.0, 0, 3], [0, 50.0, 2], [0, 0, 1]]), "focal length <= 0"),
        ("points", torch.zeros(4, 6, 3, dtype=torch.int32), "points in {path} is stored as torch.int32"),
        ("depth", torch.full((4, 6), 1500, dtype=torch.int16), "divide millimetre depth by 1000"),
    ],
)
def test_impossible_values_are_refused_naming_field_and_file(tmp_path, field, value, expected):
    path = _write(tmp_path, **{field: value})
    with pytest.raises(GeometryError) as caught:
        load_frame_geometry(path)
    assert expected.format(path=path) in str(caught.value)


def test_all_invalid_points_warn_with_the_frame_file(tmp_path):
    path = _write(tmp_path, points=torch.full((4, 6, 3), float("nan")))
    with pytest.warns(UserWarning, match=f"no valid points in frame {path}"):
        frame = PrecomputedGeometrySource(tmp_path).frame(7)
    assert not frame.pixel_valid().any()
    # Some NaN points mark invalid pixels: no warning, no error.
    points = torch.randn(4, 6, 3)
    points[0] = float("nan")
    path = _write(tmp_path, points=points)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_frame_geometry(path).pixel_valid().sum() == 18


def test_a_corrupt_file_is_named(tmp_path):
    path = tmp_path / "frame_00000.safetensors"
    path.write_bytes(b"\x01" * 100)
    with pytest.raises(GeometryError, match=f"{path} is not a readable safetensors frame file"):
        load_frame_geometry(path)
