"""FAKE src.dust3r.utils.image of a CUT3R clone (test stand-in): ``load_images(folder_or_list, size,
square_ok=False, verbose=True)`` → list of ``{"img": (1, 3, H, W) in [−1, 1], "true_shape":
np.int32([[H, W]]), "idx", "instance"}``; the fake keeps the image size."""

import numpy as np
import torch
from PIL import Image


def load_images(folder_or_list, size, square_ok=False, verbose=True):
    images = []
    for i, path in enumerate(folder_or_list):
        arr = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        img = torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1
        images.append({"img": img, "true_shape": np.int32([arr.shape[:2]]), "idx": i, "instance": str(i)})
    return images
