"""Readers of the saved outputs of VGGT, π³, CUT3R, Depth Anything 3 and MapAnything.

Each test writes a file in the layout that model's own code writes (key names, shapes, batch axes,
pose conventions taken from its repository; cited per test), reads it, and compares with the
answer computed independently in ``backend_scene.py`` (plain numpy pinhole maths): points and
poses in the first camera's frame, scale flags, confidence.
"""

import json

import numpy as np
import pytest
import torch

from backend_scene import FRAMES, HEIGHT, WIDTH, Scene, quaternion_wxyz
from spatialvlm.geometry import PrecomputedGeometrySource, check_metric_scale, read_frames
from spatialvlm.geometry.backends import (
    match_rows_to_frames,
    read_backend_output,
    read_cut3r_demo_folder,
    read_cut3r_output,
    read_depth_anything3,
    read_mapanything_output,
    read_pi3_output,
    read_vggt_predictions,
    write_geometry_folder,
)

ATOL = 1e-4


def assert_first_camera(geometry, scene, points_atol=ATOL):
    frames = geometry.frames
    np.testing.assert_allclose(frames.pose.numpy(), scene.first_camera_poses(), atol=ATOL)
    np.testing.assert_allclose(frames.pose[0].numpy(), np.eye(4), atol=1e-5)
    np.testing.assert_allclose(frames.points.numpy(), scene.first_camera_points(), atol=points_atol)


# -- VGGT: demo_gradio.py's predictions.npz (batch squeezed; extrinsic = world-to-camera 3×4) ----------
def vggt_npz(tmp_path, scene):
    path = tmp_path / "predictions.npz"
    np.savez(
        path,
        pose_enc=np.zeros((FRAMES, 9), np.float32),
        depth=scene.depth[..., None],                      # (S, H, W, 1)
        depth_conf=scene.confidence,                       # (S, H, W)
        world_points=scene.world_points().astype(np.float32),
        world_points_conf=scene.confidence * 2,
        images=np.zeros((FRAMES, 3, HEIGHT, WIDTH), np.float32),
        extrinsic=scene.w2c[:, :3, :].astype(np.float32),  # (S, 3, 4) camera-from-world
        intrinsic=scene.intrinsics.astype(np.float32),
        world_points_from_depth=scene.world_points().astype(np.float32),
    )
    return path


def test_vggt_demo_npz_gives_first_camera_points_relative_scale(tmp_path):
    scene = Scene()
    geometry = read_vggt_predictions(vggt_npz(tmp_path, scene))
    assert_first_camera(geometry, scene)
    assert geometry.metric_scale is False and "not metres" in geometry.units
    np.testing.assert_allclose(geometry.frames.confidence.numpy(), scene.confidence)
    np.testing.assert_allclose(geometry.frames.depth.numpy(), scene.depth)
    head = read_vggt_predictions(vggt_npz(tmp_path, scene), points_from="point_head")
    assert_first_camera(head, scene)  # the point head's points, same scene
    np.testing.assert_allclose(head.frames.confidence.numpy(), scene.confidence * 2)


def test_vggt_forward_dict_with_pose_encoding_and_tokens():
    """The forward's dict (batch axis kept, no extrinsic key): cameras from pose_enc, absT_quaR_FoV
    with an XYZW quaternion of the world-to-camera rotation (vggt/utils/pose_enc.py, rotation.py)."""
    scene = Scene(seed=1)
    scene.cx, scene.cy = WIDTH / 2, HEIGHT / 2  # pose_enc carries only the FoV: centre principal point
    pose_enc = []
    for i in range(FRAMES):
        # w2c rotation = R_iᵀ: the same axis, minus the angle
        w, x, y, z = quaternion_wxyz(scene.axes[i], -scene.angles[i])
        fov_h = 2 * np.arctan((HEIGHT / 2) / scene.fy)
        fov_w = 2 * np.arctan((WIDTH / 2) / scene.fx)
        pose_enc.append([*scene.w2c[i, :3, 3], x, y, z, w, fov_h, fov_w])
    tokens = torch.randn(1, FRAMES, 5 + 12, 16)
    predictions = {
        "pose_enc": torch.tensor([pose_enc], dtype=torch.float32),           # (B, S, 9)
        "depth": torch.from_numpy(scene.depth)[None, ..., None],             # (B, S, H, W, 1)
        "depth_conf": torch.from_numpy(scene.confidence)[None],
        "images": torch.zeros(1, FRAMES, 3, HEIGHT, WIDTH),
        "aggregated_tokens": tokens,
        "patch_start_idx": 5,
    }
    geometry = read_vggt_predictions(predictions)
    assert_first_camera(geometry, scene)
    np.testing.assert_allclose(geometry.frames.intrinsics[0].numpy(), scene.intrinsics[0], atol=1e-4)
    assert torch.equal(geometry.frames.camera_token, tokens[0, :, 0])
    assert torch.equal(geometry.frames.geometry_tokens, tokens[0, :, 5:])


def test_vggt_pixels_without_depth_are_invalid(tmp_path):
    scene = Scene()
    scene.depth[1, 2, 3] = 0.0
    geometry = read_vggt_predictions(vggt_npz(tmp_path, scene))
    assert not bool(geometry.frames.valid[1, 2, 3]) and int((~geometry.frames.valid).sum()) == 1


def test_vggt_missing_cameras_is_named(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, depth=np.ones((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="no cameras: needs extrinsic"):
        read_vggt_predictions(path)


# -- π³: forward dict {points, local_points, conf (logits), camera_poses (c2w)}, batch first ---------
def pi3_output(scene, metric=None):
    output = {
        "points": torch.from_numpy(scene.world_points()).float()[None],
        "local_points": torch.from_numpy(scene.camera_points()).float()[None],
        "conf": torch.linspace(-4, 4, FRAMES * HEIGHT * WIDTH).reshape(1, FRAMES, HEIGHT, WIDTH, 1),
        "camera_poses": torch.from_numpy(scene.c2w).float()[None],
    }
    if metric is not None:
        output["metric"] = torch.tensor([metric])
    return output


def test_pi3_output_saved_with_torch_save(tmp_path):
    scene = Scene(seed=2)
    output = pi3_output(scene)
    torch.save(output, tmp_path / "res.pt")
    geometry = read_pi3_output(tmp_path / "res.pt")
    assert_first_camera(geometry, scene)
    probability = 1 / (1 + np.exp(-output["conf"][0, ..., 0].numpy()))  # README: sigmoid of the logits
    np.testing.assert_allclose(geometry.frames.confidence.numpy(), probability, atol=1e-6)
    assert torch.equal(geometry.frames.valid, torch.from_numpy(probability > 0.1))  # example.py's mask
    np.testing.assert_allclose(geometry.frames.depth.numpy(), scene.depth, atol=1e-5)
    assert geometry.metric_scale is False
    with pytest.raises(ValueError, match="coordinate_normalization='metric' needs metric geometry"):
        check_metric_scale(geometry, "metric")


def test_pi3x_metric_output_is_metric(tmp_path):
    scene = Scene(seed=3)
    np.savez(tmp_path / "res.npz", **{k: v.numpy() for k, v in pi3_output(scene, metric=2.5).items()})
    geometry = read_pi3_output(tmp_path / "res.npz")
    assert geometry.metric_scale is True and "approximate" in geometry.units
    assert_first_camera(geometry, scene)


# -- CUT3R: inference()'s outputs["pred"] per view, and demo.py's folder ---------------------------------
def test_cut3r_outputs_with_abs_t_quaternion_pose(tmp_path):
    scene = Scene(seed=4)
    world, cam = scene.world_points(), scene.camera_points()
    pred = [
        {
            "pts3d_in_other_view": torch.from_numpy(world[i]).float()[None],
            "pts3d_in_self_view": torch.from_numpy(cam[i]).float()[None],
            "conf": torch.from_numpy(scene.confidence[i])[None],
            "conf_self": torch.from_numpy(scene.confidence[i])[None],
            # absT_quaR: camera-to-world translation, quaternion real part first
            "camera_pose": torch.tensor([[*scene.translations[i], *quaternion_wxyz(scene.axes[i], scene.angles[i])]]).float(),
        }
        for i in range(FRAMES)
    ]
    torch.save({"pred": pred, "views": [{"idx": i, "instance": str(i)} for i in range(FRAMES)]}, tmp_path / "out.pt")
    geometry = read_cut3r_output(tmp_path / "out.pt")
    assert_first_camera(geometry, scene)
    assert geometry.metric_scale is True and geometry.units == "metres"
    np.testing.assert_allclose(geometry.frames.depth.numpy(), scene.depth, atol=1e-5)


def test_cut3r_demo_folder_with_vlm3r_tokens(tmp_path):
    scene = Scene(seed=5)
    for sub in ("depth", "conf", "camera"):
        (tmp_path / "demo" / sub).mkdir(parents=True)
    for i in range(FRAMES):  # demo.py prepare_output: f"{f_id:06d}"
        np.save(tmp_path / "demo" / "depth" / f"{i:06d}.npy", scene.depth[i])
        np.save(tmp_path / "demo" / "conf" / f"{i:06d}.npy", scene.confidence[i])
        np.savez(tmp_path / "demo" / "camera" / f"{i:06d}.npz", pose=scene.c2w[i], intrinsics=scene.intrinsics[i])
    tokens = {"camera_tokens": torch.randn(FRAMES, 1, 8), "patch_tokens": torch.randn(FRAMES, 4, 8)}
    torch.save(tokens, tmp_path / "features.pt")
    geometry = read_backend_output("cut3r", tmp_path / "demo", features=tmp_path / "features.pt")
    assert_first_camera(geometry, scene)
    assert torch.equal(geometry.frames.geometry_tokens, tokens["patch_tokens"])
    torch.save({"camera_tokens": torch.randn(2, 1, 8), "patch_tokens": torch.randn(2, 4, 8)}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="tokens of 2 frames but the CUT3R output has 3"):
        read_cut3r_demo_folder(tmp_path / "demo", features=tmp_path / "short.pt")


# -- Depth Anything 3: utils/export/npz.py results.npz (extrinsics = world-to-camera 3×4) --------------
def test_depth_anything3_npz_export(tmp_path):
    scene = Scene(seed=6)
    path = tmp_path / "exports" / "npz" / "results.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(
        path,
        image=np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8),
        depth=np.round(scene.depth, 6),
        conf=np.round(scene.confidence, 2),
        extrinsics=scene.w2c[:, :3, :].astype(np.float32),
        intrinsics=scene.intrinsics.astype(np.float32),
    )
    geometry = read_depth_anything3(path)
    assert_first_camera(geometry, scene, points_atol=1e-3)  # the export rounds depth to 6 decimals
    assert geometry.metric_scale is False  # the npz does not record is_metric
    assert read_depth_anything3(path, metric_scale=True).metric_scale is True
    np.testing.assert_allclose(geometry.frames.confidence.numpy(), np.round(scene.confidence, 2))


# -- MapAnything: infer()'s list of per-view dicts, and the Gradio app's predictions.npz ---------------
def test_mapanything_views_and_gradio_npz(tmp_path):
    scene = Scene(seed=7)
    world = scene.world_points().astype(np.float32)
    mask = np.ones((FRAMES, HEIGHT, WIDTH, 1), bool)
    mask[1, 0, 0] = False
    views = [
        {
            "pts3d": torch.from_numpy(world[i])[None],                        # (B, H, W, 3)
            "conf": torch.from_numpy(scene.confidence[i])[None],              # (B, H, W)
            "mask": torch.from_numpy(mask[i])[None],                          # (B, H, W, 1)
            "camera_poses": torch.from_numpy(scene.c2w[i]).float()[None],     # (B, 4, 4) cam2world
            "intrinsics": torch.from_numpy(scene.intrinsics[i]).float()[None],
            "depth_z": torch.from_numpy(scene.depth[i])[None, ..., None],     # (B, H, W, 1)
            "metric_scaling_factor": torch.tensor([1.7]),
        }
        for i in range(FRAMES)
    ]
    torch.save(views, tmp_path / "predictions.pt")
    geometry = read_mapanything_output(tmp_path / "predictions.pt")
    assert_first_camera(geometry, scene)
    assert geometry.metric_scale is True
    assert not bool(geometry.frames.valid[1, 0, 0]) and int(geometry.frames.valid.sum()) == mask.sum()
    np.savez(  # gradio_app.py: "extrinsic" holds camera_poses (camera-to-world)
        tmp_path / "gradio.npz",
        extrinsic=scene.c2w.astype(np.float32), intrinsic=scene.intrinsics.astype(np.float32),
        world_points=world, conf=scene.confidence, depth=scene.depth[..., None],
        images=np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.float32), final_mask=mask[..., 0],
    )
    assert_first_camera(read_backend_output("mapanything", tmp_path / "gradio.npz"), scene)


# -- scale and frames in the written folder --------------------------------------------------------------
def test_written_folder_records_scale_and_serves_sampled_frames(tmp_path):
    scene = Scene(seed=8)
    geometry = read_vggt_predictions(vggt_npz(tmp_path, scene))
    folder = write_geometry_folder(tmp_path / "geo", geometry, [0, 49, 99])
    info = json.loads((folder / "geometry.json").read_text())
    assert info["backend"] == "vggt" and info["metric_scale"] is False and info["frame_indices"] == [0, 49, 99]
    assert "video frame 0" in info["world_frame"]
    source = PrecomputedGeometrySource(folder)
    assert source.metric_scale is False and source.frame_indices == [0, 49, 99]
    frames = read_frames(source, [0, 49, 99])
    np.testing.assert_allclose(frames.points.numpy(), scene.first_camera_points(), atol=ATOL)
    with pytest.raises(ValueError, match="no metric scale"):
        check_metric_scale(source, "metric")
    with pytest.raises(KeyError, match="no frame 50"):
        source.frame(50)


def test_fewer_rows_than_sampled_frames_says_which():
    with pytest.raises(ValueError, match=r"holds 3 frames but 5 were asked for .* frames \[75, 99\] would have no geometry"):
        match_rows_to_frames(3, [0, 24, 49, 75, 99], "predictions.npz")
    with pytest.raises(ValueError, match="more than the 2 asked for"):
        match_rows_to_frames(3, [0, 99], "predictions.npz")
