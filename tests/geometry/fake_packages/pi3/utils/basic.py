"""FAKE pi3.utils.basic (test stand-in): ``load_images_as_tensor(path, interval=1,
PIXEL_LIMIT=255000, verbose=True)`` as in yyfz/Pi3 — sorted .png/.jpg of a folder, every
``interval``-th, resized to a multiple of 14 under the pixel limit, (N, 3, H, W) in [0, 1]."""

import math
import os

import numpy as np
import torch
from PIL import Image


def load_images_as_tensor(path="data/truck", interval=1, PIXEL_LIMIT=255000, verbose=True):
    names = sorted(x for x in os.listdir(path) if x.lower().endswith((".png", ".jpg", ".jpeg")))[::interval]
    sources = [Image.open(os.path.join(path, n)).convert("RGB") for n in names]
    if not sources:
        return torch.empty(0)
    w, h = sources[0].size
    scale = math.sqrt(PIXEL_LIMIT / (w * h)) if w * h > 0 else 1
    w_target, h_target = w * scale, h * scale
    k, m = round(w_target / 14), round(h_target / 14)
    while (k * 14) * (m * 14) > PIXEL_LIMIT:
        if k / m > w_target / h_target:
            k -= 1
        else:
            m -= 1
    size = (max(1, k) * 14, max(1, m) * 14)
    tensors = [torch.from_numpy(np.asarray(img.resize(size, Image.Resampling.LANCZOS), np.float32) / 255).permute(2, 0, 1) for img in sources]
    return torch.stack(tensors)
