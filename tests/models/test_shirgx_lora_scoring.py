"""The SHIRG-X image path scores with the projector's effective weights: a LoRA-wrapped projector and
its merged equivalent keep the same patches; `load_shirgx_base` round-trips a saved VLM."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.models.shirgx_vlm import ShirgXImageConfig, ShirgXImagePath, effective_linear_weight, load_shirgx_base
from spatialvlm.models.tiny import tiny_llava_onevision_config
from spatialvlm.selection import ShirgXConfig, ShirgXSelector
from spatialvlm.selection.text_space import pull_back_text_embeds

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


def test_effective_weight_is_the_merged_weight(lora_and_merged):
    _, inner, merged = lora_and_merged
    for name in ("linear_1", "linear_2"):
        lora_layer = getattr(inner.model.multi_modal_projector, name)
        merged_weight = getattr(merged.model.multi_modal_projector, name).weight
        torch.testing.assert_close(effective_linear_weight(lora_layer), merged_weight)
        assert not torch.allclose(lora_layer.weight, merged_weight)  # `.weight` alone is the stale base
    plain = merged.model.multi_modal_projector.linear_1
    assert effective_linear_weight(plain) is plain.weight


def test_lora_and_merged_projectors_keep_the_same_patches(lora_and_merged):
    base, inner, merged = lora_and_merged
    torch.manual_seed(1)
    layers = inner.config.vision_feature_layer
    hidden_states = tuple(torch.randn(2, GRID * GRID, 32) for _ in range(abs(layers) + 1))
    question = torch.randn(2, 5, inner.config.text_config.hidden_size)
    lora_out = _selection(inner, hidden_states, question)
    merged_out = _selection(merged, hidden_states, question)
    assert torch.equal(lora_out.selection.source_index, merged_out.selection.source_index)
    torch.testing.assert_close(lora_out.tokens, merged_out.tokens, rtol=1e-4, atol=1e-5)
    # The stale-base-weight scoring (the old behaviour) ranks differently: the check above can fail.
    projector = base.model.multi_modal_projector
    stale_text = pull_back_text_embeds(question, [projector.linear_1.weight, projector.linear_2.weight])
    selector = ShirgXSelector(ShirgXConfig(vision_dim=32, grid=(GRID, GRID), budgets=(32, 48), default_budget=32))
    with torch.no_grad():
        stale = selector(hidden_states[layers], stale_text, 32)
    assert not torch.equal(stale.source_index, merged_out.selection.source_index)


def test_load_shirgx_base_round_trips(tmp_path):
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config())
    model.save_pretrained(tmp_path)
    loaded = load_shirgx_base(tmp_path, dtype=torch.float32)
    assert type(loaded) is type(model)
    for (name, ours), (_, theirs) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(ours, theirs, msg=name)
