"""``spatialvlm viz``: pictures of what the modules do, one sub-subcommand per module.

    spatialvlm viz memory --trace demo_out/memory_trace.json --out memory.png
    spatialvlm viz memory --synthetic --out memory.png
    spatialvlm viz selection photo.jpg --out heat.png [--budget 512] [--siglip DIR]
    spatialvlm viz geometry scene_geo/ --out geometry.png

To add a picture, write ``_register_<name>(subcommands)`` that adds its parser and sets ``run``,
and call it from :func:`register`.
"""

from __future__ import annotations

import argparse

from . import parse_lengths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "viz",
        help="draw diagnostics pictures (memory, selection)",
        description="Draw a diagnostics picture; pick what with a subcommand.",
    )
    subcommands = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    _register_memory(subcommands)
    _register_selection(subcommands)
    _register_geometry(subcommands)


# -- viz memory ------------------------------------------------------------------------------------
def _register_memory(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "memory",
        help="dual memory occupancy, replacements, gate and entropy over time",
        description=(
            "Draw a saved memory trace (MemoryTrace.save; spatialvlm demo writes demo_out/memory_trace.json) "
            "or, with --synthetic, run the synthetic scene stream through a fresh dual memory and draw that "
            "(replacement colours = the scene of the new frame, named in the legend)."
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


# -- viz selection ---------------------------------------------------------------------------------
def _register_selection(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "selection",
        help="SHIRG-X score heatmap and kept tokens over an image",
        description=(
            "Run an untrained SHIRG-X selector on an image at 672 px and draw the per-patch score "
            "heatmap and the kept tokens. Without --siglip it scores raw pixel patches (no weights "
            "needed); with a local SigLIP checkpoint it scores that model's features."
        ),
    )
    parser.add_argument("image", help="image file")
    parser.add_argument("--out", default="selection.png", help="picture to write; default selection.png")
    parser.add_argument(
        "--budget", type=int, metavar="512|768|1024",
        help="high-detail tokens K kept besides the 144 scaffold tokens, one of the selector's budgets "
        "(default: the adaptive head's pick)",
    )
    parser.add_argument("--siglip", help="local SigLIP vision checkpoint directory (never downloaded)")
    parser.add_argument("--layer", type=int, default=-2, help="--siglip: hidden-state index; default -2")
    parser.set_defaults(run=_run_selection)


def _run_selection(args: argparse.Namespace) -> int:
    from spatialvlm.data.preprocess import load_image
    from spatialvlm.diagnostics.selection_plot import render_selection
    from spatialvlm.selection import ShirgXConfig

    budgets = ShirgXConfig().budgets  # the selector render_selection builds
    if args.budget is not None and args.budget not in budgets:
        raise ValueError(f"--budget must be one of the selector's budgets {budgets}, got {args.budget}")
    load_image(args.image, size=672)  # one-line errors and warnings for the file, as `ask --image`
    output = render_selection(args.image, args.out, budget=args.budget, siglip_path=args.siglip, layer=args.layer)
    kept = int((~output.is_scaffold[0]).sum())
    print(f"wrote {args.out} (K = {output.budget}: {kept} kept tokens + {int(output.is_scaffold[0].sum())} scaffold)")
    return 0


# -- viz geometry ----------------------------------------------------------------------------------
def _register_geometry(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "geometry",
        help="point cloud (top and side views) with the camera path and frame numbers",
        description=(
            "Draw a geometry folder (frame_XXXXX.safetensors, e.g. from `spatialvlm geometry extract`): the "
            "point cloud from above and from the side, coloured by frame, with the camera path and each "
            "camera's video frame number, so you see what the model will get."
        ),
    )
    parser.add_argument("directory", help="geometry folder")
    parser.add_argument("--out", default="geometry.png", help="PNG to write; default geometry.png")
    parser.add_argument("--max-points", type=int, default=30_000, help="points drawn at most; default 30000")
    parser.add_argument("--confidence", type=float, help="drop points below this confidence")
    parser.set_defaults(run=_run_geometry)


def _run_geometry(args: argparse.Namespace) -> int:
    from spatialvlm.diagnostics.geometry_plot import plot_geometry

    if args.max_points < 1:
        raise ValueError(f"--max-points must be >= 1, got {args.max_points}")
    picture = plot_geometry(args.directory, args.out, max_points=args.max_points, confidence_threshold=args.confidence)
    scale = "metres" if picture.metric_scale else f"relative scale ({picture.units})"
    print(f"wrote {picture.path} ({len(picture.frame_indices)} frames, {picture.num_points} points, {scale})")
    return 0
