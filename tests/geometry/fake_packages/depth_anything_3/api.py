"""FAKE depth_anything_3.api (test stand-in): ``DepthAnything3.from_pretrained(path)``,
``.to(device)``, ``.eval()``, ``inference(image: list[np.ndarray | PIL | str], ...)`` returning a
``Prediction`` (specs.py fields: depth (N, H, W), is_metric, conf, extrinsics (N, 3, 4)
world-to-camera, intrinsics (N, 3, 3), processed_images) as ByteDance-Seed/Depth-Anything-3."""

from dataclasses import dataclass

import numpy as np
import torch

import fake_scene


@dataclass
class Prediction:
    depth: np.ndarray
    is_metric: int
    sky: np.ndarray = None
    conf: np.ndarray = None
    extrinsics: np.ndarray = None
    intrinsics: np.ndarray = None
    processed_images: np.ndarray = None


class DepthAnything3(torch.nn.Module):
    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()

    def inference(self, image, extrinsics=None, intrinsics=None, process_res=504, **kwargs):
        images = torch.stack([torch.from_numpy(np.asarray(i, np.float32) / 255).permute(2, 0, 1) for i in image])
        n, _, h, w = images.shape
        w2c = torch.linalg.inv(fake_scene.camera_to_world(n))[:, :3, :]
        return Prediction(depth=fake_scene.camera_points(images)[..., 2].numpy(), is_metric=1,
                          conf=np.ones((n, h, w), np.float32), extrinsics=w2c.numpy(),
                          intrinsics=fake_scene.intrinsics(n, h, w).numpy(), processed_images=np.asarray(image))
