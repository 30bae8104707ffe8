"""FAKE vggt.utils.load_fn (a test stand-in): ``load_and_preprocess_images(image_path_list,
mode="crop")`` as in facebookresearch/vggt — RGB, width 518, height scaled and rounded to a
multiple of 14 (bicubic), centre-cropped to 518 if taller, stacked (N, 3, H, W) in [0, 1]."""

import numpy as np
import torch
from PIL import Image


def load_and_preprocess_images(image_path_list, mode="crop"):
    if len(image_path_list) == 0:
        raise ValueError("At least 1 image is required")
    target = 518
    images = []
    for path in image_path_list:
        img = Image.open(path).convert("RGB")
        width, height = img.size
        new_width = target
        new_height = round(height * (new_width / width) / 14) * 14
        img = img.resize((new_width, new_height), Image.Resampling.BICUBIC)
        tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        if new_height > target:
            start = (new_height - target) // 2
            tensor = tensor[:, start : start + target, :]
        images.append(tensor)
    return torch.stack(images)
