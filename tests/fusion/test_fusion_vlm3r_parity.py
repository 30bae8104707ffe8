"""Fusion parity with VLM-3R: with viewpoint alignment off, a camera token joins the keys/values
([camera; patches], ``spatial_tower_select_feature`` "all"), checked against VLM-3R's
CrossAttentionFusion written here from its code and fed as llava_arch.encode_images feeds it."""

import pytest
import torch
from torch import nn
from vlm3r_reference import VLM3RCrossAttentionFusion

from spatialvlm.fusion import SpatialFusion, SpatialFusionConfig

DIM, WIDTH, HEADS = 36, 24, 18  # VLM-3R: 1152 / 768 / 18 heads; here the same head count, small widths


def _vlm3r_block(seed=0):
    torch.manual_seed(seed)
    block = VLM3RCrossAttentionFusion(DIM, WIDTH, HEADS)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return block


def _ours(block, **overrides):
    config = SpatialFusionConfig(
        dim=DIM, geometry_dim=WIDTH, view_dim=WIDTH, num_heads=HEADS, use_coordinate_injection=False,
        use_viewpoint_alignment=False, use_point_tokens=False, **overrides,
    )
    fusion = SpatialFusion(config)
    fusion.geometry_fusion.load_state_dict(block.state_dict())  # same parameter names as VLM-3R's
    assert sorted(name for name, _ in fusion.named_parameters()) == sorted(f"geometry_fusion.{n}" for n, _ in block.named_parameters())
    return fusion


def _frames(seed=1, frames=3, patches=27):
    gen = torch.Generator().manual_seed(seed)
    visual = torch.randn(frames, patches, DIM, generator=gen)
    camera = torch.randn(frames, 1, WIDTH, generator=gen)  # extract_spatial_features: (F, 1, 768)
    patch_tokens = torch.randn(frames, patches, WIDTH, generator=gen)  # (F, 729, 768)
    return visual, camera, patch_tokens


@pytest.mark.parametrize("train", [False, True])
def test_all_tokens_fusion_reproduces_vlm3r(train):
    block = _vlm3r_block()
    ours = _ours(block)
    block.train(train), ours.train(train)
    visual, camera, patch_tokens = _frames()
    torch.manual_seed(7)
    reference = block(visual, torch.cat([camera, patch_tokens], dim=1))  # 1 + 27 keys
    torch.manual_seed(7)
    fused = ours(visual, geometry_tokens=patch_tokens, camera_token=camera[:, 0], return_dict=True)
    assert fused.geometry_tokens.shape[1] == 28
    assert (fused.tokens - reference).abs().max() < 1e-5
    # the camera token matters: VLM-3R's patch-tokens-only fusion is a different output
    assert (block.eval()(visual, patch_tokens) - block(visual, torch.cat([camera, patch_tokens], 1))).abs().max() > 1e-3


def test_patch_tokens_only_and_unused_camera_is_reported():
    block = _vlm3r_block(2).eval()
    ours = _ours(block, camera_token_as_key=False).eval()
    visual, camera, patch_tokens = _frames(3)
    with pytest.warns(UserWarning, match="camera tokens were given"):
        fused = ours(visual, geometry_tokens=patch_tokens, camera_token=camera[:, 0])
    assert (fused - block(visual, patch_tokens)).abs().max() < 1e-5


def test_camera_as_key_needs_equal_widths():
    with pytest.raises(ValueError, match="view_dim == geometry_dim"):
        SpatialFusionConfig(dim=DIM, geometry_dim=WIDTH, view_dim=16, num_heads=HEADS, camera_token_as_key=True)
    assert SpatialFusionConfig(dim=DIM, geometry_dim=WIDTH, view_dim=16, num_heads=HEADS).camera_token_as_key is False
    assert SpatialFusionConfig(dim=DIM, geometry_dim=WIDTH, view_dim=WIDTH, num_heads=HEADS).camera_token_as_key is True
