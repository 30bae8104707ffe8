"""SigLIP dual-scale extraction, layer attention (VisionZip) and ToMe inside SigLIP, with tiny random
SigLIPs built from configs (no download)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from spatialvlm.data.preprocess import siglip_preprocess
from spatialvlm.models.siglip import SiglipDualScaleExtractor, layer_attention, so400m_vision_config, tome_siglip_forward
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


def test_feeds_the_selector_with_questions_in_the_projector_output_space(vision_model):
    extractor = SiglipDualScaleExtractor(vision_model, image_size=224)
    with torch.no_grad():
        features = extractor(torch.randn(2, 3, 224, 224))
    projector = nn.Sequential(nn.Linear(32, 40), nn.GELU(), nn.Linear(40, 24))
    selector = ShirgXSelector(ShirgXConfig(vision_dim=32, grid=features.grid, budgets=(64, 96, 128), default_budget=96))
    with torch.no_grad():
        out = selector(features.projector_tokens, torch.randn(2, 5, 24), budget=64, projector=projector)
    assert out.tokens.shape == (2, 64 + 16, 24)


def test_layer_attention_is_the_layers_own_softmax(vision_model):
    pixels = torch.randn(1, 3, 112, 112)
    captured = {}

    def keep(module, args, kwargs, output):  # the eager attention's own probabilities
        captured["weights"], captured["keys"] = output[1], module.k_proj(kwargs["hidden_states"])

    vision_model.config._attn_implementation = "eager"
    handle = vision_model.encoder.layers[1].self_attn.register_forward_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            hidden = vision_model(pixels, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    attention = layer_attention(vision_model, hidden, -2)  # hidden_states[-2] is layer 2's output
    torch.testing.assert_close(attention.attention_received, captured["weights"].sum(1).mean(1))
    torch.testing.assert_close(attention.keys, captured["keys"].view(1, 64, 4, 8).mean(2))


def _tome_reference_layer(layer, x, size, r):
    """One ToMe block from the paper: proportional attention, bipartite matching on head-mean keys
    (a Python loop over the A tokens), size-weighted merge, MLP."""
    attention = layer.self_attn
    h = layer.layer_norm1(x[0])
    heads, dim = attention.num_heads, attention.head_dim
    q, k, v = (p(h).view(-1, heads, dim).transpose(0, 1) for p in (attention.q_proj, attention.k_proj, attention.v_proj))
    logits = q @ k.transpose(1, 2) * dim**-0.5 + size.log()[None, None, :]
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, heads * dim)
    x = x[0] + attention.out_proj(out)
    metric = torch.nn.functional.normalize(k.mean(0), dim=-1)
    a, b = list(range(0, len(x), 2)), list(range(1, len(x), 2))
    best = [(float(max(metric[i] @ metric[j] for j in b)), i, b[int(torch.stack([metric[i] @ metric[j] for j in b]).argmax())]) for i in a]
    order = sorted(range(len(a)), key=lambda n: -best[n][0])
    merged_sum = {j: x[j] * size[j] for j in b}
    merged_size = {j: size[j].clone() for j in b}
    for n in order[:r]:
        _, i, j = best[n]
        merged_sum[j] = merged_sum[j] + x[i] * size[i]
        merged_size[j] = merged_size[j] + size[i]
    keep_a = [best[n][1] for n in order[r:]]
    x = torch.stack([x[i] for i in keep_a] + [merged_sum[j] / merged_size[j] for j in b])
    size = torch.stack([size[i] for i in keep_a] + [merged_size[j] for j in b])
    return (x + layer.mlp(layer.layer_norm2(x)))[None], size


def test_tome_inside_siglip_matches_a_direct_reference_and_plain_siglip_without_merging(vision_model):
    torch.manual_seed(4)
    pixels = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        plain = vision_model(pixels, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
        unmerged = tome_siglip_forward(vision_model, pixels, 64, layer=-1, schedule=[0, 0, 0])
        torch.testing.assert_close(unmerged.tokens, plain[-1], rtol=1e-4, atol=1e-5)
        out = tome_siglip_forward(vision_model, pixels, 32, layer=-2)
        assert out.schedule == [16, 16] and out.tokens.shape == (1, 32, 32)
        x = vision_model.embeddings(pixels, interpolate_pos_encoding=True)
        size = torch.ones(64)
        for layer, r in zip(vision_model.encoder.layers[:2], out.schedule):
            x, size = _tome_reference_layer(layer, x, size, r)
    torch.testing.assert_close(out.tokens, x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.sizes[0, :, 0], size)
    # Every patch is in exactly one merged token, and the sizes count them.
    assert torch.equal(out.source.sum(1), torch.ones(1, 64)) and torch.equal(out.source.sum(2), out.sizes[..., 0])


def test_bad_arguments(vision_model):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        SiglipDualScaleExtractor(vision_model, image_size=100)
    with pytest.raises(ValueError, match="projector_layer=7"):
        SiglipDualScaleExtractor(vision_model, projector_layer=7)
    with pytest.raises(ValueError, match=r"pixel_values must be \(B, 3, 112, 112\)"):
        SiglipDualScaleExtractor(vision_model, image_size=112)(torch.zeros(1, 3, 56, 56))
    assert so400m_vision_config().hidden_size == 1152
