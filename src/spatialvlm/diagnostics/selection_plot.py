"""Pictures of a token selection: the per-patch score heatmap and the kept tokens over the image."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..selection import SelectionOutput


def pixel_patch_tokens(pixel_values: torch.Tensor, patch_size: int = 14) -> torch.Tensor:
    """(B, 3, S, S) pixels → (B, (S/p)², 3·p²) raw patch vectors, row-major.

    A weight-free stand-in for SigLIP features so the selection can be looked at without a checkpoint:
    text-free saliency then marks patches whose pixels differ from the image's average patch.
    """
    patches = torch.nn.functional.unfold(pixel_values, kernel_size=patch_size, stride=patch_size)
    return patches.transpose(1, 2)


def kept_patch_boxes(output: SelectionOutput, grid: tuple[int, int], image_index: int = 0) -> np.ndarray:
    """(K, 4) boxes (row0, col0, row1, col1) in patch units, exclusive ends, of the kept hi-detail tokens."""
    sources = output.source_index[image_index][~output.is_scaffold[image_index]]
    cols = grid[1]
    valid = sources >= 0
    rows_of, cols_of = sources // cols, sources % cols
    big = grid[0] + grid[1]
    row0 = torch.where(valid, rows_of, big).amin(dim=1)
    col0 = torch.where(valid, cols_of, big).amin(dim=1)
    row1 = torch.where(valid, rows_of, -1).amax(dim=1) + 1
    col1 = torch.where(valid, cols_of, -1).amax(dim=1) + 1
    return torch.stack([row0, col0, row1, col1], dim=1).cpu().numpy()


def plot_selection(
    image: Image.Image,
    output: SelectionOutput,
    grid: tuple[int, int],
    path: str | os.PathLike,
    image_index: int = 0,
    title: str | None = None,
) -> None:
    """Save a two-panel figure: score heatmap over the image, and the kept tokens' outlines.

    Args:
        image: the original image (shown resized to a square, as SigLIP sees it).
        output: a selection whose ``patch_scores`` is set (SHIRG-X).
        grid: (rows, cols) of the patches.
        path: output image file (PNG, PDF, ... by extension).
        image_index: which batch element to draw.
        title: figure title; defaults to the budget and token count.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if output.patch_scores is None:
        raise ValueError("output.patch_scores is None: only selectors that score patches can be drawn as a heatmap")
    side = 672
    shown = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    scores = output.patch_scores[image_index].detach().float().view(*grid).cpu().numpy()
    rows, cols = grid
    extent = (0, side, side, 0)

    figure, (heat_axis, kept_axis) = plt.subplots(1, 2, figsize=(12, 6.4))
    heat_axis.imshow(shown, extent=extent)
    heat = heat_axis.imshow(scores, cmap="inferno", alpha=0.6, extent=extent, interpolation="nearest")
    figure.colorbar(heat, ax=heat_axis, fraction=0.046, label="score s = 0.7·Sim − 0.2·D_nbr − 0.1·D_ctr")
    heat_axis.set_title("patch scores")

    kept_axis.imshow(shown, extent=extent, alpha=0.45)
    cell_h, cell_w = side / rows, side / cols
    for row0, col0, row1, col1 in kept_patch_boxes(output, grid, image_index):
        kept_axis.add_patch(
            Rectangle((col0 * cell_w, row0 * cell_h), (col1 - col0) * cell_w, (row1 - row0) * cell_h, fill=False, lw=0.6, ec="lime")
        )
    kept_axis.set_xlim(0, side)
    kept_axis.set_ylim(side, 0)
    kept_count = int((~output.is_scaffold[image_index]).sum())
    kept_axis.set_title(f"{kept_count} kept tokens (+{int(output.is_scaffold[image_index].sum())} scaffold)")
    for axis in (heat_axis, kept_axis):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title or f"SHIRG-X selection, K = {output.budget}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render_selection(
    image_path: str | os.PathLike,
    out_path: str | os.PathLike,
    budget: int | None = None,
    siglip_path: str | os.PathLike | None = None,
    layer: int = -2,
) -> SelectionOutput:
    """Load an image, select tokens with an untrained SHIRG-X selector and draw the result.

    Args:
        image_path: any image Pillow opens.
        out_path: where to write the figure.
        budget: K; None lets the (untrained, hence default-budget) adaptive head choose.
        siglip_path: a local SigLIP vision checkpoint directory; None draws on raw pixel patches
            (no weights needed; text-free saliency then reflects colour and texture contrast).
        layer: SigLIP hidden-state index to select on (−2: the penultimate, the projector's layer).

    Returns:
        The selection that was drawn.
    """
    from ..data.preprocess import siglip_preprocess
    from ..selection import ShirgXConfig, ShirgXSelector

    path = os.fspath(image_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    image = Image.open(path)
    image.load()
    with torch.inference_mode():
        if siglip_path is None:
            tokens = pixel_patch_tokens(siglip_preprocess(image, 672), 14)
            grid = (48, 48)
        else:
            from ..models.siglip import SiglipDualScaleExtractor

            features = SiglipDualScaleExtractor.from_pretrained(siglip_path, image_size=672, projector_layer=layer).extract(image)
            tokens, grid = features.projector_tokens.float(), features.grid
        selector = ShirgXSelector(ShirgXConfig(vision_dim=tokens.shape[-1], grid=grid))
        output = selector(tokens, budget=budget)
    source = "pixel patches" if siglip_path is None else f"SigLIP layer {layer}"
    plot_selection(image, output, grid, out_path, title=f"SHIRG-X selection on {source}, K = {output.budget}")
    return output
