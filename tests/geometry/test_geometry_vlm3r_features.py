"""VLM-3R's precomputed CUT3R features (.pt from scripts/extract_spatial_features.py) as a geometry source."""

import numpy as np
import pytest
import torch

from spatialvlm.data.video import uniform_frame_indices
from spatialvlm.geometry import VLM3RFeatureSource, load_geometry_source, read_frames


def write_features(path, frames=8, tokens=16, width=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    data = {"camera_tokens": torch.randn(frames, 1, width, generator=gen), "patch_tokens": torch.randn(frames, tokens, width, generator=gen)}
    torch.save(data, path)
    return data


def test_rows_come_back_under_vlm3r_frame_indices(tmp_path):
    data = write_features(tmp_path / "scene0000_00.pt")
    source = load_geometry_source(tmp_path / "scene0000_00.pt", total_frames=100)
    assert isinstance(source, VLM3RFeatureSource)
    # process_video_with_decord(force_sample=True): np.linspace(0, total - 1, frames_upbound, dtype=int)
    assert source.frame_indices == [int(i * 99 / 7) for i in range(8)] == [0, 14, 28, 42, 56, 70, 84, 99]
    frames = read_frames(source, uniform_frame_indices(100, 8))  # the library's sampler meets the same frames
    assert torch.equal(frames.geometry_tokens, data["patch_tokens"])
    assert torch.equal(frames.camera_token, data["camera_tokens"][:, 0])
    assert frames.points is None and not source.has_points
    with pytest.raises(KeyError, match="no features for video frame 15"):
        source.frame(15)


def test_without_total_frames_rows_are_positions_and_bad_files_are_named(tmp_path):
    write_features(tmp_path / "v.pt", frames=4)
    source = load_geometry_source(tmp_path / "v.pt")
    assert source.frame_indices == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="pass total_frames"):
        source.frame(7)
    torch.save({"features": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected the keys camera_tokens and patch_tokens"):
        load_geometry_source(tmp_path / "bad.pt")


def test_features_drive_the_vlm3r_fusion_and_injection_says_points_are_missing(tmp_path):
    from spatialvlm.models.tiny import build_tiny_processor
    from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration, tiny_vlm2_config

    write_features(tmp_path / "v.pt", frames=3, tokens=16, width=24)
    frames = read_frames(load_geometry_source(tmp_path / "v.pt", total_frames=30), uniform_frame_indices(30, 3))
    config = tiny_vlm2_config(
        use_coordinate_injection=False, use_viewpoint_alignment=False, use_point_tokens=False, view_dim=24
    )
    processor = build_tiny_processor(config)
    batch = processor(processor.video_prompt("How many chairs?"), videos=torch.rand(3, 3, 56, 56), geometry=frames)
    model = VLM2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        fused = model(**batch).logits
        without_camera = model(**{k: v for k, v in batch.items() if k != "camera_tokens"}).logits
    assert torch.isfinite(fused).all() and (fused - without_camera).abs().max() > 1e-6  # camera token is a key
    injecting = VLM2ForConditionalGeneration(tiny_vlm2_config(view_dim=24, use_viewpoint_alignment=False))
    with pytest.raises(ValueError, match="VLM-3R's .pt features have no points"):
        injecting(**batch)
