"""SigLIP dual-scale extraction with a tiny random SigLIP built from a config (no download)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from spatialvlm.data.preprocess import siglip_preprocess
from spatialvlm.models.siglip import SiglipDualScaleExtractor, question_to_vision_space, so400m_vision_config
from spatialvlm.selection import ShirgXConfig, ShirgXSelector


@pytest.fixture(scope="module")
def vision_model():
    torch.manual_seed(0)
    config = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=56, patch_size=14
    )
    return SiglipVisionModel(config).eval()


def test_extracts_penultimate_layer_at_high_resolution_with_all_layers(vision_model):
    extractor = SiglipDualScaleExtractor(vision_model, image_size=112, score_layer=-1)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    with torch.no_grad():
        features = extractor.extract(image)
        reference = vision_model(
            siglip_preprocess(image, 112), interpolate_pos_encoding=True, output_hidden_states=True
        ).hidden_states
    assert len(reference) == 3 + 1  # embeddings + every layer: none was removed
    assert features.grid == (8, 8) and features.projector_tokens.shape == (1, 64, 32)
    torch.testing.assert_close(features.projector_tokens, reference[-2])
    torch.testing.assert_close(features.score_tokens, reference[-1])
    assert not torch.allclose(features.projector_tokens, features.score_tokens)


def test_feeds_the_selector_and_maps_questions_through_a_projector(vision_model):
    extractor = SiglipDualScaleExtractor(vision_model, image_size=224)
    with torch.no_grad():
        features = extractor(torch.randn(2, 3, 224, 224))
    projector = nn.Sequential(nn.Linear(32, 40), nn.GELU(), nn.Linear(40, 24))
    question = question_to_vision_space(projector)(torch.randn(2, 5, 24))
    assert question.shape == (2, 5, 32)
    selector = ShirgXSelector(ShirgXConfig(vision_dim=32, grid=features.grid, budgets=(64, 96, 128), default_budget=96))
    out = selector(features.projector_tokens, question, budget=64)
    assert out.tokens.shape == (2, 64 + 16, 32)


def test_bad_arguments(vision_model):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        SiglipDualScaleExtractor(vision_model, image_size=100)
    with pytest.raises(ValueError, match="projector_layer=7"):
        SiglipDualScaleExtractor(vision_model, projector_layer=7)
    with pytest.raises(ValueError, match=r"pixel_values must be \(B, 3, 112, 112\)"):
        SiglipDualScaleExtractor(vision_model, image_size=112)(torch.zeros(1, 3, 56, 56))
    assert so400m_vision_config().hidden_size == 1152
