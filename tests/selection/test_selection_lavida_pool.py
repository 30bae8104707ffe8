"""LaViDa's anyres token layout (pooling after the projector, unpad, newlines) against a literal
transcription of jacklishufan/LaViDa ``llava_arch.py`` and hand token counts."""

import math

import torch
import torch.nn.functional as F

from spatialvlm.models.lavida_image import LAVIDA_GRID_PINPOINTS, select_best_resolution
from spatialvlm.selection import lavida_anyres_layout, lavida_pool_view, unpad_grid


def _lavida_get_2dpool(image_feature, stride=2):
    """``get_2dPool`` with mm_spatial_pool_mode='bilinear', as in the original."""
    height = width = int(math.sqrt(image_feature.shape[1]))
    num_frames, num_tokens, num_dim = image_feature.shape
    image_feature = image_feature.view(num_frames, height, width, -1).permute(0, 3, 1, 2).contiguous()
    scaled_shape = [math.ceil(height / stride), math.ceil(width / stride)]
    image_feature = F.interpolate(image_feature, size=scaled_shape, mode="bilinear")
    return image_feature.permute(0, 2, 3, 1).view(num_frames, -1, num_dim)


def _lavida_unpad(tensor, original_size):
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return tensor[:, padding : current_height - padding, :]
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding : current_width - padding]


def _lavida_spatial_unpad(image_feature, grid_shape, image_size, newline):
    """The anyres + spatial_unpad branch of ``prepare_inputs_labels_for_multimodal``."""
    base_image_feature, image_feature = image_feature[0], image_feature[1:]
    height = width = int(math.sqrt(base_image_feature.shape[0]))
    num_patch_width, num_patch_height = grid_shape
    image_feature = image_feature.view(num_patch_height, num_patch_width, height, width, -1)
    image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)
    image_feature = _lavida_unpad(image_feature, image_size)
    image_feature = torch.cat((image_feature, newline[:, None, None].expand(*image_feature.shape[:-1], 1)), dim=-1)
    image_feature = image_feature.flatten(1, 2).transpose(0, 1)
    return torch.cat((base_image_feature, image_feature), dim=0)


def test_pooling_and_layout_match_the_original_code():
    torch.manual_seed(0)
    newline = torch.randn(6)
    for image_size in ((800, 800), (1000, 500), (300, 900), (640, 480)):
        best = select_best_resolution(image_size, LAVIDA_GRID_PINPOINTS)
        grid = (best[0] // 384, best[1] // 384)
        projected = torch.randn(1 + grid[0] * grid[1], 729, 6)
        pooled = lavida_pool_view(projected)
        torch.testing.assert_close(pooled, _lavida_get_2dpool(projected))
        ours = lavida_anyres_layout(pooled, grid, image_size, newline)
        torch.testing.assert_close(ours, _lavida_spatial_unpad(pooled, grid, image_size, newline))


def test_token_counts_by_hand():
    # 27×27 → bilinear to 14×14 = 196 per view. Square image, 768² pinpoint: 196 + 28 rows × (28 + 1).
    assert select_best_resolution((800, 800), LAVIDA_GRID_PINPOINTS) == (768, 768)
    pooled = lavida_pool_view(torch.zeros(5, 729, 4))
    assert pooled.shape == (5, 196, 4)
    assert lavida_anyres_layout(pooled, (2, 2), (800, 800), torch.zeros(4)).shape[0] == 196 + 28 * 29 == 1008
    # 1000×500: the 768×384 pinpoint wastes nothing (2 tiles across): 196 + 14 × 29 = 602.
    assert select_best_resolution((1000, 500), LAVIDA_GRID_PINPOINTS) == (768, 384)
    pooled = lavida_pool_view(torch.zeros(3, 729, 4))
    assert lavida_anyres_layout(pooled, (2, 1), (1000, 500), torch.zeros(4)).shape[0] == 602
    # 640×480 on 768²: the 28×28 map holds int(480 · 28/640) = 21 image rows; LaViDa cuts (28 − 21) // 2 = 3
    # rows off each side, keeping 22 → 196 + 22 × 29.
    pooled = lavida_pool_view(torch.zeros(5, 729, 4))
    assert lavida_anyres_layout(pooled, (2, 2), (640, 480), torch.zeros(4)).shape[0] == 196 + 22 * 29
    assert unpad_grid(torch.zeros(1, 28, 28), (640, 480)).shape == (1, 22, 28)
    # average pooling (the other mode) floors: 13×13.
    assert lavida_pool_view(torch.zeros(1, 729, 4), mode="average").shape == (1, 169, 4)
