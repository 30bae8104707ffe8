"""Linear probes: is the information a numerical question needs present in what the model gets?

    python -m spatialvlm.experiments.vlm2_probe --data BENCH --base checkpoints/vlm2-base-synthetic

Per scene, three feature sets of what the VLM² rows receive, each pooled over the clip:

- ``vision``: the base's frozen SigLIP features (the vision row's input), mean and max over frames
  of the per-frame patch mean;
- ``metric``: statistics (mean, std, 5th / 50th / 95th percentile per axis) of the patch-pooled
  point map in the first camera's frame, metres (``coordinate_normalization="metric"``);
- ``per-video``: the same after per-video normalisation (median centre, median spread).

With ``--models NAME=DIR,...`` (trained ablation rows), one more set per model: the video tokens
its language model receives (``get_video_features``: after fusion, memory, projector and pooling),
mean and max over the clip's tokens. A set that carries an answer while the row's own answer is a
constant shows the loss in the language model's read-out, not in the inputs.

A ridge regression (standardised features, λ = 1) fitted on training scenes predicts the room's
floor area and the counted category's count of held-out scenes; scores are official MRA. A feature
set that predicts an answer linearly carries it; a trained row that does worse lost it on the way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["scene_features", "lm_input_features", "ridge_probe", "parse_named_paths", "main"]


def _patch_points(geometry_dir: Path, frames: Sequence[int], side: int, patch: int) -> np.ndarray:
    """(T, P, 3) patch means of the stored point maps (first camera's frame)."""
    from ..geometry import frame_filename, load_frame_geometry, unproject_depth

    pooled = []
    for index in frames:
        frame = load_frame_geometry(geometry_dir / frame_filename(int(index)))
        points = frame.points
        if points is None:
            points = unproject_depth(frame.depth[None], frame.intrinsics, frame.pose[None])[0][0]
        grid = points.numpy().reshape(side // patch, patch, side // patch, patch, 3).mean(axis=(1, 3))
        pooled.append(grid.reshape(-1, 3))
    return np.stack(pooled)


def _statistics(coords: np.ndarray) -> np.ndarray:
    flat = coords.reshape(-1, 3)
    return np.concatenate([flat.mean(0), flat.std(0), *np.percentile(flat, [5, 50, 95], axis=0)])


def scene_features(model, processor, video: Path, geometry_dir: Path, num_frames: int) -> dict[str, np.ndarray]:
    """The three feature vectors of one scene (see the module docstring)."""
    import torch

    from ..data.video import read_video

    clip = read_video(video, num_frames)
    with torch.no_grad():
        pixels = processor.preprocess_frames(clip.frames)
        features = model.model.encode_frames_vision(
            pixels, model.config.vision_feature_layer, model.config.vision_feature_select_strategy
        ).mean(1).numpy()  # (T, C)
    side = clip.frames.shape[1]
    coords = _patch_points(geometry_dir, clip.indices, side, model.config.vision_config.patch_size)
    centre = np.median(coords.reshape(-1, 3), 0)
    spread = np.median(np.linalg.norm(coords.reshape(-1, 3) - centre, axis=-1)) + 1e-6
    return {
        "vision": np.concatenate([features.mean(0), features.max(0)]),
        "metric": _statistics(coords),
        "per-video": _statistics((coords - centre) / spread),
    }


def lm_input_features(model, processor, video: Path, geometry_dir: Path, num_frames: int) -> np.ndarray:
    """Mean and max over the clip of the video tokens ``model``'s language model receives, (2·Dt,)."""
    import torch

    from ..data.video import read_video
    from ..models import load_video_geometry

    clip = read_video(video, num_frames)
    geometry = None
    if model.config.needs_geometry:
        geometry = load_video_geometry(geometry_dir, clip.indices, coordinate_normalization=processor.coordinate_normalization)
    batch = processor(processor.video_token, videos=clip.frames, geometry=geometry)
    inputs = {name: value for name, value in batch.items() if name not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        tokens = model.model.get_video_features(**inputs).pooler_output[0].float().numpy()  # (S, Dt)
    return np.concatenate([tokens.mean(0), tokens.max(0)])


def parse_named_paths(text: str) -> dict[str, str]:
    """``"a=DIR,b=DIR2"`` → ``{"a": "DIR", "b": "DIR2"}`` (the ``--models`` flag of the probes)."""
    named = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, path = entry.partition("=")
        if not name or not path:
            raise ValueError(f"--models entries are NAME=DIR; got {entry!r}")
        named[name] = path
    return named


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Ridge regression on standardised features (intercept unpenalised); predictions for ``test_x``."""
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-8
    a, b = (train_x - mean) / scale, (test_x - mean) / scale
    a = np.concatenate([a, np.ones((len(a), 1))], 1)
    b = np.concatenate([b, np.ones((len(b), 1))], 1)
    penalty = strength * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ train_y)
    return b @ weights


def _targets(data: Path, split: str, scenes: int) -> dict[str, dict[str, float]]:
    from ..data.readers import read_benchmark

    targets: dict[str, dict[str, float]] = {}
    for item in read_benchmark(data, split, ("room_size_estimation", "object_counting")):
        targets.setdefault(item.scene_name, {})[item.question_type] = float(item.ground_truth)
    names = sorted(targets)[:scenes]
    return {name: targets[name] for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..eval.metrics import mean_relative_accuracy
    from ..models import load_vlm2

    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="benchmark directory with train and test splits")
    parser.add_argument("--base", required=True, help="the base checkpoint whose vision tower is probed")
    parser.add_argument("--train-scenes", type=int, default=120)
    parser.add_argument("--test-scenes", type=int, default=100)
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--models", default="", help="NAME=DIR,...: trained rows whose LM inputs are probed too")
    parser.add_argument("--out", help="write the scores as json here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = Path(args.data)
    model, processor = load_vlm2(args.base)
    try:
        named = parse_named_paths(args.models)
    except ValueError as error:
        parser.error(str(error))
    trained = {name: load_vlm2(directory) for name, directory in named.items()}
    table: dict[str, dict[str, list]] = {}
    for split, count in (("train", args.train_scenes), ("test", args.test_scenes)):
        targets = _targets(data, split, count)
        rows = []
        for name in tqdm(targets, desc=f"probe features {split}"):
            video, geometry_dir = data / "synthetic" / f"{name}.mp4", data / "synthetic" / f"{name}_geometry"
            feats = scene_features(model, processor, video, geometry_dir, args.num_frames)
            for label, (row_model, row_processor) in trained.items():
                feats[f"LM input: {label}"] = lm_input_features(row_model, row_processor, video, geometry_dir, args.num_frames)
            rows.append((name, feats, targets[name]))
        table[split] = rows
    results: dict[str, dict[str, float]] = {}
    sets = {"vision": ["vision"], "metric": ["metric"], "per-video": ["per-video"],
            "vision + metric": ["vision", "metric"], "vision + per-video": ["vision", "per-video"],
            **{f"LM input: {label}": [f"LM input: {label}"] for label in trained}}
    for question in ("room_size_estimation", "object_counting"):
        train = [(f, t[question]) for _, f, t in table["train"] if question in t]
        test = [(f, t[question]) for _, f, t in table["test"] if question in t]
        y_train = np.array([y for _, y in train])
        y_test = np.array([y for _, y in test])
        median = float(np.median(y_train))
        results.setdefault("training median", {})[question] = 100 * float(np.mean([mean_relative_accuracy(median, y) for y in y_test]))
        for label, keys in sets.items():
            x_train = np.stack([np.concatenate([f[k] for k in keys]) for f, _ in train])
            x_test = np.stack([np.concatenate([f[k] for k in keys]) for f, _ in test])
            predicted = ridge_probe(x_train, y_train, x_test)
            results.setdefault(label, {})[question] = 100 * float(np.mean([mean_relative_accuracy(p, y) for p, y in zip(predicted, y_test)]))
    print("| features | room size MRA | count MRA |\n|---|---:|---:|")
    for label, scores in results.items():
        print(f"| {label} | {scores['room_size_estimation']:.1f} | {scores['object_counting']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
