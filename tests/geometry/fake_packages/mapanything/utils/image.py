"""FAKE mapanything.utils.image (test stand-in): ``load_images(folder_or_list, ...)`` → list of view
dicts ``{"img": (1, 3, H, W) normalised, "true_shape", "idx", "instance", "data_norm_type": [...]}``
as facebookresearch/map-anything; the fake normalises with mean 0.5, std 0.5."""

import numpy as np
import torch
from PIL import Image


def load_images(folder_or_list, resize_mode="fixed_mapping", size=None, norm_type="dinov2", **kwargs):
    views = []
    for i, path in enumerate(folder_or_list):
        arr = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        img = (torch.from_numpy(arr).permute(2, 0, 1)[None] - 0.5) / 0.5
        views.append({"img": img, "true_shape": np.int32([arr.shape[:2]]), "idx": i, "instance": str(i), "data_norm_type": [norm_type]})
    return views
