"""FAKE pi3.models.pi3x (test stand-in): ``Pi3X.from_pretrained(path)``, ``forward(imgs, ...)`` with
imgs (B, N, 3, H, W) in [0, 1], returning dict(points, local_points, rays, conf (logits, B N H W 1),
camera_poses (c2w), metric (B,)) as yyfz/Pi3 ``pi3x.py`` does (metric already multiplied in)."""

import torch
from torch import nn

import fake_scene


class Pi3X(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()

    def forward(self, imgs, with_prior=True, depths=None, intrinsics=None, poses=None, rays=None, **kwargs):
        b, n, _, h, w = imgs.shape
        metric = torch.full((b,), 2.0)
        local = fake_scene.camera_points(imgs[0])[None] * 2.0
        poses_ = fake_scene.camera_to_world(n)[None].clone()
        poses_[..., :3, 3] *= 2.0
        points = fake_scene.world_points(imgs[0])[None] * 2.0
        return dict(points=points, local_points=local, rays=torch.zeros_like(local),
                    conf=torch.zeros(b, n, h, w, 1), camera_poses=poses_, metric=metric)
