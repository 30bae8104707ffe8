"""Experiments that use the whole library: the VLM² ablation on synthetic scenes.

    python -m spatialvlm.experiments.vlm2_ablation --out ablation_out

``run_ablation(AblationConfig(...))`` is the Python entry point.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BASELINES",
    "VARIANTS",
    "AblationConfig",
    "AblationResult",
    "Variant",
    "VariantResult",
    "llava_records",
    "results_markdown",
    "run_ablation",
]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m spatialvlm.experiments.vlm2_ablation` does not import the module twice.
    if name in __all__:
        return getattr(importlib.import_module(".vlm2_ablation", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
