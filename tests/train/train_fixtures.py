"""Shared builders for the training tests: a tiny VLM² checkpoint, mp4s, geometry folders, JSON.

Everything is made on the spot (no download): a tiny SigLIP + Qwen2 from config, random-texture
videos written with PyAV, per-frame geometry files, LLaVA-format conversations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from spatialvlm.data.video import write_video
from spatialvlm.geometry import FrameGeometry, frame_filename, save_frame_geometry
from spatialvlm.models.tiny import build_tiny_processor
from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration, tiny_vlm2_config

# Tiny frames are 56×56 (a 4×4 SigLIP grid); geometry widths follow tiny_vlm2_config.
SIDE = 56
GEOMETRY_DIM, VIEW_DIM, GEOMETRY_TOKENS = 24, 16, 16


def save_tiny_base(directory: Path, seed: int = 0, **flags) -> Path:
    """A base checkpoint directory (weights, config, tokenizer, processor config).

    ``flags`` are VLM² config flags; the default is a plain LLaVA-OneVision-equivalent model
    (no fusion, no memory), so training on it adds the VLM² modules fresh.
    """
    flags = {"use_spatial_fusion": False, "use_dual_memory": False, **flags}
    torch.manual_seed(seed)
    config = tiny_vlm2_config(**flags)
    VLM2ForConditionalGeneration(config).save_pretrained(directory)
    build_tiny_processor(config).save_pretrained(directory)
    return directory


def write_geometry(directory: Path, num_frames: int, rng: np.random.Generator) -> Path:
    """Per-frame geometry files: point map, geometry tokens, camera token, pose."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(num_frames):
        pose = torch.eye(4)
        pose[:3, 3] = torch.tensor([0.1 * index, 0.0, 0.0])
        save_frame_geometry(
            directory / frame_filename(index),
            FrameGeometry(
                points=torch.from_numpy(rng.normal(size=(8, 8, 3)).astype(np.float32)),
                geometry_tokens=torch.from_numpy(rng.normal(size=(GEOMETRY_TOKENS, GEOMETRY_DIM)).astype(np.float32)),
                camera_token=torch.from_numpy(rng.normal(size=(VIEW_DIM,)).astype(np.float32)),
                pose=pose,
            ),
        )
    return directory


def write_dataset(
    root: Path,
    num_samples: int = 4,
    num_frames: int = 8,
    with_geometry: bool = True,
    seed: int = 0,
    frame_counts: list[int] | None = None,
) -> Path:
    """mp4s (+ geometry folders) and a LLaVA-format JSON asking one question per video.

    Each video has a different flat colour per sample (plus mild noise), and the answer is a
    different number per sample, so a model can learn the mapping (overfit test).
    """
    rng = np.random.default_rng(seed)
    records = []
    for index in range(num_samples):
        count = frame_counts[index] if frame_counts else num_frames
        colour = rng.integers(0, 256, size=3)
        frames = np.clip(colour + rng.normal(0, 8, size=(count, SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
        write_video(root / "videos" / f"scene{index}.mp4", frames)
        record = {
            "id": f"scene{index}_q0",
            "video": f"videos/scene{index}.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nHow many chairs are in the room?"},
                {"from": "gpt", "value": str(index + 2)},
            ],
        }
        if with_geometry:
            write_geometry(root / "geometry" / f"scene{index}", count, rng)
            record["geometry"] = f"geometry/scene{index}"
        records.append(record)
    path = root / "data.json"
    path.write_text(json.dumps(records, indent=1))
    return path


# TrainingArguments of a quick, quiet, deterministic CPU run, shared by every task's test flags.
QUICK_RUN_FLAGS: dict[str, str] = {
    "per_device_train_batch_size": "2",
    "max_steps": "4",
    "logging_steps": "1",
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": "True",
    "dataloader_num_workers": "0",
    "disable_tqdm": "True",
    "seed": "0",
}


def trainer_flags(base: Path, data: Path, output: Path, **overrides: str) -> list[str]:
    """``spatialvlm train`` flags for a quick CPU run; ``overrides`` replace or add flags."""
    flags = {
        "model_name_or_path": str(base),
        "data_path": str(data),
        "output_dir": str(output),
        "num_frames": "4",
        "memory_num_heads": "2",
        "learning_rate": "1e-3",
        **QUICK_RUN_FLAGS,
    }
    flags.update(overrides)
    return [token for name, value in flags.items() for token in (f"--{name}", value)]
