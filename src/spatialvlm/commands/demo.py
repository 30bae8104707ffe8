"""``spatialvlm demo``: stream a synthetic video's tokens through the VLM² dual memory.

Until the full VLM² model is wired in, the demo shows the memory on its own: a deterministic token
stream of a few recurring scenes goes frame by frame through ``DualMemory``; the command prints
each video's memory statistics and writes a PNG of occupancy, replacements, gate and attention
entropy over time, the trace as JSON (redraw with ``spatialvlm viz memory --trace``) and the final
memory state (safetensors).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="stream a synthetic video through the dual memory and plot what it does",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--out", default="demo_out", help="output directory; default demo_out")
    parser.add_argument("--lengths", default="160,120,200", help="frames per synthetic video; default 160,120,200")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream and the weights; default 0")
    parser.set_defaults(run=run)


def parse_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise ValueError(f"--lengths needs at least one positive length, got {text!r}")
    return lengths


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch

    from spatialvlm.diagnostics import (
        format_memory_statistics,
        memory_statistics,
        plot_memory_trace,
        replacement_label_agreement,
        run_synthetic_memory_stream,
    )

    torch.set_num_threads(min(2, torch.get_num_threads()))
    lengths = parse_lengths(args.lengths)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    memory, state, trace = run_synthetic_memory_stream(lengths, seed=args.seed, progress=True)
    seconds = time.perf_counter() - start
    cfg = memory.config
    print(
        f"dual memory: D={cfg.dim}, heads={cfg.num_heads}, working_size={cfg.working_size}, "
        f"episodic_size={cfg.episodic_size} (untrained, seed {args.seed})"
    )
    print(f"streamed {len(lengths)} synthetic videos ({sum(lengths)} frames) in {seconds:.1f} s\n")
    print(format_memory_statistics(memory_statistics(state)))
    agreement = replacement_label_agreement(trace)
    print(f"\nreplacements that deleted an entry of the scene being viewed: {agreement:.0%}")
    png = plot_memory_trace(trace, out / "memory.png", title="VLM² dual memory on a synthetic stream")
    trace.save(out / "memory_trace.json")
    state.save(out / "memory_state.safetensors")
    print(f"wrote {png}, {out / 'memory_trace.json'}, {out / 'memory_state.safetensors'}")
    return 0
