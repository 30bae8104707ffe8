"""``spatialvlm geometry extract / convert``, ``ask --geometry-backend`` and ``viz geometry``, run as a
user runs them (subprocess, real mp4 through PyAV).

No 3D foundation model can be installed here (no weights, no network; VGGT-1B is 5 GB), so the
backend runs against FAKE packages in ``fake_packages/`` that mimic the real package's import
paths, call signatures and output dicts (``vggt.models.vggt.VGGT.from_pretrained``,
``vggt.utils.load_fn.load_and_preprocess_images``, ``vggt.utils.pose_enc.pose_encoding_to_extri_intri``)
with a tiny deterministic "model" whose depth encodes the brightness of the frame it was given.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialvlm.cli import main
from spatialvlm.data.video import uniform_frame_indices, write_video
from spatialvlm.geometry import PrecomputedGeometrySource, load_frame_geometry, read_frames
from cli_helpers import main_error

FAKES = Path(__file__).parent / "fake_packages"
SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")
TOTAL = 10
BRIGHTNESS = np.arange(TOTAL) * 20 + 30  # frame i is a flat grey of this level


def run(*args, pythonpath=(FAKES,), env=None):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    environment.pop("SPATIALVLM_DEBUG", None)
    environment.update(env or {})
    return subprocess.run([SPATIALVLM, *map(str, args)], capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("geometry_cmd")
    frames = np.broadcast_to(BRIGHTNESS[:, None, None, None], (TOTAL, 32, 48, 3)).astype(np.uint8)
    path = write_video(root / "clip.mp4", np.ascontiguousarray(frames), fps=5)
    (root / "weights").mkdir()
    return path


def test_extract_runs_the_backend_on_the_frames_ask_samples(video, tmp_path):
    out = tmp_path / "geo"
    result = run("geometry", "extract", "--backend", "vggt", "--weights", video.parent / "weights",
                 "--num-frames", "4", video, out)
    assert result.returncode == 0, result.stderr
    assert "running vggt on 4 frames" in result.stderr and "writing vggt geometry" in result.stderr  # progress
    indices = uniform_frame_indices(TOTAL, 4).tolist()  # what `ask --num-frames 4` samples
    assert indices == [0, 3, 6, 9]
    assert sorted(p.name for p in out.glob("frame_*")) == [f"frame_{i:05d}.safetensors" for i in indices]
    info = json.loads((out / "geometry.json").read_text())
    assert info["backend"] == "vggt" and info["metric_scale"] is False and info["frame_indices"] == indices
    assert info["sampling"] == {"num_frames": 4, "total_frames": TOTAL}
    for row, index in enumerate(indices):
        frame = load_frame_geometry(out / f"frame_{index:05d}.safetensors")
        # the fake's depth is 1 + the brightness of the image it got: the right frame went to the right row
        assert float(frame.depth.mean()) == pytest.approx(1 + BRIGHTNESS[index] / 255, abs=0.02)
        # camera centre x = 0.1·row in VGGT's world = the first camera's frame (row 0 at the origin)
        np.testing.assert_allclose(frame.pose[:3, 3].numpy(), [0.1 * row, 0, 0], atol=1e-5)
        assert frame.depth.shape == (350, 518)  # VGGT's preprocessing: width 518, height round(32·518/48 / 14)·14
        assert frame.geometry_tokens.shape == (25 * 37, 24) and float(frame.camera_token[0]) == -1.0
    source = PrecomputedGeometrySource(out)
    assert source.metric_scale is False  # coordinate_normalization="metric" refuses it
    points = read_frames(source, indices).points
    assert float(points[0, ..., 2].mean()) == pytest.approx(1 + BRIGHTNESS[0] / 255, abs=0.02)  # z = depth: no rotation

    # item 5: the picture of what the model will get
    drawn = run("viz", "geometry", out, "--out", tmp_path / "geo.png")
    assert drawn.returncode == 0, drawn.stderr
    assert "4 frames" in drawn.stdout and "relative scale" in drawn.stdout
    from PIL import Image

    with Image.open(tmp_path / "geo.png") as image:
        assert image.width > 1.6 * image.height  # top and side views side by side


def test_missing_backend_package_says_how_to_install(video, capsys):
    weights = video.parent / "weights"
    line = main_error(["geometry", "extract", "--backend", "pi3", "--weights", weights, "--num-frames", "4", video, "g"], capsys)
    assert "needs the Python module 'pi3.models.pi3x'" in line and "pip install git+https://github.com/yyfz/Pi3" in line
    line = main_error(["geometry", "extract", "--backend", "nope", "--weights", weights, video, "g"], capsys)
    assert "unknown geometry backend 'nope'" in line and "vggt" in line
    line = main_error(["geometry", "extract", "--backend", "vggt", "--option", "points_from", "--weights", weights, video, "g"], capsys)
    assert "--option must be KEY=VALUE" in line


def test_a_user_backend_in_a_few_lines(video, tmp_path):
    """The worked example of docs/geometry.md: a backend registered from the user's own module."""
    (tmp_path / "my_backend.py").write_text(
        "import torch\n"
        "from spatialvlm.geometry import FrameGeometry, make_intrinsics\n"
        "from spatialvlm.geometry.backends import BackendGeometry, register_backend\n\n"
        "@register_backend('flat')\n"
        "class FlatBackend:\n"
        "    name, install_hint = 'flat', 'nothing to install'\n"
        "    def load(self, weights, device):\n"
        "        self.distance = float(open(weights).read())\n"
        "    def reconstruct(self, frames):\n"
        "        t, h, w, _ = frames.shape\n"
        "        geometry = FrameGeometry(depth=torch.full((t, h, w), self.distance), pose=torch.eye(4).repeat(t, 1, 1),\n"
        "                                 intrinsics=make_intrinsics(40.0, 40.0, w / 2, h / 2).repeat(t, 1, 1))\n"
        "        return BackendGeometry(geometry, 'flat', metric_scale=True, units='metres')\n"
    )
    (tmp_path / "distance.txt").write_text("2.5")
    result = run("geometry", "extract", "--backend-module", "my_backend", "--backend", "flat",
                 "--weights", tmp_path / "distance.txt", "--num-frames", "3", video, tmp_path / "g",
                 pythonpath=(tmp_path,))
    assert result.returncode == 0, result.stderr
    assert "metric (metres)" in result.stdout
    frames = read_frames(PrecomputedGeometrySource(tmp_path / "g"), [0, 4, 9])
    assert torch.allclose(frames.points[..., 2], torch.tensor(2.5))  # unprojected from the backend's depth


def test_convert_matches_rows_to_sampled_frames_and_names_missing_ones(video, tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 2, size=(3, 4, 6)).astype(np.float32)
    extrinsics = np.tile(np.eye(4)[:3], (3, 1, 1)).astype(np.float32)
    intrinsics = np.tile(np.array([[5.0, 0, 3], [0, 5, 2], [0, 0, 1]], np.float32), (3, 1, 1))
    np.savez_compressed(tmp_path / "results.npz", depth=depth, conf=np.ones_like(depth), extrinsics=extrinsics, intrinsics=intrinsics)
    ok = run("geometry", "convert", "--format", "depth_anything3", "--metric", tmp_path / "results.npz", tmp_path / "g",
             "--video", video, "--num-frames", "3")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "g" / "geometry.json").read_text())["frame_indices"] == [0, 4, 9]
    assert PrecomputedGeometrySource(tmp_path / "g").metric_scale is True


def test_convert_with_fewer_rows_names_the_frames_left_without_geometry(video, tmp_path, capsys):
    depth = np.ones((3, 4, 6), np.float32)
    np.savez_compressed(tmp_path / "results.npz", depth=depth)
    line = main_error(["geometry", "convert", "--format", "depth_anything3", tmp_path / "results.npz", tmp_path / "h",
                       "--video", video, "--num-frames", "5"], capsys)
    assert "holds 3 frames but 5 were asked for" in line and "frames [6, 9] would have no geometry" in line
    line = main_error(["geometry", "convert", "--format", "vggt", "--metric", tmp_path / "results.npz", tmp_path / "h",
                       "--frame-indices", "0,1,2"], capsys)
    assert "--metric applies to --format depth_anything3 only" in line


def test_ask_extracts_on_the_fly_caches_beside_the_video_and_draws_it(video, tmp_path, monkeypatch):
    from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_vlm2_config

    torch.manual_seed(0)
    config = tiny_vlm2_config(geometry_dim=24, view_dim=24, use_dual_memory=True, memory_L_w=2, memory_L_e=3)
    VLM2ForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    build_tiny_processor(config).save_pretrained(tmp_path / "model")
    log = tmp_path / "loads.txt"
    args = ("ask", "--video", video, "--geometry-backend", "vggt", "--geometry-weights", video.parent / "weights",
            "--model", tmp_path / "model", "--num-frames", "4", "--max-new-tokens", "2", "--no-progress")
    first = run(*args, "--viz", tmp_path / "memory.png", "How far is the wall?", env={"FAKE_VGGT_LOG": str(log)})
    assert first.returncode == 0, first.stderr
    cache = video.parent / "clip.mp4.geometry" / "vggt_4"
    assert json.loads((cache / "geometry.json").read_text())["frame_indices"] == [0, 3, 6, 9]
    assert (tmp_path / "memory_geometry.png").stat().st_size > 1000  # --viz also draws the geometry
    assert log.read_text().count("load") == 1
    # A second ask finds the cache (same video bytes, weights, frames) and does not run the model;
    # in-process to spare the suite a second model load (the subprocess above is the user's path).
    from spatialvlm.commands.geometry import cached_geometry

    again = cached_geometry(video, "vggt", video.parent / "weights", num_frames=4, allow_fewer_frames=False,
                            device="cpu", progress=False)
    assert again == cache and log.read_text().count("load") == 1
    monkeypatch.syspath_prepend(str(FAKES))  # the fake vggt, in-process
    monkeypatch.setenv("FAKE_VGGT_LOG", str(log))
    other = cached_geometry(video, "vggt", video.parent / "weights", num_frames=3, allow_fewer_frames=False,
                            device="cpu", progress=False)
    assert other.name == "vggt_3" and log.read_text().count("load") == 2  # other frames: extracted anew
    assert json.loads((other / "geometry.json").read_text())["frame_indices"] == [0, 4, 9]
    for module in [m for m in sys.modules if m.split(".")[0] == "vggt"]:
        del sys.modules[module]  # no fake left behind for other tests


def test_ask_geometry_backend_flag_errors(video, tmp_path, capsys):
    from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_vlm2_config

    config = tiny_vlm2_config()
    VLM2ForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    build_tiny_processor(config).save_pretrained(tmp_path / "model")
    capsys.readouterr()  # the shard-writing bar
    base = ["ask", "--video", video, "--model", tmp_path / "model", "--num-frames", "4", "q"]
    weights = ["--geometry-weights", video.parent / "weights"]
    assert "--geometry-backend makes the geometry; drop --geometry" in main_error(
        [*base, "--geometry-backend", "vggt", *weights, "--geometry", tmp_path], capsys)
    assert "give both" in main_error([*base, "--geometry-backend", "vggt"], capsys)
    assert "--geometry-backend only applies to --video" in main_error(
        ["ask", "--image", video, "--model", tmp_path / "model", "--geometry-backend", "vggt", "q"], capsys)
