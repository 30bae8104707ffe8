"""Selection pictures: kept-token boxes from source patches, and a figure written to disk."""

import pytest
import torch
from PIL import Image, ImageDraw

from spatialvlm.diagnostics.selection_plot import kept_patch_boxes, pixel_patch_tokens, render_selection
from spatialvlm.selection import SelectionOutput


def test_kept_patch_boxes_span_each_tokens_source_patches():
    # Grid 4×4: token 0 covers patches 5, 6 and 9 (rows 1–2, cols 1–2); token 1 covers patch 15.
    output = SelectionOutput(
        tokens=torch.zeros(1, 3, 2),
        coords=torch.zeros(1, 3, 4),
        is_scaffold=torch.tensor([[True, False, False]]),
        budget=2,
        source_index=torch.tensor([[[0, 1, 4], [5, 6, 9], [15, -1, -1]]]),
    )
    assert kept_patch_boxes(output, (4, 4)).tolist() == [[1, 1, 3, 3], [3, 3, 4, 4]]


def test_pixel_patch_tokens_are_row_major_patches():
    pixels = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    tokens = pixel_patch_tokens(pixels, patch_size=2)
    assert tokens.shape == (2, 6, 12)
    torch.testing.assert_close(tokens[1, 4], pixels[1, :, 2:4, 2:4].reshape(-1))


def test_render_selection_writes_a_figure_and_keeps_the_distinct_object(tmp_path):
    image = Image.new("RGB", (400, 400), (90, 140, 200))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 99), fill=(250, 20, 20))
    image.save(tmp_path / "in.png")
    output = render_selection(tmp_path / "in.png", tmp_path / "heat.png", budget=200)
    assert (tmp_path / "heat.png").stat().st_size > 10_000
    assert output.tokens.shape == (1, 344, 588)
    # The red square is the top-left 12×12 patches; its patches are kept.
    kept = output.source_index[0, 144:][output.source_index[0, 144:] >= 0]
    in_square = ((kept // 48) < 12) & ((kept % 48) < 12)
    assert in_square.sum() >= 100
    with pytest.raises(FileNotFoundError):
        render_selection(tmp_path / "missing.png", tmp_path / "x.png")


def test_viz_selection_command(tmp_path, capsys):
    from spatialvlm.cli import main

    Image.new("RGB", (300, 200), (10, 200, 10)).save(tmp_path / "in.png")
    assert main(["viz", "selection", str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png"), "--budget", "512"]) == 0
    assert (tmp_path / "o.png").exists() and "512 kept tokens + 144 scaffold" in capsys.readouterr().out
    assert main(["viz", "selection", str(tmp_path / "in.png"), "--budget", "5000"]) == 2
    assert "--budget must be one of the selector's budgets (512, 768, 1024), got 5000" in capsys.readouterr().err
