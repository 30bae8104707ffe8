import pytest
import torch

from spatialvlm.geometry import patch_assignment, points_to_patch_coords


def naive_patch_coords(points, valid, grid, confidence=None, threshold=None, patch_size=None):
    """Per-patch loop over explicit pixel bands: the reference for the vectorised pooling."""
    batch, height, width, _ = points.shape
    grid_h, grid_w = grid

    def band(cell, size, cells):
        if patch_size is not None:
            return range(cell * patch_size, (cell + 1) * patch_size)
        # pixel r belongs to cell floor(r·cells/size) ⇔ ceil(cell·size/cells) ≤ r < ceil((cell+1)·size/cells)
        return range(-(-cell * size // cells), -(-(cell + 1) * size // cells))

    coords = torch.zeros(batch, grid_h * grid_w, 3)
    patch_valid = torch.zeros(batch, grid_h * grid_w, dtype=torch.bool)
    for b in range(batch):
        for i in range(grid_h):
            for j in range(grid_w):
                kept = []
                for r in band(i, height, grid_h):
                    for c in band(j, width, grid_w):
                        p = points[b, r, c]
                        ok = bool(torch.isfinite(p).all()) and (valid is None or bool(valid[b, r, c]))
                        if confidence is not None:
                            ok = ok and float(confidence[b, r, c]) >= threshold
                        if ok:
                            kept.append(p)
                if kept:
                    coords[b, i * grid_w + j] = torch.stack(kept).mean(0)
                    patch_valid[b, i * grid_w + j] = True
    return coords, patch_valid


def noisy_point_map(batch, height, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn(batch, height, width, 3, generator=gen) * 3
    points[0, 0, :4, 1] = float("nan")
    points[0, 5, 3] = float("inf")
    points[-1, -1, -1, 2] = float("-inf")
    valid = torch.rand(batch, height, width, generator=gen) > 0.3
    valid[1, :6, :6] = False  # a whole invalid region: some patches get no point
    confidence = torch.rand(batch, height, width, generator=gen)
    return points, valid, confidence


@pytest.mark.parametrize("shape,grid", [((12, 15), (4, 5)), ((13, 17), (4, 5)), ((9, 7), (9, 7))])
def test_pooling_matches_naive_loop_with_nan_inf_and_invalid(shape, grid):
    points, valid, _ = noisy_point_map(2, *shape)
    coords, patch_valid = points_to_patch_coords(points, valid, grid)
    ref_coords, ref_valid = naive_patch_coords(points, valid, grid)
    assert torch.equal(patch_valid, ref_valid)
    assert not patch_valid.all()
    assert torch.allclose(coords, ref_coords, atol=1e-5)
    assert torch.isfinite(coords).all()


def test_pooling_with_confidence_threshold():
    points, valid, confidence = noisy_point_map(2, 13, 17, seed=1)
    coords, patch_valid = points_to_patch_coords(points, valid, (4, 5), confidence=confidence, confidence_threshold=0.5)
    ref_coords, ref_valid = naive_patch_coords(points, valid, (4, 5), confidence, 0.5)
    assert torch.equal(patch_valid, ref_valid)
    assert torch.allclose(coords, ref_coords, atol=1e-5)
    only_conf, _ = points_to_patch_coords(points, None, (4, 5), confidence=confidence, confidence_threshold=0.5)
    assert torch.allclose(only_conf, naive_patch_coords(points, None, (4, 5), confidence, 0.5)[0], atol=1e-5)


def test_patch_size_mode_drops_trailing_pixels_like_the_patch_embedding():
    points, valid, _ = noisy_point_map(2, 30, 23, seed=2)
    coords, patch_valid = points_to_patch_coords(points, valid, (4, 3), patch_size=7)
    ref_coords, ref_valid = naive_patch_coords(points, valid, (4, 3), patch_size=7)
    assert torch.equal(patch_valid, ref_valid)
    assert torch.allclose(coords, ref_coords, atol=1e-5)
    assert patch_assignment(30, 4, 7)[-2:].tolist() == [-1, -1]


def test_non_multiple_bands_cover_every_pixel_once():
    assignment = patch_assignment(384, 27)
    counts = torch.bincount(assignment, minlength=27)
    assert counts.sum() == 384 and set(counts.tolist()) == {14, 15}
    assert (assignment[1:] >= assignment[:-1]).all()


def test_432_map_to_27_grid_equals_block_mean():
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(2, 432, 432, 3, generator=gen)
    coords, patch_valid = points_to_patch_coords(points, None, (27, 27))
    block_mean = points.reshape(2, 27, 16, 27, 16, 3).mean((2, 4)).reshape(2, 729, 3)
    assert patch_valid.all()
    assert torch.allclose(coords, block_mean, atol=1e-5)


def test_fully_invalid_frame_gives_zero_invalid_patches():
    points = torch.full((1, 8, 8, 3), float("nan"))
    coords, patch_valid = points_to_patch_coords(points, torch.ones(1, 8, 8, dtype=torch.bool), (2, 2))
    assert not patch_valid.any()
    assert (coords == 0).all()


def test_bad_inputs_raise_clear_errors():
    points = torch.zeros(2, 8, 8, 3)
    with pytest.raises(ValueError, match="points must have shape"):
        points_to_patch_coords(torch.zeros(2, 8, 8, 2), None, (2, 2))
    with pytest.raises(ValueError, match="valid must have shape"):
        points_to_patch_coords(points, torch.ones(3, 8, 8, dtype=torch.bool), (2, 2))
    with pytest.raises(ValueError, match="empty"):
        points_to_patch_coords(torch.zeros(2, 0, 8, 3), None, (2, 2))
    with pytest.raises(TypeError, match="confidence"):
        points_to_patch_coords(points, torch.ones(2, 8, 8), (2, 2))
    with pytest.raises(ValueError, match="at least one pixel"):
        points_to_patch_coords(points, None, (9, 2))
