"""``spatialvlm eval``: score a model, a baseline or any predictor on a local benchmark copy
(VSI-Bench, VSTI-Bench, the synthetic image suite, ChartQA, DocVQA)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# The names of spatialvlm.eval.runner.BENCHMARK_REGISTRY, listed here so `--help` imports nothing heavy.
BENCHMARK_NAMES: tuple[str, ...] = ("vsibench", "vstibench", "shirgx-images", "chartqa", "docvqa")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate on VSI-Bench / VSTI-Bench / image suites / ChartQA / DocVQA (resumable)",
        description=(
            "Ask every question of a local benchmark copy with the official prompts, score with the "
            "official rules (and a separate lenient parse), and write predictions.jsonl, scores.md, "
            "scores.json and scores.png to --out. Rerunning into the same --out resumes."
        ),
    )
    parser.add_argument("--benchmark", choices=BENCHMARK_NAMES, default="vsibench")
    parser.add_argument("--data", required=True, help="local benchmark directory")
    parser.add_argument("--split", help="split to read; default the benchmark's (test; val for docvqa)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="VLM² / LLaVA-OneVision checkpoint directory (video benchmarks)")
    source.add_argument(
        "--baseline", choices=("chance", "most-frequent", "answer-key"),
        help="model-free predictor (chance and most-frequent need --train-data)",
    )
    source.add_argument(
        "--predictor", metavar="MODULE:NAME",
        help="any importable callable (item, prompt) -> answer text; a class is instantiated without arguments",
    )
    parser.add_argument("--train-data", help="benchmark directory with a train split, for the baselines")
    parser.add_argument("--out", help="output directory; default eval_out/<benchmark>")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--num-frames", type=int, default=32, help="frames sampled per video; default 32")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length; default 16 (official)")
    parser.add_argument(
        "--geometry-root",
        help="root holding <dataset>/<scene_name>_geometry/ folders; default --data (synthetic layout)",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="model dtype")
    parser.add_argument("--device", help="model device, e.g. cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chance baseline")
    parser.set_defaults(run=run)


def _model_predictor(args: argparse.Namespace):
    import torch

    from spatialvlm.models.inference import answer_video_question, load_vlm2

    dtype = getattr(torch, args.dtype) if args.dtype else None
    model, processor = load_vlm2(args.model, dtype=dtype, device=args.device)
    geometry_root = Path(args.geometry_root or args.data)

    def predict(item, prompt: str) -> str:
        geometry = geometry_root / item.dataset / f"{item.scene_name}_geometry"
        return answer_video_question(
            model, processor, item.video_path, prompt,
            geometry=geometry if geometry.is_dir() else None,
            num_frames=args.num_frames, max_new_tokens=args.max_new_tokens, allow_fewer_frames=True,
        )

    return predict


def _baseline_predictor(args: argparse.Namespace):
    from spatialvlm.eval import AnswerKey, ChanceBaseline, MostFrequentBaseline
    from spatialvlm.eval.image_baselines import ImageAnswerKey, ImageChanceBaseline, ImageMostFrequentBaseline
    from spatialvlm.eval.runner import get_benchmark

    spec = get_benchmark(args.benchmark)
    image = spec.modality == "image"
    if args.baseline == "answer-key":
        return ImageAnswerKey() if image else AnswerKey()
    if not args.train_data:
        raise ValueError(f"--baseline {args.baseline} needs --train-data (a directory with a train split)")
    train = spec.read(Path(args.train_data), "train")
    if args.baseline == "chance":
        return ImageChanceBaseline(train, seed=args.seed) if image else ChanceBaseline(train, seed=args.seed)
    return ImageMostFrequentBaseline(train) if image else MostFrequentBaseline(train)


def _imported_predictor(reference: str):
    module_name, _, name = reference.partition(":")
    if not module_name or not name:
        raise ValueError(f"--predictor wants MODULE:NAME (e.g. mypkg.predictors:answer); got {reference!r}")
    try:
        target = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--predictor {reference}: {error}") from error
    predictor = target() if isinstance(target, type) else target
    if not callable(predictor):
        raise ValueError(f"--predictor {reference} is not callable")
    return predictor


def run(args: argparse.Namespace) -> int:
    from spatialvlm.eval import evaluate_directory
    from spatialvlm.eval.runner import get_benchmark

    spec = get_benchmark(args.benchmark)
    if args.model and spec.modality != "video":
        raise ValueError(
            f"--model loads a VLM² video checkpoint; for {args.benchmark} pass --predictor MODULE:NAME "
            "(a callable (item, prompt) -> answer; item.image_path is the image) or --baseline"
        )
    if args.model:
        predictor = _model_predictor(args)
    elif args.predictor:
        predictor = _imported_predictor(args.predictor)
    else:
        predictor = _baseline_predictor(args)
    out = Path(args.out or Path("eval_out") / args.benchmark)
    name = Path(args.model).name if args.model else (args.predictor or args.baseline)
    result = evaluate_directory(
        args.data, predictor, out, args.benchmark, split=args.split, limit=args.limit,
        resume=not args.no_resume, title=f"{args.benchmark} — {name}",
    )
    print(result.scores_markdown_path.read_text())
    print(
        f"{result.num_predicted} answered now, {result.num_resumed} resumed; wrote {result.predictions_path}, "
        f"{result.scores_json_path}, {result.scores_markdown_path}, {result.chart_path}"
    )
    return 0
