"""FAKE mapanything.models (test stand-in): ``MapAnything.from_pretrained(path)``,
``infer(views, memory_efficient_inference=True, use_amp=True, amp_dtype="bf16", apply_mask=True,
mask_edges=True, ...)`` → one dict per view with batch 1: pts3d, pts3d_cam, depth_z (B H W 1),
intrinsics, camera_poses (c2w), conf, mask (B H W 1), metric_scaling_factor (README keys)."""

import torch

import fake_scene


class MapAnything(torch.nn.Module):
    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()

    def infer(self, views, memory_efficient_inference=True, minibatch_size=None, use_amp=True, amp_dtype="bf16",
              apply_mask=True, mask_edges=True, **kwargs):
        images = torch.cat([v["img"] * 0.5 + 0.5 for v in views])
        n, _, h, w = images.shape
        cam, world = fake_scene.camera_points(images), fake_scene.world_points(images)
        poses, k = fake_scene.camera_to_world(n), fake_scene.intrinsics(n, h, w)
        return [
            {"pts3d": world[i:i + 1], "pts3d_cam": cam[i:i + 1], "depth_z": cam[i:i + 1, ..., 2:], "intrinsics": k[i:i + 1],
             "camera_poses": poses[i:i + 1], "conf": torch.ones(1, h, w), "mask": torch.ones(1, h, w, 1, dtype=torch.bool),
             "metric_scaling_factor": torch.ones(1)}
            for i in range(n)
        ]
