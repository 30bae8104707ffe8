"""Measure the SHIRG-X selection knobs on the synthetic high-detail image suite (issue 13).

Sweeps the spreading weight w_nbr (with its kernel width σ) and the merge similarity gate τ on the
suite's images (``data.synthetic_images``, drawn in memory, 672 px → 48×48 patches) and reports, at
K = 512:

- cells: 12×12 scaffold cells holding a kept high-detail token (grid coverage, of 144);
- nn: mean distance, in patches, from a kept token to its nearest kept neighbour;
- region %: share of the answer-region patches (``region_patch_mask``) inside a kept token;
- merged: kept tokens that are merged groups; merged-region %: answer-region patches that sit in a
  merged group (detail averaged away).

Features: a randomly initialised tiny SigLIP (width 64, 1 layer; nothing pretrained can be loaded
here), so relevance is the text-free saliency (distinctiveness) of those features, which marks the
drawn content against the plain background. The defaults in ``ShirgXConfig`` come from this table
(docs/decisions.md).

    python benchmarks/tune_selection.py [--images 24]
"""

from __future__ import annotations

import argparse


import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from spatialvlm.data.preprocess import siglip_preprocess
from spatialvlm.data.synthetic_images import ImageSuiteConfig, make_image, region_patch_mask
from spatialvlm.selection import ShirgXConfig, ShirgXSelector

BUDGET = 512


def suite_features(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2304, 64) tiny-SigLIP features of ``count`` suite images and (B, 2304) answer-region masks."""
    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                image_size=672, patch_size=14)
    tower = SiglipVisionModel(config).eval()
    suite = ImageSuiteConfig(num_images=count, split="test")
    images, masks = [], []
    for index in range(count):
        drawn = make_image(suite, index).rendered
        images.append(drawn.image)
        regions = [box for question in drawn.questions for box in question["regions"]]
        masks.append(torch.from_numpy(region_patch_mask(regions)).flatten())
    with torch.no_grad():
        features = tower(siglip_preprocess(images, 672), output_hidden_states=True).hidden_states[-1]
    return features, torch.stack(masks)


def measure(features: torch.Tensor, regions: torch.Tensor, **overrides) -> dict[str, float]:
    selector = ShirgXSelector(ShirgXConfig(vision_dim=features.shape[-1], **overrides))
    with torch.no_grad():
        out = selector(features, budget=BUDGET)
    fine = out.source_index[:, ~out.is_scaffold[0]]
    batch = features.shape[0]
    covered = torch.zeros(batch, 2305, dtype=torch.bool)
    covered.scatter_(1, torch.where(fine < 0, 2304, fine).flatten(1), True)
    covered = covered[:, :2304]
    cells = covered.view(batch, 12, 4, 12, 4).any(4).any(2).flatten(1).sum(1).float()
    first = fine[..., 0]
    points = torch.stack([first // 48, first % 48], -1).float()
    distance = torch.cdist(points, points) + torch.eye(BUDGET) * 1e9
    merged_group = (fine >= 0).sum(-1) > 1
    in_merged = torch.zeros(batch, 2305, dtype=torch.bool)
    in_merged.scatter_(1, torch.where((fine < 0) | ~merged_group[..., None], 2304, fine).flatten(1), True)
    in_merged = in_merged[:, :2304]
    has_region = regions.any(1)
    region_share = ((covered & regions).sum(1).float() / regions.sum(1).clamp(min=1))[has_region]
    merged_region = ((in_merged & regions).sum(1).float() / regions.sum(1).clamp(min=1))[has_region]
    return {
        "cells": float(cells.mean()),
        "nn": float(distance.amin(-1).mean()),
        "region %": 100 * float(region_share.mean()),
        "merged": float(merged_group.sum(1).float().mean()),
        "merged-region %": 100 * float(merged_region.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(2)
    features, regions = suite_features(args.images)
    print(f"{args.images} suite images, K = {BUDGET}, text-free saliency on tiny-SigLIP features\n")
    print("spreading (merging off):")
    print(f"{'w_nbr':>6} {'sigma':>6} {'rounds':>6} {'cells':>7} {'nn':>6} {'region %':>9}")
    for sigma, rounds in ((1.0, 8), (2.0, 8), (4.0, 8), (2.0, 16), (4.0, 16)):
        for weight in (0.0, 0.1, 0.2, 0.4, 0.8, 1.6):
            row = measure(features, regions, neighbour_weight=weight, neighbour_sigma=sigma, spread_rounds=rounds,
                          merge_threshold=0.0)
            print(f"{weight:>6} {sigma:>6} {rounds:>6} {row['cells']:>7.1f} {row['nn']:>6.2f} {row['region %']:>9.1f}")
    print("\nmerge gate (ε = 0.05, defaults otherwise):")
    print(f"{'tau':>6} {'merged':>7} {'merged-region %':>16} {'region %':>9} {'cells':>7}")
    for tau in (-1.0, 0.5, 0.8, 0.9, 0.95, 0.98):
        row = measure(features, regions, merge_similarity=tau)
        print(f"{tau:>6} {row['merged']:>7.1f} {row['merged-region %']:>16.1f} {row['region %']:>9.1f} {row['cells']:>7.1f}")



if __name__ == "__main__":
    main()
