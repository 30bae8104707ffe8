"""Shared builders for the SHIRG-X training tests: a tiny LLaVA-OneVision checkpoint, PIL images
and an image QA jsonl, all made on the spot (no download).

Tiny stand-in for 672 px / 48×48 / 144 scaffold / K ∈ {512, 768, 1024}: 224 px / 16×16 / 16 / {32, 48, 64}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.models.tiny import build_tiny_tokenizer, tiny_llava_onevision_config
from train_fixtures import QUICK_RUN_FLAGS

IMAGE_SIZE, GRID, SCAFFOLD, BUDGETS = 224, 16, 16, (32, 48, 64)


def save_tiny_llava(directory: Path, seed: int = 0) -> Path:
    """A tiny LLaVA-OneVision checkpoint directory (weights, config, tokenizer)."""
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).save_pretrained(directory)
    build_tiny_tokenizer().save_pretrained(directory)
    return directory


def write_image_qa(root: Path, num_samples: int = 4, seed: int = 0, side: int = 96) -> Path:
    """``root/train.jsonl`` (rows id, image, question, answers, as the synthetic image suite writes
    them) and ``root/images/*.png``: each image a flat colour with a bright square at its own place,
    and its own numeric answer, so the mapping can be learnt (overfit test)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_samples):
        pixels = np.broadcast_to(rng.integers(0, 256, size=3), (side, side, 3)).copy()
        row, col = rng.integers(0, side - 24, size=2)
        pixels[row : row + 24, col : col + 24] = 255
        Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / f"img{index}.png")
        rows.append({
            "id": f"img{index}",
            "dataset": "shirgx-images",
            "image": f"images/img{index}.png",
            "question_type": "count",
            "question": "How many chairs are in the image?",
            "answers": [str(index + 2)],
            "metric": "exact_match",
        })
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def shirgx_flags(base: Path, data: Path, output: Path, **overrides: str) -> list[str]:
    """``spatialvlm train --task shirgx`` flags for a quick CPU run; ``overrides`` replace or add flags."""
    flags = {
        "task": "shirgx",
        "model_name_or_path": str(base),
        "data_path": str(data),
        "output_dir": str(output),
        "image_size": str(IMAGE_SIZE),
        "budgets": ",".join(map(str, BUDGETS)),
        "question_post_prompt": "",
        "model_max_length": "512",
        **QUICK_RUN_FLAGS,
    }
    flags.update(overrides)
    return [token for name, value in flags.items() for token in (f"--{name}", value)]
