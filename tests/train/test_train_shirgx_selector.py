"""Selector save/load (the layout SHIRG-X checkpoints and `spatialvlm ask --image` read)."""

import pytest
import torch
from safetensors.torch import save_file

from spatialvlm.selection import (
    SELECTOR_CONFIG_NAME,
    SELECTOR_WEIGHTS_NAME,
    ShirgXConfig,
    ShirgXSelector,
    load_selector,
    save_selector,
)


def test_save_load_round_trip_keeps_config_and_outputs(tmp_path):
    torch.manual_seed(0)
    config = ShirgXConfig(vision_dim=8, grid=(8, 8), scaffold_pool=4, budgets=(8, 16), default_budget=16, coord_hidden=4)
    selector = ShirgXSelector(config)
    with torch.no_grad():  # non-zero weights everywhere, so a missed tensor would show
        for parameter in selector.parameters():
            parameter.normal_()
    save_selector(selector, tmp_path / "sel")
    assert {p.name for p in (tmp_path / "sel").iterdir()} == {SELECTOR_WEIGHTS_NAME, SELECTOR_CONFIG_NAME}
    loaded = load_selector(tmp_path / "sel", vision_dim=8)
    assert loaded.config == config
    tokens = torch.randn(2, 64, 8)
    reference, again = selector(tokens), loaded(tokens)
    assert again.budget == reference.budget
    torch.testing.assert_close(again.tokens, reference.tokens, rtol=0, atol=0)
    torch.testing.assert_close(again.budget_logits, reference.budget_logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="vision_dim 8"):
        load_selector(tmp_path / "sel", vision_dim=16)


def test_weights_without_config_load_into_the_default_config(tmp_path):
    selector = ShirgXSelector(ShirgXConfig(vision_dim=16))
    save_file(dict(selector.state_dict()), str(tmp_path / SELECTOR_WEIGHTS_NAME))
    loaded = load_selector(tmp_path, vision_dim=16)
    assert loaded.config == ShirgXConfig(vision_dim=16)
    with pytest.raises(ValueError, match="does not fit"):
        load_selector(tmp_path, vision_dim=32)
    with pytest.raises(FileNotFoundError):
        load_selector(tmp_path / "missing")
