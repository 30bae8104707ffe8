"""Probe for the intermittent NaN of the ablation's "+ coordinate injection" variant (issue 11).

Trains the ablation's ``+coords`` variant at smoke size (2 training scenes, 4 frames, 4 steps)
after a ``vision`` variant has run in the same process (as in a real ablation run), and prints the
``PointTokenEncoder`` octaves the loaded model computes with and the logged losses at full
precision. ``--fill`` overwrites the octave buffer of code that still has one (commit 281ff13 and
earlier) with correct values or with garbage of the kinds uninitialised memory holds.

    # after the fix (the octaves are computed, the fill is ignored): identical losses every run
    python benchmarks/probe_coords_nan.py
    # before: the old package on PYTHONPATH
    git archive 281ff13 src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python benchmarks/probe_coords_nan.py --fill neginf

Figures and conclusions: docs/results.md ("Uninitialised octave buffer and the + coordinate
injection NaN").
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
from pathlib import Path

import torch
import transformers
from transformers import TrainingArguments

from spatialvlm.data.readers import read_benchmark
from spatialvlm.eval.metrics import question_types
from spatialvlm.experiments import vlm2_ablation as ablation
from spatialvlm.train import DataArguments, ModelArguments, prepare_training

FILLS = {
    "none": None,
    "correct": lambda n: math.pi * 2.0 ** torch.arange(n, dtype=torch.float32),
    "neginf": lambda n: torch.tensor([-math.inf] + [0.0] * (n - 1)),
    "min": lambda n: torch.full((n,), torch.finfo(torch.float32).min),
    "1e35": lambda n: torch.full((n,), 1e35),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", choices=sorted(FILLS), default="none")
    parser.add_argument("--repeats", type=int, default=1, help="+coords runs in this process")
    parser.add_argument("--out-dir", default="/tmp/probe_coords_nan")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    config = ablation.AblationConfig(
        out_dir=args.out_dir, train_scenes=2, test_scenes=1, num_frames=4, max_steps=4, batch_size=2, progress=False
    )
    out, data = Path(config.out_dir), Path(config.out_dir) / "data"
    if not (out / "base").exists():
        ablation._generate_data(config, data)
        items = read_benchmark(data, "train", question_types("vsibench"))
        for geometry, name in ((True, "train_llava_geometry.json"), (False, "train_llava.json")):
            (data / name).write_text(json.dumps(ablation.llava_records(items, geometry=geometry)))
        ablation._save_base(config, out / "base")
    variants = {variant.name: variant for variant in ablation.VARIANTS}
    # The vision variant first: the allocator then holds freed training tensors, as in a real run.
    takes_seed = "seed" in inspect.signature(ablation._train_variant).parameters
    extra = (config.seed,) if takes_seed else ()
    ablation._train_variant(config, variants["vision"], *extra, out / "base", data / "train_llava.json", out / "runs/vision", {})
    flags = variants["+coords"].flags
    for repeat in range(args.repeats):
        torch.manual_seed(config.seed)
        run = prepare_training(
            ModelArguments(model_name_or_path=str(out / "base"), mm_tunable_parts="mm_mlp_adapter,mm_language_model,fusion", **flags),
            DataArguments(data_path=str(data / "train_llava_geometry.json"), num_frames=config.num_frames),
            TrainingArguments(
                output_dir=str(out / "runs/coords"), max_steps=config.max_steps, per_device_train_batch_size=2,
                learning_rate=config.learning_rate, logging_steps=1, logging_nan_inf_filter=False, save_strategy="no",
                report_to="none", seed=config.seed, use_cpu=True, disable_tqdm=True,
            ),
            task="vlm2",
        )
        encoder = run.trainer.model.model.spatial_fusion.point_encoder
        stored = getattr(encoder, "frequencies", None)
        if isinstance(stored, torch.Tensor):
            if FILLS[args.fill] is not None:
                stored.copy_(FILLS[args.fill](stored.numel()))
            octaves = stored.tolist()
        else:
            octaves = encoder.frequencies().tolist()
        run.trainer.train()
        losses = [entry["loss"] for entry in run.trainer.state.log_history if "loss" in entry]
        print(f"[{args.fill} #{repeat}] octaves {['%.3g' % value for value in octaves]}")
        print(f"[{args.fill} #{repeat}] losses {[repr(value) for value in losses]}")


if __name__ == "__main__":
    main()
