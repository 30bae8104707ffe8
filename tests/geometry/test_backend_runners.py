"""The backends that run π³ / Pi3X, Depth Anything 3, MapAnything and CUT3R, against FAKE packages.

None of these models can be installed or downloaded here, so ``fake_packages/`` holds stand-ins
that mimic each project's import paths, call signatures and output dicts (cited in each fake) with
one tiny known scene (``fake_packages/fake_scene.py``): camera 0 is not the identity and each
frame's depth encodes its brightness. The tests check what our backends make of those outputs
against the scene recomputed here with numpy: the right frame in the right row, poses and points
in the first camera's frame, and each model's scale flag.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from spatialvlm.geometry.backends import BackendNotInstalledError, available_backends, get_backend

FAKES = Path(__file__).parent / "fake_packages"
FAKE_ROOTS = {"pi3", "depth_anything_3", "mapanything", "src", "fake_scene", "vggt"}
LEVELS = np.array([40, 90, 140, 200])
FRAMES = np.ascontiguousarray(np.broadcast_to(LEVELS[:, None, None, None], (4, 28, 42, 3)).astype(np.uint8))


@pytest.fixture
def fake_packages(monkeypatch):
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(FAKES))
    yield
    for name in set(sys.modules) - before:  # leave no fake module behind for other tests
        if name.split(".")[0] in FAKE_ROOTS:
            del sys.modules[name]


def expected_relative_poses(count, translation_scale=1.0):
    poses = np.zeros((count, 4, 4))
    for i in range(count):
        a = 0.3 + 0.2 * i
        poses[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        poses[i, :3, 3] = np.array([1 + 0.5 * i, 0.2, -0.3]) * translation_scale
        poses[i, 3, 3] = 1
    return np.linalg.inv(poses[0]) @ poses


def check(geometry, metric, translation_scale=1.0, depth_scale=1.0):
    frames = geometry.frames
    np.testing.assert_allclose(frames.pose.numpy(), expected_relative_poses(4, translation_scale), atol=1e-4)
    depth = frames.depth if frames.depth is not None else frames.points[..., 2]
    np.testing.assert_allclose(depth.mean(dim=(1, 2)).numpy(), depth_scale * (1 + LEVELS / 255), atol=0.01)
    # camera 0's own points: z is its depth, in the first camera's frame
    np.testing.assert_allclose(frames.points[0, ..., 2].numpy(), depth[0].numpy(), atol=1e-4)
    assert geometry.metric_scale is metric


@pytest.mark.parametrize(
    "name, metric, translation_scale, depth_scale",
    [
        ("pi3", True, 2.0, 2.0),  # Pi3X: metric head, scale 2 already multiplied in by the model
        ("depth_anything3", True, 1.0, 1.0),  # Prediction.is_metric = 1
        ("mapanything", True, 1.0, 1.0),
        ("cut3r", True, 1.0, 1.0),
    ],
)
def test_backend_runs_the_models_own_call_and_reads_its_output(fake_packages, tmp_path, name, metric, translation_scale, depth_scale):
    (tmp_path / "weights").mkdir()
    backend = get_backend(name)
    backend.load(tmp_path / "weights", "cpu")
    geometry = backend.reconstruct(FRAMES)
    assert len(geometry) == 4 and geometry.backend == name
    check(geometry, metric, translation_scale, depth_scale)


def test_each_backend_names_its_install_command(monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "fake_packages" not in p])
    for module in [m for m in sys.modules if m.split(".")[0] in FAKE_ROOTS]:
        monkeypatch.delitem(sys.modules, module)
    hints = {
        "pi3": "pip install git+https://github.com/yyfz/Pi3",
        "depth_anything3": "pip install depth-anything-3",
        "mapanything": "pip install git+https://github.com/facebookresearch/map-anything",
        "cut3r": "git clone https://github.com/CUT3R/CUT3R",
        "vggt": "pip install git+https://github.com/facebookresearch/vggt",
    }
    assert sorted(hints) == available_backends()
    for name, hint in hints.items():
        with pytest.raises(BackendNotInstalledError, match="install it with: " + hint.split()[0]) as error:
            get_backend(name).load("weights", "cpu")
        assert hint in str(error.value)


def test_vggt_backend_options(fake_packages, tmp_path):
    """``--option points_from=point_head --option keep_tokens=false`` reach the VGGT backend."""
    (tmp_path / "weights").mkdir()
    backend = get_backend("vggt", points_from="point_head", keep_tokens="false")
    backend.load(tmp_path / "weights", "cpu")
    geometry = backend.reconstruct(FRAMES)
    assert geometry.frames.geometry_tokens is None and geometry.frames.camera_token is None
    assert float(geometry.frames.confidence.mean()) == 3.0  # the fake's world_points_conf: the point head's
    np.testing.assert_allclose(geometry.frames.depth.mean(dim=(1, 2)).numpy(), 1 + LEVELS / 255, atol=0.01)
    with pytest.raises(ValueError, match="points_from must be one of"):
        get_backend("vggt", points_from="both")
    with pytest.raises(ValueError, match="does not take the options"):
        get_backend("vggt", colour="red")
