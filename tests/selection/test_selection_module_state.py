"""Every tensor the package's modules compute with is a parameter or a persistent buffer.

A non-persistent buffer is in no state dict: a module built on the meta device (transformers'
``from_pretrained``, accelerate's ``init_empty_weights``) and then loaded keeps uninitialised memory
there. This is what broke ``PointTokenEncoder``; the SHIRG-X selector held two such buffers
(``scaffold_sources``, ``BudgetHead.budgets``). Checked here for every top-level module of the
algorithm packages, and end to end for the selector built on meta and loaded.
"""

import pytest
import torch

from spatialvlm.fusion import SpatialFusion, SpatialFusionConfig
from spatialvlm.memory import DualMemory
from spatialvlm.selection import ShirgXConfig, ShirgXSelector


def _non_persistent_buffers(module: torch.nn.Module) -> list[str]:
    return [
        f"{prefix}.{name}" if prefix else name
        for prefix, child in module.named_modules()
        for name in child._non_persistent_buffers_set
    ]


@pytest.mark.parametrize(
    "build",
    [
        lambda: SpatialFusion(SpatialFusionConfig(dim=32, geometry_dim=24, view_dim=16, num_heads=2)),
        lambda: DualMemory(32, num_heads=2),
        lambda: ShirgXSelector(ShirgXConfig(vision_dim=32)),
    ],
    ids=["spatial_fusion", "dual_memory", "shirgx_selector"],
)
def test_no_non_persistent_buffers(build):
    assert _non_persistent_buffers(build()) == []


def test_selector_built_on_meta_and_loaded_selects_as_the_eager_one():
    torch.manual_seed(0)
    config = ShirgXConfig(vision_dim=32)
    eager = ShirgXSelector(config)
    with torch.device("meta"):
        lazy = ShirgXSelector(config)
    lazy = lazy.to_empty(device="cpu")
    lazy.load_state_dict(eager.state_dict())
    tokens = torch.randn(2, 2304, 32)
    with torch.no_grad():
        expected, got = eager(tokens), lazy(tokens)  # budget=None: the adaptive head picks K
    assert got.budget == expected.budget and got.budget in config.budgets
    for name in ("tokens", "coords", "source_index", "chosen_budgets"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
