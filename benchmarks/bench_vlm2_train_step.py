"""One VLM² training step at the tiny ablation's sizes, before / after issue 15's two speed-ups.

The ablation's VLM² (8, 32) row: the committed synthetic base (``checkpoints/vlm2-base-synthetic``)
with fusion (metric coordinates, viewpoint alignment) and the dual memory added, every fine-tuned
part trainable (projector, LM, fusion, memory), dropout 0, one batch of 8 clips × 32 frames at
112 px rendered here by ``spatialvlm synth`` (seed 0). Side by side in one process, interleaved,
CPU seconds of this process (median of the repeats after one warm-up round):

- the graph log's rebuild: a 5-D ``gather`` (before; ``bench_memory._gather_5d``) or the row
  ``index_select`` of ``GraphLog.gather`` (after);
- the text's padding mask: the collator's batch with an explicit ``attention_mask`` (before) or
  without one (after: right padding under a causal LM; the LM then runs its causal kernel).

Each configuration's loss and gradients are compared with "before, before" (expected: equal for the
gather, within float rounding for the mask).

    python benchmarks/bench_vlm2_train_step.py            # 3 repeats
    python benchmarks/bench_vlm2_train_step.py --quick    # 1 repeat, 8 frames
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "checkpoints" / "vlm2-base-synthetic"
FLAGS = dict(
    use_spatial_fusion=True, use_coordinate_injection=True, use_viewpoint_alignment=True,
    coordinate_normalization="metric", use_dual_memory=True, memory_L_w=8, memory_L_e=32,
    fusion_dropout=0.0, memory_dropout=0.0,
)


def build(data: Path, frames: int):
    """(model in train mode, one collated batch of 8 clips) for the (8, 32) row."""
    import transformers
    from transformers import TrainingArguments

    from spatialvlm.train import DataArguments, ModelArguments, prepare_training

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model_args = ModelArguments(
        model_name_or_path=str(BASE), mm_tunable_parts="mm_mlp_adapter,mm_language_model,fusion,dual_memory", **FLAGS
    )
    data_args = DataArguments(data_path=str(data / "train_llava.json"), num_frames=frames)
    training_args = TrainingArguments(
        output_dir=str(data / "run"), max_steps=1, per_device_train_batch_size=8, use_cpu=True,
        report_to="none", dataloader_num_workers=0, save_strategy="no", seed=0,
    )
    run = prepare_training(model_args, data_args, training_args, task="vlm2")
    return run.trainer.model.train(), next(iter(run.trainer.get_train_dataloader()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 8-frame clips")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_memory import _gather_5d  # before: the 5-D gather, written out there
    from threads import configure_threads

    from spatialvlm.memory.state import GraphLog

    threads = configure_threads()
    frames, repeats = (8, 1) if args.quick else (32, 3)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "spatialvlm.cli", "synth", "--out", str(data), "--scenes", "8", "--frames",
             str(frames), "--size", "112", "--seed", "0", "--split", "train"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        model, batch = build(data, frames)
    width = batch["input_ids"].shape[1]
    # Right padding: each text ends after its last non-pad token.
    real = batch["input_ids"] != model.config.text_config.pad_token_id
    lengths = width - real.flip(1).long().argmax(1)
    masked = {**batch, "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long()}
    rows_gather = GraphLog.gather
    configs = {
        "before: 5-D gather, padding mask": (_gather_5d, masked),
        "rows only": (rows_gather, masked),
        "no mask only": (_gather_5d, batch),
        "after: rows, no mask": (rows_gather, batch),
    }

    def step(inputs) -> tuple[float, list[torch.Tensor]]:
        loss = model(**inputs).loss
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return float(loss.detach()), grads

    seconds = {name: [] for name in configs}
    results = {}
    try:
        for _ in range(repeats + 1):
            for name, (gather, inputs) in configs.items():
                GraphLog.gather = gather
                start = time.process_time()
                results[name] = step(inputs)
                seconds[name].append(time.process_time() - start)
    finally:
        GraphLog.gather = rows_gather
    reference_loss, reference_grads = results["before: 5-D gather, padding mask"]
    base = statistics.median(seconds["before: 5-D gather, padding mask"][1:])
    print(f"# bench_vlm2_train_step (torch {torch.__version__}, {threads} threads, fp32): one step of 8 clips × "
          f"{frames} frames, text length {width} (real {int(lengths.min())}–{int(lengths.max())})\n")
    print(f"| configuration | CPU s (median of {repeats}) | share of before | |Δ loss| | max |Δ grad| |")
    print("|---|---:|---:|---:|---:|")
    for name in configs:
        loss, grads = results[name]
        diff = max(float((a - b).abs().max()) for a, b in zip(grads, reference_grads))
        median = statistics.median(seconds[name][1:])
        print(f"| {name} | {median:.2f} | {median / base:.0%} | {abs(loss - reference_loss):.1e} | {diff:.1e} |")


if __name__ == "__main__":
    main()
