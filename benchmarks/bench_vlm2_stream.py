"""Streaming VLM² throughput (frames/s) and each stage's share, at tiny and at real vision dims.

A stream of N frames goes through ``VLM2StreamingSession`` stage by stage (geometry preparation,
SigLIP, fusion, dual memory, projector + pooling); then one question is asked, which costs one
language-model prefill over the context (the last N frames' tokens + prompt). Shares are of the
total time for N frames + that prefill.

Real dims: SigLIP so400m (1152-d, 26 layers, 384 px → 27×27 patches), CUT3R-sized geometry
(729 tokens × 768, camera token 768), fusion 18 heads, memory 8 heads with L_w = 8, L_e = 32,
and a Qwen2-0.5B-sized language model (896-d, 24 layers) since a 7B model does not fit the point
of a CPU benchmark. Weights are random; only time is measured.

    python benchmarks/bench_vlm2_stream.py          # tiny: 16 frames; real: 3 frames
    python benchmarks/bench_vlm2_stream.py --quick  # tiny: 8 frames; real: 2 frames
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

import numpy as np
import torch

from spatialvlm.diagnostics.profiling import StageTimer
from spatialvlm.geometry import stack_frames
from spatialvlm.models import (
    VideoGeometryInputs,
    VLM2ForConditionalGeneration,
    VLM2StreamingSession,
    build_tiny_processor,
    tiny_vlm2_config,
)
from spatialvlm.models.tiny import tiny_frame_geometry

STAGES = ("geometry prep", "vision", "fusion", "memory", "projector+pool", "LM prefill")


def real_dims_config():
    return tiny_vlm2_config(
        use_dual_memory=True,
        geometry_dim=768,
        view_dim=768,
        fusion_num_heads=18,
        memory_num_heads=8,
        vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16, image_size=384),
        text_config=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2),
    )


@torch.no_grad()
def run_stream(
    config, num_frames: int, geometry_tokens: int, frame_size: tuple[int, int], end_to_end: bool
) -> dict[str, float]:
    torch.manual_seed(0)
    model = VLM2ForConditionalGeneration(config).eval()
    processor = build_tiny_processor(config)
    height, width = frame_size
    frames = np.random.default_rng(0).integers(0, 256, (num_frames + 1, height, width, 3), dtype=np.uint8)
    geometry = tiny_frame_geometry(
        num_frames + 1, height // 4, width // 4, geometry_tokens, config.geometry_dim, config.view_dim
    )
    inner = model.model
    session = VLM2StreamingSession(model, processor, context_frames=num_frames)
    session.add_frame(frames[0], geometry[0])  # warm-up (allocations, first-call overheads)
    session.reset()

    timer = StageTimer()
    state, stats, context = None, None, []
    mask = torch.ones(1, 1, dtype=torch.bool)
    for frame, frame_geometry in zip(frames[1:], geometry[1:]):
        with timer.stage("geometry prep"):
            pixels = processor.preprocess_frames(frame[None])
            inputs, stats = processor.prepare_geometry(stack_frames([frame_geometry]), stats)
            geometry_inputs = VideoGeometryInputs.from_kwargs(**inputs)
        with timer.stage("vision"):
            visual = inner.encode_frames_vision(pixels, config.vision_feature_layer, config.vision_feature_select_strategy)
        with timer.stage("fusion"):
            visual = inner.fuse_geometry(visual, geometry_inputs)
        with timer.stage("memory"):
            visual, state = inner.apply_memory(visual, mask, state)
        with timer.stage("projector+pool"):
            context.append(inner.project_and_pool(visual)[0])
    context = inner.pack_video_tokens(torch.stack(context), torch.tensor([num_frames]))
    prompt = processor.video_prompt("How many chairs are in the room?")
    text = prompt.replace("<video>", "<video>" * context.shape[0])
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
    embeds = inner.get_input_embeddings()(ids)
    embeds[ids == config.video_token_id] = context
    with timer.stage("LM prefill"):
        inner.language_model(inputs_embeds=embeds, use_cache=True)

    totals = {stage: timer.totals.get(stage, 0.0) for stage in STAGES}
    totals["prefill tokens"] = ids.shape[1]
    if end_to_end:  # the public session API, a check on the sum of the stages
        session = VLM2StreamingSession(model, processor, context_frames=num_frames)
        start = time.perf_counter()
        session.add_frames(frames[1:], geometry[1:])
        totals["end-to-end frames"] = time.perf_counter() - start
    return totals


def report(name: str, num_frames: int, totals: dict[str, float]) -> None:
    total = sum(totals[stage] for stage in STAGES)
    per_frame = sum(totals[stage] for stage in STAGES[:-1]) / num_frames
    print(f"\n{name}: {num_frames} frames, then one question ({totals['prefill tokens']} prefill tokens)")
    print(f"{'stage':<16}{'seconds':>10}{'ms/frame':>10}{'share':>8}")
    for stage in STAGES:
        print(f"{stage:<16}{totals[stage]:>10.3f}{1000 * totals[stage] / num_frames:>10.1f}{totals[stage] / total:>8.1%}")
    print(f"{'total':<16}{total:>10.3f}")
    line = f"streaming throughput: {1 / per_frame:.3f} frames/s from the stages"
    if "end-to-end frames" in totals:
        line += f", {num_frames / totals['end-to-end frames']:.3f} frames/s end to end (session.add_frames)"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from threads import configure_threads

    configure_threads()  # OMP_NUM_THREADS, default 2
    tiny_frames, real_frames = (8, 2) if args.quick else (16, 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    tiny = run_stream(tiny_vlm2_config(use_dual_memory=True), tiny_frames, 9, (64, 96), end_to_end=True)
    report("tiny dims", tiny_frames, tiny)
    real = run_stream(real_dims_config(), real_frames, 729, (384, 512), end_to_end=False)
    report("real vision dims", real_frames, real)


if __name__ == "__main__":
    main()
