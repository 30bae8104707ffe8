import pytest
import torch

from spatialvlm.geometry import (
    CoordinateStats,
    compute_coordinate_stats,
    make_pose,
    normalize_pose,
    normalize_world_coords,
)


def scene(seed=0, frames=4, patches=50):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.randn(2, frames, patches, 3, generator=gen) * torch.tensor([3.0, 2.0, 1.0]) + torch.tensor([5.0, -2.0, 1.0])
    valid = torch.rand(2, frames, patches, generator=gen) > 0.2
    return coords, valid


def test_hand_computed_stats():
    points = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 0.0, 0.0], [100.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    valid = torch.tensor([[True, True, True, True, False]])
    stats = compute_coordinate_stats(points, valid)
    # torch's median of an even count is the lower middle value: x-median of {0, 2, 4, 100} is 2
    assert stats.center.tolist() == [[2.0, 0.0, 0.0]]
    assert stats.scale.tolist() == [2.0]  # distances {2, 0, 2, 98} -> lower median 2


def test_normalisation_is_invariant_to_scene_scale_and_offset():
    coords, valid = scene()
    reference = normalize_world_coords(coords, valid)
    for scale, shift in [(0.01, 3.0), (40.0, -100.0)]:
        assert torch.allclose(normalize_world_coords(coords * scale + shift, valid), reference, atol=1e-4)
    assert (reference[~valid] == 0).all()


def test_far_outliers_barely_move_the_frame_and_are_clipped():
    coords, valid = scene(1)
    base = compute_coordinate_stats(coords, valid)
    with_outliers = coords.clone()
    with_outliers[:, :, :3] = 1e4  # 6% of the points far away (sky, mis-estimated depth)
    stats = compute_coordinate_stats(with_outliers, valid)
    assert ((stats.center - base.center).norm(dim=-1) < 0.25 * base.scale).all()
    assert ((stats.scale / base.scale - 1).abs() < 0.25).all()
    normalized = normalize_world_coords(with_outliers, valid, clip=8.0)
    assert normalized.abs().max() <= 8.0


def test_streaming_with_precomputed_stats_matches_whole_video():
    coords, valid = scene(2)
    whole = normalize_world_coords(coords, valid)
    stats = CoordinateStats.from_dict(compute_coordinate_stats(coords, valid).to_dict())
    for t in range(coords.shape[1]):
        frame = normalize_world_coords(coords[:, t], valid[:, t], stats)
        assert torch.allclose(frame, whole[:, t], atol=1e-6)


def test_video_without_valid_points_stays_finite():
    coords, valid = scene(3)
    valid[1] = False
    stats = compute_coordinate_stats(coords, valid)
    assert stats.scale[1] == 1.0 and (stats.center[1] == 0).all()
    out = normalize_world_coords(coords, valid)
    assert torch.isfinite(out).all() and (out[1] == 0).all()


def test_subsampling_is_deterministic_and_close():
    coords, valid = scene(4, frames=8, patches=500)
    full = compute_coordinate_stats(coords, valid)
    sub = compute_coordinate_stats(coords, valid, max_points=1000)
    assert torch.equal(sub.center, compute_coordinate_stats(coords, valid, max_points=1000).center)
    assert torch.allclose(sub.center, full.center, atol=0.3) and torch.allclose(sub.scale, full.scale, rtol=0.1)


def test_pose_translation_normalised_like_a_point():
    coords, valid = scene(5)
    stats = compute_coordinate_stats(coords, valid)
    positions = torch.tensor([[[6.0, -1.0, 2.0]], [[1.0, 1.0, 1.0]]])  # (V=2, T=1, 3)
    poses = make_pose(torch.eye(3).expand(2, 1, 3, 3), positions)
    normalized = normalize_pose(poses, stats)
    assert torch.allclose(normalized[..., :3, 3], normalize_world_coords(positions, None, stats))
    assert torch.equal(normalized[..., :3, :3], poses[..., :3, :3])


def test_mismatched_stats_are_rejected():
    coords, valid = scene(6)
    stats = compute_coordinate_stats(coords[:1], valid[:1])
    with pytest.raises(ValueError, match="one video per row"):
        normalize_world_coords(coords, valid, stats)
