"""``spatialvlm viz``: pictures of what the modules do, one sub-subcommand per module.

    spatialvlm viz memory --trace demo_out/memory_trace.json --out memory.png
    spatialvlm viz memory --synthetic --out memory.png

To add a picture, write ``_register_<name>(subcommands)`` that adds its parser and sets ``run``,
and call it from :func:`register`.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "viz",
        help="draw diagnostics pictures (memory, ...)",
        description="Draw a diagnostics picture; pick what with a subcommand.",
    )
    subcommands = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    _register_memory(subcommands)


# -- viz memory ------------------------------------------------------------------------------------
def _register_memory(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "memory",
        help="dual memory occupancy, replacements, gate and entropy over time",
        description=(
            "Draw a saved memory trace (MemoryTrace.save, e.g. demo_out/memory_trace.json) or, with "
            "--synthetic, run the synthetic scene stream through a fresh dual memory and draw that."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="memory trace JSON written by MemoryTrace.save / spatialvlm demo")
    source.add_argument("--synthetic", action="store_true", help="run the synthetic stream instead")
    parser.add_argument("--lengths", default="160,120,200", help="--synthetic: frames per video")
    parser.add_argument("--seed", type=int, default=0, help="--synthetic: seed; default 0")
    parser.add_argument("--out", default="memory.png", help="PNG to write; default memory.png")
    parser.set_defaults(run=_run_memory)


def _run_memory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spatialvlm.diagnostics import MemoryTrace, plot_memory_trace, run_synthetic_memory_stream

    if args.synthetic:
        from .demo import parse_lengths

        _, _, trace = run_synthetic_memory_stream(parse_lengths(args.lengths), seed=args.seed, progress=True)
        title = "VLM² dual memory on a synthetic stream"
    else:
        if not Path(args.trace).is_file():
            raise FileNotFoundError(f"no memory trace at {args.trace}")
        trace = MemoryTrace.load(args.trace)
        title = f"dual memory: {Path(args.trace).name}"
    path = plot_memory_trace(trace, args.out, title=title)
    print(f"wrote {path} ({trace.num_videos} videos, {trace.num_steps} steps)")
    return 0
