"""``spatialvlm eval``: score a model, a baseline or any predictor on a local benchmark copy
(VSI-Bench, VSI-Bench-Debiased, VSTI-Bench, ReVSI, the synthetic image suite, ChartQA, DocVQA), and
``spatialvlm eval --compare RUN_A RUN_B``: diff two runs per task and per question."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# The names of spatialvlm.eval.runner.BENCHMARK_REGISTRY, listed here so `--help` imports nothing heavy.
BENCHMARK_NAMES: tuple[str, ...] = (
    "vsibench", "vsibench_debiased", "vstibench", "revsi", "shirgx-images", "chartqa", "docvqa",
)
# Frames a benchmark's videos are sampled with unless --frames says otherwise: ReVSI's videos are
# pre-sampled to their config's frame count, so all of their frames; 32 uniform otherwise (VSI-Bench).
DEFAULT_FRAMES: dict[str, str] = {"revsi": "all"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate on VSI-Bench(-Debiased) / VSTI-Bench / ReVSI / image suites / ChartQA / DocVQA (resumable)",
        description=(
            "Ask every question of a local benchmark copy with the official prompts, score with the "
            "official rules (and a separate lenient parse), and write predictions.jsonl, scores.md, "
            "scores.json, scores.png, bundle.json (reproducibility: fingerprint, model hash, frame "
            "indices, versions) and samples_<benchmark>.jsonl (lmms-eval's samples format) to --out. "
            "Rerunning into the same --out resumes when the run's settings are the same. "
            "--compare RUN_A RUN_B diffs two finished runs."
        ),
    )
    parser.add_argument("--benchmark", choices=BENCHMARK_NAMES, default="vsibench")
    parser.add_argument("--data", help="local benchmark directory (required unless --compare)")
    parser.add_argument("--split", help="split to read; default the benchmark's (test; val for docvqa)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="VLM² / LLaVA-OneVision checkpoint directory (video benchmarks)")
    source.add_argument(
        "--baseline", choices=("chance", "most-frequent", "category-prior", "answer-key"),
        help="model-free predictor (chance, most-frequent and category-prior need --train-data; "
        "category-prior: training median / most frequent option per question type and named category)",
    )
    source.add_argument(
        "--predictor", metavar="MODULE:NAME",
        help="any importable callable (item, prompt) -> answer text; a class is instantiated without arguments",
    )
    source.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
        help="print a per-task and per-question diff of two finished --out directories, then exit",
    )
    parser.add_argument("--train-data", help="benchmark directory with a train split, for the baselines")
    parser.add_argument("--out", help="output directory; default eval_out/<benchmark>")
    parser.add_argument("--limit", type=_positive_int, help="only the first N questions (N >= 1)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming")
    parser.add_argument(
        "--frames", "--num-frames", dest="frames", metavar="POLICY",
        help="frame sampling: a count sampled uniformly (8, 16, 32, 64), 'all', or '<fps>fps[:<cap>]' "
        "such as 1fps:64; default 32 ('all' for revsi, whose videos are pre-sampled)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length; default 16 (official)")
    parser.add_argument(
        "--geometry-root",
        help="root holding <dataset>/<scene_name>_geometry/ folders; default --data (synthetic layout)",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="model dtype")
    parser.add_argument(
        "--coordinate-normalization", choices=("per_video", "metric", "fixed"),
        help="--model: how point coordinates are normalised (default: the checkpoint's)",
    )
    parser.add_argument("--device", help="model device, e.g. cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chance baseline")
    parser.set_defaults(run=run)


def _model_predictor(args: argparse.Namespace):
    import torch

    from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor

    dtype = getattr(torch, args.dtype) if args.dtype else None
    return VLM2VideoPredictor(
        args.model, frames=args.frames or DEFAULT_FRAMES.get(args.benchmark, "32"),
        geometry_root=args.geometry_root or args.data, max_new_tokens=args.max_new_tokens,
        dtype=dtype, device=args.device, coordinate_normalization=args.coordinate_normalization,
    )


def _files_hash(paths) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()


def _predictor_identity(args: argparse.Namespace) -> tuple[dict, dict | None, dict | None, dict]:
    """(predictor fingerprint, frames, decoding, extra bundle facts) of this run, known before any
    model loads, so a resume into another run's --out fails at once."""
    from spatialvlm.data.frame_sampling import FrameSampling
    from spatialvlm.eval.bundle import model_record

    if args.model:
        model = model_record(args.model)
        identity = {"kind": "model", "content_sha256": model["content_sha256"], "converter": model["converter"]}
        if "base_model" in model:  # a training output: its base weights count too
            identity["base_content_sha256"] = model["base_model"]["content_sha256"]
        if args.coordinate_normalization:  # overrides the checkpoint's: other tokens, other answers
            identity["coordinate_normalization"] = args.coordinate_normalization
        geometry = str(Path(args.geometry_root or args.data).resolve())
        details = {"model": model, "geometry_root": geometry, "seed": args.seed}
        frames = FrameSampling.parse(args.frames or DEFAULT_FRAMES.get(args.benchmark, "32")).to_dict()
        decoding = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "num_beams": 1,
                    "dtype": args.dtype or "as stored"}
        return identity, frames, decoding, details
    if args.predictor:
        return {"kind": "predictor", "name": args.predictor}, None, None, {"seed": args.seed}
    identity = {"kind": "baseline", "name": args.baseline}
    if args.baseline == "chance":
        identity["seed"] = args.seed
    if args.baseline != "answer-key" and args.train_data:  # without it the baseline refuses to build
        from spatialvlm.data.readers import find_split_files

        try:
            identity["train_data_sha256"] = _files_hash(find_split_files(args.train_data, "train"))
        except FileNotFoundError:  # image layouts (ChartQA folders): the directory names the data
            identity["train_data"] = str(Path(args.train_data).resolve())
    return identity, None, None, {"seed": args.seed, "train_data": args.train_data}


def _baseline_predictor(args: argparse.Namespace):
    from spatialvlm.eval import AnswerKey, CategoryPriorBaseline, ChanceBaseline, MostFrequentBaseline
    from spatialvlm.eval.image_baselines import ImageAnswerKey, ImageChanceBaseline, ImageMostFrequentBaseline
    from spatialvlm.eval.runner import get_benchmark

    spec = get_benchmark(args.benchmark)
    image = spec.modality == "image"
    if args.baseline == "answer-key":
        return ImageAnswerKey() if image else AnswerKey()
    if not args.train_data:
        raise ValueError(f"--baseline {args.baseline} needs --train-data (a directory with a train split)")
    train = spec.read(Path(args.train_data), "train")
    if args.baseline == "category-prior":
        if image:
            raise ValueError(f"--baseline category-prior is for the video benchmarks; {args.benchmark} names no object categories")
        return CategoryPriorBaseline(train)
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
    from dataclasses import asdict

    from spatialvlm.eval import evaluate_directory
    from spatialvlm.eval.bundle import check_resume, compare_runs, run_fingerprint
    from spatialvlm.eval.image_prompts import ImagePromptConfig
    from spatialvlm.eval.prompts import default_prompt_config
    from spatialvlm.eval.runner import PREDICTIONS_FILE, get_benchmark, load_predictions

    if args.compare:
        print(compare_runs(*args.compare), end="")
        return 0
    if not args.data:
        raise ValueError("--data is required: the local benchmark directory (or use --compare RUN_A RUN_B)")
    if not (args.model or args.baseline or args.predictor):
        raise ValueError("say what answers: --model CHECKPOINT_DIR, --baseline NAME or --predictor MODULE:NAME")
    if args.frames and not args.model:
        raise ValueError("--frames applies to --model only (baselines and --predictor callables read no frames)")
    spec = get_benchmark(args.benchmark)
    if args.model and spec.modality != "video":
        raise ValueError(
            f"--model loads a VLM² video checkpoint; for {args.benchmark} pass --predictor MODULE:NAME "
            "(a callable (item, prompt) -> answer; item.image_path is the image) or --baseline"
        )
    out = Path(args.out or Path("eval_out") / args.benchmark)
    split = args.split or spec.default_split
    if spec.modality == "video":
        prompts = default_prompt_config("vsibench" if args.benchmark == "vsibench_debiased" else args.benchmark)
    else:
        prompts = ImagePromptConfig()
    identity, frames, decoding, details = _predictor_identity(args)
    fingerprint = run_fingerprint(args.benchmark, split, identity, asdict(prompts), frames, decoding)
    if not args.no_resume:
        check_resume(out, fingerprint, has_predictions=bool(load_predictions(out / PREDICTIONS_FILE)))
    if args.model:
        predictor = _model_predictor(args)
    elif args.predictor:
        predictor = _imported_predictor(args.predictor)
    else:
        predictor = _baseline_predictor(args)
    name = Path(args.model).name if args.model else (args.predictor or args.baseline)
    result = evaluate_directory(
        args.data, predictor, out, args.benchmark, split=split, limit=args.limit,
        resume=not args.no_resume, title=f"{args.benchmark} — {name}", prompt_config=prompts,
        fingerprint=fingerprint, run_details={**details, "decoding": decoding, "frame_sampling": frames},
    )
    print(result.scores_markdown_path.read_text())
    if result.skipped:
        print(
            f"skipped {sum(result.skipped.values())} rows whose question types {args.benchmark} does not score: "
            f"{result.skipped}"
        )
    print(
        f"{result.num_predicted} answered now, {result.num_resumed} resumed; wrote {result.predictions_path}, "
        f"{result.scores_json_path}, {result.scores_markdown_path}, {result.chart_path}, {result.bundle_path}, "
        f"{result.samples_path}"
    )
    return 0
