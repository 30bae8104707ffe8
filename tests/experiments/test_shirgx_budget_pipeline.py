"""The SHIRG-X budget experiment's training/eval pipeline: bootstrap CI and full-resolution coverage
against hand computations; vision-tower pretraining on exact patch labels; the --quick CLI end to end
(diffusion objective, frozen pretrained tower, one seed through --seeds)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from spatialvlm.experiments.shirgx_budget import (
    BudgetExperimentConfig,
    bootstrap_ci,
    full_resolution_coverage,
    pretrain_vision_tower,
    quick_config,
)


def test_bootstrap_ci_brackets_the_mean_and_collapses_on_constant_scores():
    assert bootstrap_ci([1.0] * 20) == [100.0, 100.0]
    scores = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_ci(scores, samples=2000, seed=3)
    # Binomial standard error at p = 0.3, n = 100: 4.6 points, so the 95 % interval is about ±9.
    assert low < 30 < high and 19 < low < 25 and 35 < high < 41
    assert bootstrap_ci(scores, samples=2000, seed=3) == [low, high]  # seeded
    assert all(np.isnan(bootstrap_ci([])))


def test_full_resolution_coverage_counts_only_single_patch_tokens():
    # Tokens over 16 patches: patch 3 alone, a 2×2 average of {5, 6, 9, 10}, patch 9 alone.
    source_index = torch.tensor([[[3, -1, -1, -1], [5, 6, 9, 10], [9, -1, -1, -1]]])
    region = torch.zeros(1, 16, dtype=torch.bool)
    region[0, [3, 5, 9, 12]] = True
    # 3 and 9 are kept alone; 5 only inside an average; 12 nowhere.
    assert full_resolution_coverage(source_index, region).tolist() == [pytest.approx(2 / 4)]


def test_pretraining_the_tower_on_patch_labels_lowers_the_loss():
    from spatialvlm.data.synthetic_images import DETAIL_FAMILIES, ImageSuiteConfig, make_image, patch_labels
    from spatialvlm.models.shirgx_vlm import build_shirgx_base
    from spatialvlm.data.preprocess import siglip_preprocess
    from spatialvlm.models.tiny import tiny_llava_onevision_config

    config = tiny_llava_onevision_config(vision_config={"hidden_size": 16, "intermediate_size": 32,
                                                        "num_hidden_layers": 1, "image_size": 672})
    torch.manual_seed(0)
    vlm = build_shirgx_base(config)
    before = {k: v.clone() for k, v in vlm.model.vision_tower.state_dict().items()}
    suite = ImageSuiteConfig(num_images=2, seed=0, families=DETAIL_FAMILIES[:2])
    images = [make_image(suite, i) for i in range(2)]
    pixels = siglip_preprocess([item.rendered.image for item in images], 672)
    labels = [patch_labels(np.asarray(item.rendered.image), item.rendered.description) for item in images]
    stacked = {key: torch.stack([torch.from_numpy(label[key]).flatten() for label in labels]) for key in labels[0]}
    settings = BudgetExperimentConfig(pretrain_steps=12, pretrain_batch_size=2, pretrain_learning_rate=1e-2,
                                      show_progress=False)
    stats = pretrain_vision_tower(vlm, (pixels, stacked), (pixels, stacked), settings)
    assert len(stats["losses"]) == 12 and stats["losses"][-1] < stats["losses"][0]
    assert set(stats["test_accuracy"]) == {"color", "glyph", "frame_recall"}
    after = vlm.model.vision_tower.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the tower itself trained


def test_quick_config_is_the_documented_quick_run():
    config = quick_config(train_images=4)
    assert config.objective == "diffusion" and config.freeze_vision and config.pretrain_steps > 0
    assert set(config.families) == {"dense_marks", "dense_glyphs", "dense_bars"} and config.train_images == 4


@pytest.mark.slow
def test_quick_cli_runs_diffusion_rows_on_a_frozen_pretrained_tower(tmp_path):
    command = [sys.executable, "-m", "spatialvlm.experiments.shirgx_budget", "--quick", "--out", str(tmp_path),
               "--train-images", "3", "--test-images", "3", "--pretrain-steps", "2", "--epochs", "1", "--seeds", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "seed0" / "results.json").read_text())
    assert result["config"]["objective"] == "diffusion" and len(result["pretrain"]["losses"]) == 2
    for row in ("shirgx", "pool"):
        for budget, (low, high) in result["accuracy_ci"][row].items():
            if budget != "adaptive":
                assert low <= result["accuracy"][row][budget] <= high
        assert set(result["selector_ms"][row]) >= {"0", "512", "768", "1024", "2304"}
        assert result["spread"][row]["2304"]["region_full_res"] == 100  # every patch kept alone
    assert "Seeds [0]" in (tmp_path / "seeds.md").read_text()
    # The rows trained on top of the frozen pretrained tower: the saved base tower is what they used.
    assert "shirgx" in done.stdout and "pool" in done.stdout
