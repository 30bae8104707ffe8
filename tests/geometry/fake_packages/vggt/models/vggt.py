"""FAKE vggt.models.vggt (a test stand-in, not VGGT).

Mimics facebookresearch/vggt ``vggt/models/vggt.py``: ``VGGT(img_size=518, patch_size=14,
embed_dim=1024)``, ``VGGT.from_pretrained(path)`` (PyTorchModelHubMixin), ``model.aggregator``
returning ``(aggregated_tokens_list, patch_start_idx)`` with tokens (B, S, P, 2·embed_dim) and
patch_start_idx = 5, and ``forward(images)`` (S, 3, H, W) or (B, S, 3, H, W) in [0, 1] returning
``pose_enc`` (B, S, 9), ``depth`` (B, S, H, W, 1), ``depth_conf``, ``world_points``,
``world_points_conf``, ``images``.

The fake scene: camera i sits at x = 0.1·i looking down +z (identity rotation), focal 0.6·W, and
sees a wall at depth 1 + mean brightness of its image, so a test can tell which frame it got.
"""

import os

import torch
from torch import nn


class Aggregator(nn.Module):
    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim

    def forward(self, images):
        batch, frames, _, height, width = images.shape
        patches = (height // self.patch_size) * (width // self.patch_size)
        brightness = images.mean(dim=(2, 3, 4))  # (B, S)
        tokens = brightness[..., None, None].expand(batch, frames, 5 + patches, 2 * self.embed_dim).clone()
        tokens[:, :, 0] = -1.0  # the camera token, told apart from the patch tokens
        return [tokens * 0.5, tokens], 5


class VGGT(nn.Module):
    def __init__(self, img_size=518, patch_size=14, embed_dim=12):
        super().__init__()
        self.aggregator = Aggregator(patch_size, embed_dim)
        self.scale = nn.Parameter(torch.ones(()))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        log = os.environ.get("FAKE_VGGT_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(f"load {pretrained_model_name_or_path}\n")
        return cls()

    def forward(self, images, query_points=None):
        if len(images.shape) == 4:
            images = images.unsqueeze(0)
        batch, frames, _, height, width = images.shape
        self.aggregator(images)
        depth_value = 1.0 + images.mean(dim=(2, 3, 4))  # (B, S)
        focal = 0.6 * width
        fov_h = 2 * torch.atan(torch.tensor((height / 2) / focal))
        fov_w = 2 * torch.atan(torch.tensor((width / 2) / focal))
        pose_enc = torch.zeros(batch, frames, 9)
        pose_enc[..., 0] = -0.1 * torch.arange(frames)  # world-to-camera t = −R·c, camera centre (0.1·i, 0, 0)
        pose_enc[..., 6] = 1.0  # quaternion XYZW identity
        pose_enc[..., 7], pose_enc[..., 8] = fov_h, fov_w
        depth = depth_value[..., None, None, None].expand(batch, frames, height, width, 1).clone()
        v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        z = depth[..., 0]
        x = (u - width / 2) / focal * z + 0.1 * torch.arange(frames)[None, :, None, None]
        y = (v - height / 2) / focal * z
        return {
            "pose_enc": pose_enc,
            "pose_enc_list": [pose_enc],
            "depth": depth,
            "depth_conf": torch.full((batch, frames, height, width), 2.0),
            "world_points": torch.stack([x, y, z], -1),
            "world_points_conf": torch.full((batch, frames, height, width), 3.0),
            "images": images,
        }
