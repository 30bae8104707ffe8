"""Benchmark of the VLM² dual memory (issue 2).

Measures, side by side in one run (fp32, 2 threads, real dims D = 1152, working 8, episodic 32):

1. the per-frame step against the naive reference (``naive_memory.py``: lists per video, a loop
   over videos, keys/values of the whole memory recomputed every step) at B = 1 and B = 8,
   N = 196, with the FLOP count of a step and the FLOP-bound cap on the speed-up;
2. the step at B = 1 as a share of one real-dims SigLIP so400m forward at 384 px (built from its
   config, random weights), for N = 196 and N = 729 (exact and compressed storage);
3. resident memory over a long stream once the memories are full (default 5,000 frames).

    python benchmarks/bench_memory.py            # full run, a few minutes
    python benchmarks/bench_memory.py --quick    # fewer repeats, 1,000-frame stream
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_memory import NaiveDualMemory, NaiveVideoMemory  # noqa: E402

from spatialvlm.memory import DualMemory, DualMemoryConfig  # noqa: E402

DIM, WORKING, EPISODIC = 1152, 8, 32


def step_flops(cfg: DualMemoryConfig, tokens: int, naive: bool = False) -> dict[str, float]:
    """Multiply-adds ×2 of one step for one video with full memories."""
    dim, stored = cfg.dim, min(cfg.compress_tokens or tokens, tokens)
    hidden = cfg.gate_hidden_size or dim
    slots = cfg.working_size + cfg.episodic_size
    linear = lambda rows, fan_in, fan_out: 2 * rows * fan_in * fan_out  # noqa: E731
    parts = {
        "queries (2 memories)": 2 * linear(tokens, dim, dim),
        "attention over stored entries": 2 * 2 * tokens * slots * stored * dim,
        "output projections": 2 * linear(tokens, dim, dim),
        "gate MLP": linear(tokens, 2 * dim, hidden) + linear(tokens, hidden, dim),
    }
    if naive:
        parts["keys/values of the whole memory"] = slots * linear(stored, dim, 2 * dim)
    else:
        parts["keys/values of the 2 new entries"] = 2 * linear(stored, dim, 2 * dim)
    return parts


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def full_state(memory: DualMemory, batch: int, tokens: int):
    state = memory.init_state(batch, num_tokens=tokens)
    for _ in range(memory.config.working_size + memory.config.episodic_size):
        memory(torch.randn(batch, tokens, DIM), state)
    return state


def naive_full_state(memory: DualMemory, batch: int, tokens: int) -> list[NaiveVideoMemory]:
    # The naive step's cost does not depend on the stored values: fill the lists directly.
    videos = []
    for _ in range(batch):
        entries = [torch.randn(tokens, DIM) for _ in range(EPISODIC)]
        videos.append(NaiveVideoMemory(
            working=[torch.randn(tokens, DIM) for _ in range(WORKING)],
            episodic=entries, episodic_means=[e.mean(0) for e in entries],
        ))
    return videos


def bench_against_naive(repeats: int) -> None:
    print("\n## 1. Per-frame step vs naive reference (N = 196, full memories)\n")
    torch.manual_seed(0)
    memory = DualMemory(DIM, working_size=WORKING, episodic_size=EPISODIC).eval()
    naive = NaiveDualMemory(memory)
    cfg = memory.config
    fast_flops, naive_flops = step_flops(cfg, 196), step_flops(cfg, 196, naive=True)
    print("FLOPs of one step, one video (D=1152, N=196, 8 + 32 entries):")
    for name in dict.fromkeys([*fast_flops, *naive_flops]):
        print(f"  {name:34s} ours {fast_flops.get(name, 0) / 1e9:7.2f} G   naive {naive_flops.get(name, 0) / 1e9:7.2f} G")
    fast_total, naive_total = sum(fast_flops.values()), sum(naive_flops.values())
    cap = naive_total / fast_total
    print(f"  {'total':34s} ours {fast_total / 1e9:7.2f} G   naive {naive_total / 1e9:7.2f} G   cap {cap:.2f}x\n")
    print("| B | ours ms/step | naive ms/step | speed-up | of FLOP cap | ours GFLOP/s | naive GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for batch in (1, 8):
        h = torch.randn(batch, 196, DIM)
        state = full_state(memory, batch, 196)
        videos = naive_full_state(memory, batch, 196)
        fast, slow = [], []
        for _ in range(repeats):  # interleaved so machine load hits both alike
            fast.append(timed(lambda: memory(h, state), 1))
            slow.append(timed(lambda: naive.step(h, videos), 1))
        fast_s, slow_s = statistics.median(fast), statistics.median(slow)
        speedup = slow_s / fast_s
        print(
            f"| {batch} | {fast_s * 1e3:.1f} | {slow_s * 1e3:.1f} | {speedup:.2f}x | {speedup / cap:.0%} | "
            f"{batch * fast_total / fast_s / 1e9:.0f} | {batch * naive_total / slow_s / 1e9:.0f} |"
        )


def build_siglip():
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                num_attention_heads=16, image_size=384, patch_size=14)
    with torch.device("meta"):
        model = SiglipVisionModel(config)
    # Timing only needs the right shapes: skip the slow initialisers, fill with small values.
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
        for buffer_name, buffer in model.named_buffers():
            if "position_ids" in buffer_name:
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return model


def bench_against_siglip(repeats: int) -> None:
    print("\n## 2. Step (B = 1) as a share of a SigLIP so400m forward at 384 px (B = 1)\n")
    siglip = build_siglip()
    pixels = torch.randn(1, 3, 384, 384)
    configs = [
        ("N=196, exact", 196, None),
        ("N=729, exact", 729, None),
        ("N=729, compressed to 196 (14x14)", 729, 196),
        ("N=729, compressed to 144 (12x12)", 729, 144),
    ]
    steps = {}
    for label, tokens, compress in configs:
        torch.manual_seed(0)
        memory = DualMemory(DIM, working_size=WORKING, episodic_size=EPISODIC, compress_tokens=compress).eval()
        steps[label] = (memory, full_state(memory, 1, tokens), torch.randn(1, tokens, DIM))
    siglip_s, step_s = [], {label: [] for label in steps}
    for _ in range(repeats):  # interleaved
        siglip_s.append(timed(lambda: siglip(pixel_values=pixels), 1))
        for label, (memory, state, h) in steps.items():
            step_s[label].append(timed(lambda: memory(h, state), 2))
    siglip_median = statistics.median(siglip_s)
    del siglip  # section 3 measures resident memory
    print(f"SigLIP so400m forward, 384 px, B=1: {siglip_median * 1e3:.0f} ms (median of {repeats})\n")
    print("| memory step (B=1) | ms | FLOPs (G) | share of SigLIP forward |")
    print("|---|---|---|---|")
    for label, tokens, compress in configs:
        cfg = steps[label][0].config
        seconds = statistics.median(step_s[label])
        flops = sum(step_flops(cfg, tokens).values())
        print(f"| {label} | {seconds * 1e3:.1f} | {flops / 1e9:.1f} | {seconds / siglip_median:.1%} |")


def resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def bench_long_stream(frames: int, tokens: int = 16) -> None:
    print(f"\n## 3. Resident memory over a {frames}-frame stream (B = 1, D = 1152, N = {tokens})\n")
    torch.manual_seed(0)
    memory = DualMemory(DIM, working_size=WORKING, episodic_size=EPISODIC).eval()
    state = memory.init_state(1)
    h = torch.randn(frames, 1, tokens, DIM)
    samples = {}
    start = time.perf_counter()
    peak_after_full = 0.0
    for t in range(frames):
        memory(h[t], state)
        if t == WORKING + EPISODIC + 10:
            samples["memories full (frame 50)"] = full_rss = resident_mib()
        if t > WORKING + EPISODIC + 10 and t % 50 == 0:
            peak_after_full = max(peak_after_full, resident_mib())
    samples[f"end (frame {frames})"] = resident_mib()
    elapsed = time.perf_counter() - start
    for name, value in samples.items():
        print(f"  RSS at {name:28s} {value:8.1f} MiB")
    print(f"  peak RSS after the memories filled {peak_after_full:8.1f} MiB "
          f"(growth {peak_after_full - full_rss:+.1f} MiB over {frames - 50} frames)")
    print(f"  {elapsed / frames * 1e3:.1f} ms per step; replacements: {int(state.counters.replacements.sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 1,000-frame stream")
    parser.add_argument("--skip-siglip", action="store_true", help="skip section 2 (needs transformers)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from threads import configure_threads

    configure_threads()  # OMP_NUM_THREADS, default 2
    repeats = 3 if args.quick else 5
    print(f"# bench_memory (torch {torch.__version__}, {torch.get_num_threads()} threads, fp32)")
    with torch.inference_mode():
        bench_against_naive(repeats)
        if not args.skip_siglip:
            bench_against_siglip(repeats)
        bench_long_stream(1000 if args.quick else 5000)


if __name__ == "__main__":
    main()
