"""``spatialvlm synth``: write a synthetic 3D spatial benchmark split (videos, geometry, questions),
or with ``--images`` a split of the high-detail image suite for SHIRG-X."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render procedural indoor scenes (or, with --images, high-detail images) with exact questions",
        description=(
            "Render procedural box rooms (RGB mp4, per-frame depth/points/pose/intrinsics) and write "
            "questions of all 8 VSI-Bench types and the VSTI-Bench camera tasks to OUT/<split>.jsonl "
            "(and the VSI-Bench ones as LLaVA-format training conversations to OUT/<split>_llava.json). "
            "With --images: draw 672 px images whose answers hang on small details (mark grids, code "
            "tables, bar charts, shape layouts) to OUT/images/ and their questions to OUT/<split>.jsonl."
        ),
    )
    parser.add_argument("--out", required=True, help="output directory (the benchmark root)")
    parser.add_argument("--images", action="store_true", help="write the SHIRG-X image suite instead of 3D scenes")
    parser.add_argument("--count", type=int, default=64, help="--images: number of images; default 64")
    parser.add_argument("--questions-per-image", type=int, default=2, help="--images: default 2")
    parser.add_argument(
        "--families", default="marks,glyphs,bars,layout",
        help="--images: comma-separated families, cycled over images; default all four",
    )
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes (videos); default 8")
    parser.add_argument("--frames", type=int, default=48, help="frames per video; default 48")
    parser.add_argument("--seed", type=int, default=0, help="base seed; default 0")
    parser.add_argument("--size", type=int, help="frame / image side in pixels; default 96 (scenes), 672 (images)")
    parser.add_argument("--split", default="test", help="split name, also the jsonl stem; default test")
    parser.add_argument(
        "--questions-per-type", type=int, default=1,
        help="per scene and type; default 1 (room size has one per scene: equal weight for every type)",
    )
    parser.add_argument("--no-points", action="store_true", help="store depth+pose+intrinsics only (no point maps)")
    parser.set_defaults(run=run)


def _run_images(args: argparse.Namespace) -> int:
    import json
    from collections import Counter

    from spatialvlm.data.synthetic_images import ImageSuiteConfig, generate_image_suite

    if args.count < 1:
        raise ValueError(f"need --count >= 1; got {args.count}")
    _check_size(args.size, even=False)
    config = ImageSuiteConfig(
        num_images=args.count,
        image_size=args.size or 672,
        seed=args.seed,
        split=args.split,
        questions_per_image=args.questions_per_image,
        families=tuple(name.strip() for name in args.families.split(",") if name.strip()),
    )
    path = generate_image_suite(args.out, config)
    counts = Counter(json.loads(line)["question_type"] for line in path.open())
    print(f"wrote {sum(counts.values())} questions about {args.count} images to {path}")
    for name, count in sorted(counts.items()):
        print(f"  {name:32s} {count}")
    return 0


MIN_SIZE = 16
"""Smallest --size: below it the rendered objects are a pixel or two."""


def _check_size(size: int | None, even: bool) -> None:
    # 0 would otherwise mean "the default" (``args.size or 96``) without a word.
    if size is None:
        return
    if size < MIN_SIZE:
        raise ValueError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if even and size % 2:
        raise ValueError(f"--size must be even for the H.264 videos (yuv420p), got {size}")


def run(args: argparse.Namespace) -> int:
    import json
    from collections import Counter

    from spatialvlm.data.synthetic import QuestionConfig, SynthConfig, generate_split

    if args.images:
        return _run_images(args)
    if args.scenes < 1 or args.frames < 2:
        raise ValueError(f"need --scenes ≥ 1 and --frames ≥ 2; got {args.scenes} and {args.frames}")
    _check_size(args.size, even=True)
    config = SynthConfig(
        num_scenes=args.scenes,
        num_frames=args.frames,
        image_size=args.size or 96,
        seed=args.seed,
        split=args.split,
        write_points=not args.no_points,
        questions=QuestionConfig(questions_per_type=args.questions_per_type),
    )
    path = generate_split(args.out, config)
    counts = Counter(json.loads(line)["question_type"] for line in path.open())
    print(f"wrote {sum(counts.values())} questions about {args.scenes} scenes to {path}")
    for name, count in sorted(counts.items()):
        print(f"  {name:32s} {count}")
    conversations = _write_conversations(path, args.split)
    print(f"and the VSI-Bench ones as LLaVA-format training conversations to {conversations} "
          "(spatialvlm train --data_path)")
    return 0


def _write_conversations(split_file, split: str):
    """``<split>_llava.json`` beside the split: each VSI-Bench question as a training conversation
    (human: the official evaluation prompt, gpt: the exact answer), videos and geometry relative."""
    import json

    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types
    from spatialvlm.experiments.vlm2_ablation import llava_records

    items = read_benchmark(split_file.parent, split, question_types("vsibench"))
    path = split_file.parent / f"{split}_llava.json"
    path.write_text(json.dumps(llava_records(items), indent=1) + "\n")
    return path
