"""Experiments that use the whole library: the VLM² ablation on synthetic scenes.

    python -m spatialvlm.experiments.vlm2_ablation --out ablation_out

``run_ablation(AblationConfig(...))`` is the Python entry point. The synthetic-pretrained base its
rows start from (``--base``):

    python -m spatialvlm.experiments.vlm2_base --data BENCH --out base_out

``build_base(BaseConfig(...))`` is its Python entry point. Where the rows lose the answer:

    python -m spatialvlm.experiments.vlm2_probe --data BENCH --base BASE        (linear probes)
    python -m spatialvlm.experiments.vlm2_describe --data BENCH --models ...    (description read-out)
    python -m spatialvlm.experiments.vlm2_grounding --data BENCH --base BASE    (presence: fixed vs named)
    python -m spatialvlm.experiments.vlm2_oracle --data BENCH --base BASE       (perfect video tokens)
    python -m spatialvlm.experiments.vlm2_lookup --data BENCH --base BASE       (which hop of the read-out fails)

SHIRG-X accuracy against token budget, beside the baseline selectors:

    python -m spatialvlm.experiments.shirgx_budget --out shirgx_budget_out --figures docs/figures

``run_budget_experiment(BudgetExperimentConfig(...))`` is its Python entry point. Where a finished
run's read-out is lost (base against shared reader, one step against the decoder):

    python -m spatialvlm.experiments.shirgx_probe --run shirgx_budget_out
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BASELINES",
    "VARIANTS",
    "AblationConfig",
    "AblationResult",
    "BaseConfig",
    "QUICK_VARIANTS",
    "RowSummary",
    "Variant",
    "VariantResult",
    "llava_records",
    "results_markdown",
    "run_ablation",
    "build_base",
    "summarise",
]

# SHIRG-X budget experiment names, loaded lazily from their own module.
_SHIRGX_BUDGET = (
    "BUDGET_ROWS",
    "BudgetExperimentConfig",
    "BudgetExperimentResult",
    "BudgetRow",
    "budget_results_markdown",
    "plot_budget_results",
    "plot_seeds_accuracy",
    "run_budget_experiment",
    "bootstrap_ci",
    "full_resolution_coverage",
    "pretrain_vision_tower",
    "align_projector",
    "pretrain_reader",
    "save_reader",
    "spearman",
    "quick_config",
    "reader_config",
    "reader_quick_config",
    "PRESETS",
    "seeds_summary_markdown",
    "paired_gap_ci",
    "load_results",
)
_SHIRGX_PROBE = (
    "probe_read_out", "probe_markdown", "probe_selection", "selection_markdown", "selection_stats", "content_cells",
    "wrong_answer_kind", "probe_scaffold", "scaffold_markdown",
)
__all__ += list(_SHIRGX_BUDGET) + list(_SHIRGX_PROBE)


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m spatialvlm.experiments.vlm2_ablation` does not import the module twice.
    if name in _SHIRGX_BUDGET:
        return getattr(importlib.import_module(".shirgx_budget", __name__), name)
    if name in _SHIRGX_PROBE:
        return getattr(importlib.import_module(".shirgx_probe", __name__), name)
    if name in ("BaseConfig", "build_base"):
        return getattr(importlib.import_module(".vlm2_base", __name__), name)
    if name in __all__:
        return getattr(importlib.import_module(".vlm2_ablation", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
