"""The SHIRG-X image path scores through the projector as it runs, LoRA included: a LoRA-wrapped
projector and its merged equivalent keep the same patches, and the score is the exact ⟨P(f), ê⟩ of
the adapted projector; `load_shirgx_base` round-trips a saved VLM."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.models.shirgx_vlm import ShirgXImageConfig, ShirgXImagePath, load_shirgx_base
from spatialvlm.models.tiny import tiny_llava_onevision_config
from spatialvlm.selection import ShirgXConfig, ShirgXSelector, minmax_normalise

GRID = 16


@pytest.fixture(scope="module")
def lora_and_merged():
    torch.manual_seed(0)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    lora = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=r"model\.multi_modal_projector\.(linear_1|linear_2)"),
    )
    with torch.no_grad():  # a trained-looking adapter: B starts at zero, give it a large update
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 2.0)
    inner = lora.get_base_model()
    merged = copy.deepcopy(lora).merge_and_unload()
    return base, inner, merged


def _selection(model, hidden_states, question):
    selector = ShirgXSelector(ShirgXConfig(vision_dim=32, grid=(GRID, GRID), budgets=(32, 48), default_budget=32))
    path = ShirgXImagePath(model, selector.eval(), ShirgXImageConfig(image_size=GRID * 14))
    with torch.no_grad():
        return path.select_and_project(hidden_states, question, budget=32)


def test_lora_and_merged_projectors_keep_the_same_patches_with_the_adapted_exact_score(lora_and_merged):
    base, inner, merged = lora_and_merged
    torch.manual_seed(1)
    layers = inner.config.vision_feature_layer
    hidden_states = tuple(torch.randn(2, GRID * GRID, 32) for _ in range(abs(layers) + 1))
    question = torch.randn(2, 5, inner.config.text_config.hidden_size)
    lora_out = _selection(inner, hidden_states, question)
    merged_out = _selection(merged, hidden_states, question)
    assert torch.equal(lora_out.selection.source_index, merged_out.selection.source_index)
    torch.testing.assert_close(lora_out.tokens, merged_out.tokens, rtol=1e-4, atol=1e-5)
    # Sim is the exact score of the merged (adapted) projector, by hand: Linear, GELU, Linear.
    projector = merged.model.multi_modal_projector
    with torch.no_grad():
        hidden = torch.nn.functional.gelu(hidden_states[layers] @ projector.linear_1.weight.T + projector.linear_1.bias)
        projected = hidden @ projector.linear_2.weight.T + projector.linear_2.bias
        exact = (projected @ torch.nn.functional.normalize(question, dim=-1).transpose(1, 2)).amax(-1)
    selector_config = ShirgXConfig()
    torch.testing.assert_close(
        lora_out.selection.patch_scores,
        selector_config.relevance_weight * minmax_normalise(exact)
        - selector_config.centre_weight * _centre(GRID),
        rtol=1e-4, atol=1e-5,
    )
    # The base projector without the adapter (what a stale-weight shortcut would score) ranks differently.
    base_out = _selection(base, hidden_states, question)
    assert not torch.equal(base_out.selection.source_index, merged_out.selection.source_index)


def _centre(grid):
    from spatialvlm.selection import centre_distance, grid_coords

    return centre_distance(grid_coords((grid, grid)))


def test_load_shirgx_base_round_trips(tmp_path):
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config())
    model.save_pretrained(tmp_path)
    loaded = load_shirgx_base(tmp_path, dtype=torch.float32)
    assert type(loaded) is type(model)
    for (name, ours), (_, theirs) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(ours, theirs, msg=name)
