"""Benchmark of the VLM² dual memory (issues 2 and 14).

Measures, side by side in one run (fp32, 2 threads, real dims D = 1152, working 8, episodic 32):

1. the per-frame step against the naive reference (``naive_memory.py``: lists per video, a loop
   over videos, keys/values of the whole memory recomputed every step) at B = 1 and B = 8,
   N = 196, with the FLOP count of a step and the FLOP-bound cap on the speed-up;
2. the step at B = 1 as a share of one real-dims SigLIP so400m forward at 384 px (built from its
   config, random weights), for N = 196 and N = 729 (exact and compressed storage);
3. resident memory over a long stream once the memories are full (default 5,000 frames);
4. issue 14, before / after: "before" is ``legacy_memory.py`` (the implementation, read from git at 281ff13, that
   issue 14 replaced: banks read at capacity with a mask, whole banks cloned under autograd),
   "after" the library, same weights, same inputs, same process:
   a. a step with one stored entry per memory against a full step (inference), B = 2, N = 64,
      D = 256 and real dims B = 1, N = 729, D = 1152, memories (8, 32);
5. issue 14, training, before / after (``--only 5``):
   a. saved-for-backward of a 32-frame clip, counted as unique storages (every tensor autograd
      saves, deduplicated by storage), default settings, plus ``checkpoint_frames=True``;
   b. one training step (forward + backward) over the 32 frames, CPU seconds.
6. issue 15, the graph log's rebuild in backward (``--only 6``): a 5-D ``gather`` over the log
   (before, the library up to 50725e7, written out here) against the row ``index_select`` of
   ``GraphLog.gather`` (after), one training step of a 32-frame clip at the tiny ablation's sizes
   (B = 8, N = 64, D = 64, 4 heads, memories (8, 32) and (8, 8), dropout 0), and the largest
   gradient difference between the two (the rows copy the same numbers: expected 0).

    python benchmarks/bench_memory.py            # full run, several minutes
    python benchmarks/bench_memory.py --quick    # fewer repeats, 1,000-frame stream, smaller clip
    python benchmarks/bench_memory.py --only 4   # one section (4, 5: issue 14; 6: issue 15)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import legacy_memory  # noqa: E402
from naive_memory import NaiveDualMemory, NaiveVideoMemory  # noqa: E402

from spatialvlm.memory import DualMemory, DualMemoryConfig  # noqa: E402
from spatialvlm.memory.state import GraphLog  # noqa: E402

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


def _twins(dim: int, **options):
    """(before, after): the replaced implementation and the library, with the same weights;
    ``options`` (issue-14 knobs) apply to "after" only."""
    torch.manual_seed(0)
    after = DualMemory(dim, working_size=WORKING, episodic_size=EPISODIC, **options)
    before = legacy_memory.DualMemory(dim, working_size=WORKING, episodic_size=EPISODIC)
    before.load_state_dict(after.state_dict())
    return before, after


def cpu_seconds(fn) -> float:
    """CPU time of this process over ``fn()``: other processes' load on a shared machine does not
    count (run with OMP_NUM_THREADS=1 so it equals the work of one core)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def _fill(memory, batch: int, tokens: int, dim: int, steps: int):
    state = memory.init_state(batch, num_tokens=tokens)
    for _ in range(steps):
        memory(torch.randn(batch, tokens, dim), state)
    return state


def bench_fill_cost(repeats: int) -> None:
    print(f"\n## 4a. Step with one stored entry vs a full step, before / after (inference, fp32, "
          f"CPU ms of this process, median of {repeats})\n")
    print("| B, N, D | before: 1 entry ms | before: full ms | before ratio | after: 1 entry ms | after: full ms | after ratio |")
    print("|---|---|---|---|---|---|---|")
    for batch, tokens, dim in ((2, 64, 256), (1, 729, 1152)):
        row = []
        for memory in _twins(dim):
            memory.eval()
            h = torch.randn(batch, tokens, dim)
            one = _fill(memory, batch, tokens, dim, 1)
            full = _fill(memory, batch, tokens, dim, WORKING + EPISODIC)
            memory(h, one.clone()), memory(h, full)  # warm-up
            one_s, full_s = [], []
            for _ in range(repeats):  # interleaved; a fresh clone keeps the one-entry state at one entry
                snapshot = one.clone()
                one_s.append(cpu_seconds(lambda: memory(h, snapshot)))
                full_s.append(cpu_seconds(lambda: memory(h, full)))
            one_m, full_m = statistics.median(one_s), statistics.median(full_s)
            row += [f"{one_m * 1e3:.2f}", f"{full_m * 1e3:.2f}", f"{one_m / full_m:.2f}"]
        print(f"| {batch}, {tokens}, {dim} | " + " | ".join(row) + " |")


def saved_storage_bytes(memory, frames) -> int:
    """Bytes autograd saves for backward over ``memory.process(frames)``, unique storages."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        memory.process(frames)
    return sum(storages.values())


def bench_training(frames_count: int, tokens: int, repeats: int) -> None:
    print(f"\n## 5. Training a {frames_count}-frame clip, before / after (B = 1, N = {tokens}, D = {DIM}, "
          f"memories ({WORKING}, {EPISODIC}), dropout 0.1, fp32)\n")
    before, after = _twins(DIM)
    _, checkpointed = _twins(DIM, checkpoint_frames=True)
    variants = [("before (legacy_memory.py)", before), ("after", after), ("after, checkpoint_frames=True", checkpointed)]
    frames = torch.randn(1, frames_count, tokens, DIM, requires_grad=True)
    saved = {}
    for label, memory in variants:
        memory.train()
        saved[label] = saved_storage_bytes(memory, frames)

    def step(memory):
        out, _ = memory.process(frames)
        out.square().mean().backward()
        memory.zero_grad(set_to_none=True)
        frames.grad = None

    seconds = {label: [] for label, _ in variants}
    for _ in range(repeats):  # interleaved
        for label, memory in variants:
            seconds[label].append(cpu_seconds(lambda: step(memory)))
    base_saved, base_time = saved[variants[0][0]], statistics.median(seconds[variants[0][0]])
    per_frame = base_saved / frames_count
    print(f"| implementation | saved for backward (MiB) | share of before | fwd+bwd CPU s (median of {repeats}) | share of before |")
    print("|---|---|---|---|---|")
    for label, _ in variants:
        median = statistics.median(seconds[label])
        print(f"| {label} | {saved[label] / 2**20:.0f} | {saved[label] / base_saved:.0%} | {median:.2f} | {median / base_time:.0%} |")
    print(f"\n(before: {per_frame / 2**20:.1f} MiB saved per frame at N = {tokens})")


def _gather_5d(graph: GraphLog) -> tuple[torch.Tensor, torch.Tensor]:
    """Before (up to 50725e7): every element of the rebuilt keys/values indexed by a 5-D gather."""
    keys, values = torch.cat(graph.keys, dim=2), torch.cat(graph.values, dim=2)
    index = graph.source[:, None, :, None, None].expand(-1, keys.shape[1], -1, keys.shape[3], keys.shape[4])
    return keys.gather(2, index), values.gather(2, index)


def bench_log_rebuild(frames_count: int, repeats: int) -> None:
    batch, tokens, dim = 8, 64, 64
    print(f"\n## 6. The graph log's rebuild in backward, 5-D gather (before) vs row index_select (after) "
          f"(B = {batch}, N = {tokens}, D = {dim}, 4 heads, {frames_count} frames, dropout 0, fp32)\n")
    print(f"| memories | before fwd+bwd CPU s | after fwd+bwd CPU s | after / before | max abs grad difference |")
    print("|---|---|---|---|---|")
    rows_gather = GraphLog.gather
    for working, episodic in ((8, 32), (8, 8)):
        torch.manual_seed(0)
        memory = DualMemory(dim, num_heads=4, working_size=working, episodic_size=episodic, dropout=0.0).train()
        frames = torch.randn(batch, frames_count, tokens, dim, requires_grad=True)

        def step() -> list[torch.Tensor]:
            out, _ = memory.process(frames)
            out.square().mean().backward()
            grads = [frames.grad.clone(), *(p.grad.clone() for p in memory.parameters())]
            memory.zero_grad(set_to_none=True)
            frames.grad = None
            return grads

        seconds: dict[str, list[float]] = {"before": [], "after": []}
        grads: dict[str, list[torch.Tensor]] = {}
        try:
            for _ in range(repeats + 1):  # interleaved; the first round warms up
                for label, gather in (("before", _gather_5d), ("after", rows_gather)):
                    GraphLog.gather = gather
                    start = time.process_time()
                    grads[label] = step()
                    seconds[label].append(time.process_time() - start)
        finally:
            GraphLog.gather = rows_gather
        before, after = statistics.median(seconds["before"][1:]), statistics.median(seconds["after"][1:])
        diff = max(float((a - b).abs().max()) for a, b in zip(grads["before"], grads["after"]))
        print(f"| ({working}, {episodic}) | {before:.2f} | {after:.2f} | {after / before:.0%} | {diff:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 1,000-frame stream")
    parser.add_argument("--skip-siglip", action="store_true", help="skip section 2 (needs transformers)")
    parser.add_argument("--only", type=int, choices=(1, 2, 3, 4, 5, 6), help="run one section")
    parser.add_argument("--train-frames", type=int, default=32, help="section 5 clip length (32)")
    parser.add_argument("--train-tokens", type=int, default=64,
                        help="section 5 tokens per frame (64; 'before' at 196 holds ~13 GiB, mostly the "
                        "attention probabilities and dropout masks of its masked reads)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from threads import configure_threads

    configure_threads()  # OMP_NUM_THREADS, default 2
    repeats = 3 if args.quick else 5
    print(f"# bench_memory (torch {torch.__version__}, {torch.get_num_threads()} threads, fp32)")
    run = (lambda n: args.only in (None, n))  # noqa: E731
    with torch.inference_mode():
        if run(1):
            bench_against_naive(repeats)
        if run(2) and not args.skip_siglip:
            bench_against_siglip(repeats)
        if run(3):
            bench_long_stream(1000 if args.quick else 5000)
        if run(4):
            bench_fill_cost(repeats)
    if run(5):
        bench_training(8 if args.quick else args.train_frames, 64 if args.quick else args.train_tokens, 1 if args.quick else 3)
    if run(6):
        bench_log_rebuild(8 if args.quick else 32, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
