"""SHIRG-X budget experiment: the spread and memory measures against hand-computed cases, and a
tiny end-to-end run (two rows, a handful of questions) with its static token counts."""

import json

import pytest
import torch

from spatialvlm.experiments.shirgx_budget import (
    BudgetExperimentConfig,
    budget_results_markdown,
    kv_cache_bytes,
    plot_budget_results,
    run_budget_experiment,
    spatial_spread,
)


def test_spatial_spread_counts_cells_and_region_patches_of_fine_tokens_only():
    grid, pool = 8, 4  # 2×2 cells of 4×4 patches
    # Tokens: scaffold (patch 0), fine single patch 1, fine pair {62, 63}, a coarse 6-patch group.
    source_index = torch.tensor([[
        [0, -1, -1, -1, -1, -1],
        [1, -1, -1, -1, -1, -1],
        [62, 63, -1, -1, -1, -1],
        [4, 5, 6, 7, 12, 13],
    ]])
    is_scaffold = torch.tensor([[True, False, False, False]])
    region = torch.zeros(1, grid * grid, dtype=torch.bool)
    region[0, [0, 1, 63, 4]] = True  # 0: scaffold only, 1 and 63: fine, 4: coarse only
    cells, coverage = spatial_spread(source_index, is_scaffold, grid, pool, region)
    # Patch 1 is in cell (0, 0); patches 62, 63 in cell (1, 1); the coarse group does not count.
    assert cells.tolist() == [2]
    assert coverage.tolist() == [pytest.approx(2 / 4)]
    cells, coverage = spatial_spread(source_index, is_scaffold, grid, pool, region, max_group=6)
    assert cells.tolist() == [3] and coverage.tolist() == [pytest.approx(3 / 4)]


def test_kv_cache_bytes_matches_a_hand_count():
    # LLaDA-8B at 1,168 tokens: 2 (K, V) × 32 layers × 32 heads × 128 × 2 bytes × 1168.
    assert kv_cache_bytes(1168, 32, 32, 128, 2) == 2 * 32 * 32 * 128 * 2 * 1168 == 612_368_384


def test_tiny_run_writes_results_with_static_token_counts(tmp_path):
    config = BudgetExperimentConfig(
        out_dir=str(tmp_path), rows=("shirgx", "pool"), train_images=2, test_images=1, epochs=1,
        eval_budgets=(0, 512, 2304), show_progress=False,
    )
    result = run_budget_experiment(config)
    # Every image gets exactly the budget's token count (scaffold 144; K + 144; all patches).
    adaptive_counts = result.token_counts["shirgx"].pop("adaptive")
    assert result.token_counts["shirgx"] == {"0": [144], "512": [656], "2304": [2448]}
    assert len(adaptive_counts) == 1 and adaptive_counts[0] - 144 in config.train_budgets
    assert result.token_counts["pool"] == {"0": [144], "512": [656], "2304": [2304]}
    for scores in result.accuracy.values():
        assert set(scores) == {"0", "512", "2304"} and all(0 <= v <= 100 for v in scores.values())
    assert set(result.adaptive["budgets"]) <= set(config.train_budgets)
    assert len(result.adaptive["budgets"]) == len(result.adaptive["complexity"]) == 2  # 2 questions
    # Pooling to 656 cells: every cell averages at most 2×2 patches, so all of them are fine tokens.
    assert {k: result.spread["pool"]["512"][k] for k in ("cells_covered", "region_coverage")} == {"cells_covered": 144, "region_coverage": 100}
    assert "0" not in result.spread["pool"]  # the scaffold is not a kept fine token
    assert result.spread["pool"]["2304"] == {"cells_covered": 144, "region_coverage": 100, "region_full_res": 100}
    assert result.train_losses["shirgx"][0] > 0
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["token_counts"]["pool"] == result.token_counts["pool"]
    table = budget_results_markdown(result)
    assert "| shirgx |" in table and "| pool |" in table and "shirgx-adaptive" in table
    assert all(path.stat().st_size > 0 for path in plot_budget_results(result, tmp_path / "figures"))


def test_unknown_rows_and_budgets_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown rows"):
        run_budget_experiment(BudgetExperimentConfig(out_dir=str(tmp_path), rows=("shirgx", "nope")))
    with pytest.raises(ValueError, match="eval_budgets"):
        run_budget_experiment(BudgetExperimentConfig(out_dir=str(tmp_path), eval_budgets=(0, 600)))
