"""``spatialvlm ask``: answer a question about a video with a VLM² (or LLaVA-OneVision) checkpoint.

    spatialvlm ask --video scene.mp4 --geometry scene_geo/ --model ckpt/ "How many chairs are in the room?"

Each input kind is one member of the ``--video`` / ... group and one ``_ask_<kind>`` function, so a
new input (an image path) is a parser line and a function.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="answer a question about a video (VLM²) or an image (SHIRG-X)",
        description="Answer a question about a video with a VLM² / LLaVA-OneVision checkpoint (offline).",
    )
    parser.add_argument("question", help="the question, e.g. 'How many chairs are in the room?'")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--video", type=Path, help="video file (mp4, avi, mkv, ...)")
    inputs.add_argument("--image", type=Path, help="image file: SHIRG-X image path (one 672 px view)")
    parser.add_argument(
        "--budget", metavar="512|768|1024|auto",
        help="--image: high-detail tokens K kept besides the 144 scaffold tokens, one of the selector's "
        "budgets (default auto: adaptive head)",
    )
    parser.add_argument(
        "--decoding", choices=("autoregressive", "diffusion"),
        help="--image: answer decoding (default autoregressive; diffusion: masked diffusion, one token per step, "
        "the attention the checkpoint was trained with)",
    )
    parser.add_argument("--no-selector", action="store_true", help="--image: the base model's own image path")
    parser.add_argument(
        "--geometry",
        type=Path,
        help="--video: per-frame geometry folder (frame_00000.safetensors ..., or ScanNet-style depth/ pose/), or a VLM-3R .pt feature file",
    )
    parser.add_argument(
        "--geometry-backend", metavar="NAME",
        help="--video: make the geometry with this installed 3D model (vggt, pi3, cut3r, depth_anything3, mapanything), "
        "cached beside the video (spatialvlm geometry extract)",
    )
    parser.add_argument("--geometry-weights", type=Path, help="--geometry-backend: the 3D model's local weights")
    parser.add_argument(
        "--no-fusion", action="store_true",
        help="--video: answer without geometry on a checkpoint that runs the fusion block, by skipping the "
        "block (answers then differ from the trained model's)",
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    parser.add_argument(
        "--frames", "--num-frames", dest="frames", metavar="POLICY",
        help="--video: frame sampling, as spatialvlm eval --frames: N uniform (8, 16, 32, 64), "
        "'<fps>fps[:<cap>]' (e.g. 1fps:64) or 'all' (default 32)",
    )
    parser.add_argument("--all-frames", action="store_true", help="use every frame instead of sampling (= --frames all)")
    parser.add_argument(
        "--allow-fewer-frames", action="store_true",
        help="use all frames of a video shorter than --num-frames, and the decodable frames of a truncated one",
    )
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length limit (default 16)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype (default float32)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--stats", action="store_true", help="print memory statistics after the answer")
    parser.add_argument(
        "--viz", type=Path, help="save a picture (PNG) here: the memory (--video) or the token selection (--image)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (weight loading included)")
    parser.add_argument(
        "--coordinate-normalization", choices=("per_video", "metric", "fixed"),
        help="how point coordinates are normalised (default: the checkpoint's; 'metric' needs metric geometry)",
    )
    parser.add_argument("--coordinate-stats", metavar="X,Y,Z,SCALE", help="the statistics of 'fixed' normalisation")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .inputs import check_device, check_model_dir

    if not args.question.strip():
        raise ValueError("the question is empty; give it as the last argument, e.g. 'How many chairs are in the room?'")
    _check_flags_match_input(args)
    args.sampling = _frame_sampling(args)
    check_device(args.device)
    config = check_model_dir(args.model)
    if args.video is not None:
        return _ask_video(args, config)
    if args.image is not None:
        return _ask_image(args)
    raise ValueError("give an input (--video or --image)")


def _check_flags_match_input(args: argparse.Namespace) -> None:
    """Flags of the other input kind are an error rather than silently ignored."""
    if args.video is not None:
        used = [name for name, on in (
            ("--budget", args.budget is not None), ("--decoding", args.decoding is not None),
            ("--no-selector", args.no_selector),
        ) if on]
        kind, other = "--image", "--video"
    else:
        used = [name for name, on in (
            ("--geometry", args.geometry is not None), ("--no-fusion", args.no_fusion),
            ("--frames", args.frames is not None),
            ("--geometry-backend", args.geometry_backend is not None),
            ("--all-frames", args.all_frames), ("--allow-fewer-frames", args.allow_fewer_frames),
        ) if on]
        kind, other = "--video", "--image"
    if used:
        verb, pronoun = ("apply", "them") if len(used) > 1 else ("applies", "it")
        raise ValueError(f"{' and '.join(used)} only {verb} to {kind}; drop {pronoun} with {other}")
    if args.no_fusion and args.geometry is not None:
        raise ValueError("--no-fusion answers without geometry; drop --geometry (or --no-fusion to use it)")


def _frame_sampling(args: argparse.Namespace):
    """--frames / --num-frames / --all-frames as the FrameSampling policy eval and train use.

    Also sets ``args.num_frames`` / ``args.all_frames`` for the geometry cache of
    ``--geometry-backend``: an fps policy's frames are only known from the video, so its geometry
    covers every frame (matched by frame index).
    """
    from ..data.frame_sampling import FrameSampling

    if args.all_frames and args.frames is not None:
        raise ValueError(f"--all-frames and --frames {args.frames} both choose the frames; give one")
    try:
        sampling = FrameSampling.parse("all" if args.all_frames else (args.frames or "32"))
    except ValueError as error:
        raise ValueError(f"--frames: {error}") from error
    args.all_frames = sampling.num_frames is None
    args.num_frames = sampling.num_frames or 1
    return sampling


def _coordinate_options(args: argparse.Namespace) -> dict:
    """--coordinate-normalization as a load_vlm2 flag; --coordinate-stats checked in one line."""
    from ..geometry import parse_coordinate_stats

    mode = args.coordinate_normalization
    if args.coordinate_stats and mode != "fixed":
        raise ValueError("--coordinate-stats is for --coordinate-normalization fixed; add that or drop it")
    if mode == "fixed" and not args.coordinate_stats:
        raise ValueError("--coordinate-normalization fixed needs --coordinate-stats X,Y,Z,SCALE")
    if args.coordinate_stats:
        parse_coordinate_stats(args.coordinate_stats)
    return {} if mode is None else {"coordinate_normalization": mode}


def _load(args: argparse.Namespace):
    import torch
    from safetensors import SafetensorError

    from ..geometry import parse_coordinate_stats
    from ..models import load_vlm2
    from .inputs import corrupt_weights_error, transformers_output

    try:
        with transformers_output(progress=not args.no_progress):
            model, processor = load_vlm2(args.model, dtype=getattr(torch, args.dtype), device=args.device, **_coordinate_options(args))
            if args.coordinate_stats:  # 'fixed' normalisation: the user's statistics
                processor.coordinate_stats = parse_coordinate_stats(args.coordinate_stats)
            return model, processor
    except (SafetensorError, OSError, RuntimeError) as error:
        named = corrupt_weights_error(args.model, error)
        if named is None:
            raise
        raise named from error


def _ask_video(args: argparse.Namespace, config: dict) -> int:
    from ..data.video import FewerFramesError
    from ..diagnostics import format_memory_statistics, memory_statistics, plot_memory_trace
    from ..geometry import GeometryError
    from ..models import ask_video
    from .inputs import warn

    if args.video.is_dir():
        raise ValueError(f"video {args.video} is a folder, not a video file")
    if not args.video.is_file():
        raise FileNotFoundError(f"video {args.video} does not exist")
    if args.geometry_backend is not None or args.geometry_weights is not None:
        from .geometry import geometry_from_backend

        args.geometry = geometry_from_backend(args)  # extracted now, or the cache beside the video
    if args.geometry is not None and not (args.geometry.is_dir() or (args.geometry.suffix == ".pt" and args.geometry.is_file())):
        raise FileNotFoundError(f"geometry folder (or VLM-3R .pt feature file) {args.geometry} does not exist")
    # Every VLM² config stores use_spatial_fusion; a plain LLaVA-OneVision one gets VLM2Config's True.
    if config.get("use_spatial_fusion", True) and args.geometry is None and not args.no_fusion:
        raise ValueError(
            f"{args.model} runs the fusion block (use_spatial_fusion=True) and needs per-frame geometry: "
            "pass --geometry DIR (frame_XXXXX.safetensors files, or ScanNet-style depth/ pose/), "
            "or --no-fusion to answer without it"
        )
    model, processor = _load(args)
    if args.no_fusion and model.config.use_spatial_fusion:
        # What a model built with use_spatial_fusion=False computes: fuse_geometry is the identity.
        model.model.spatial_fusion = None
        model.config.use_spatial_fusion = False
        print(f"--no-fusion: the fusion block of {args.model} is not run; answering from the frames alone", file=sys.stderr)
    if (args.stats or args.viz) and not model.config.use_dual_memory:
        raise ValueError("--stats and --viz describe the dual memory, but this model has use_dual_memory=False")
    try:
        result = ask_video(
            model,
            processor,
            args.video,
            args.question,
            geometry=args.geometry,
            frames=args.sampling,
            max_new_tokens=args.max_new_tokens,
            allow_fewer_frames=args.allow_fewer_frames,
            progress=not args.no_progress,
            record_memory=bool(args.stats or args.viz),
        )
    except FewerFramesError as error:
        fix = (
            f"pass --allow-fewer-frames to use the {error.available} decodable frames"
            if error.truncated
            else f"pass --num-frames {error.available} (or fewer), --all-frames or --allow-fewer-frames"
        )
        raise ValueError(f"{error.problem}; {fix}") from error
    except GeometryError as error:
        raise ValueError(f"{error} (--geometry of video {args.video})") from error
    print(result.text)
    if not result.text:
        warn("ask", f"the model generated an empty answer ({result.num_new_tokens} new tokens, none of them text)")
    if args.stats:
        indices = ", ".join(str(int(i)) for i in result.frame_indices)
        print(f"frames ({args.sampling.describe()}): {len(result.frame_indices)} sampled: {indices}", file=sys.stderr)
        print(format_memory_statistics(memory_statistics(result.memory_state)), file=sys.stderr)
    if args.viz:
        plot_memory_trace(result.memory_trace, args.viz, title=f"VLM² dual memory: {args.video.name}")
        print(f"memory picture saved to {args.viz}", file=sys.stderr)
        if args.geometry is not None and args.geometry.is_dir():
            from .geometry import draw_geometry_beside

            draw_geometry_beside(args.geometry, args.viz)
    return 0


def _ask_image(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from transformers import AutoTokenizer

    from ..models import ShirgXImagePath

    from ..data.preprocess import load_image
    from .inputs import transformers_output, warn

    if args.no_selector and (args.viz or args.budget is not None):
        raise ValueError("--budget and --viz describe the SHIRG-X selection; drop --no-selector")
    image = load_image(args.image)  # before the model: a bad file fails in a second
    with transformers_output(progress=not args.no_progress):
        model, selector, image_config = _load_image_model(args.model, getattr(torch, args.dtype), args.no_selector)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    model.to(args.device).eval()
    budget = None
    if selector is not None:
        selector.to(device=args.device, dtype=model.dtype).eval()
        if args.budget not in (None, "auto"):
            if not args.budget.isdigit() or int(args.budget) not in selector.config.budgets:
                raise ValueError(f"--budget must be 'auto' or one of the selector's budgets {selector.config.budgets}")
            budget = int(args.budget)
    path = ShirgXImagePath(model, selector, image_config)
    result = path.answer(
        image, args.question, tokenizer, decoding=args.decoding or "autoregressive", budget=budget,
        max_new_tokens=args.max_new_tokens,
    )
    print(result.text)
    if not result.text:
        warn("ask", "the model generated an empty answer")
    if args.stats:
        stages = ", ".join(f"{name} {1e3 * seconds:.0f} ms" for name, seconds in result.timings.items())
        print(f"image tokens: {result.num_image_tokens}; {stages}", file=sys.stderr)
    if args.viz:
        from ..diagnostics.selection_plot import plot_selection

        plot_selection(image, result.selection, selector.config.grid, args.viz)
        print(f"selection picture saved to {args.viz}", file=sys.stderr)
    return 0


def _load_image_model(directory: Path, dtype, no_selector: bool):
    """``(model, selector or None, ShirgXImageConfig or None)`` for ``--image``.

    A SHIRG-X training checkpoint (``spatialvlm train --task shirgx``) rebuilds its base model with
    the projector adapters merged and its trained selector and image size. Any other directory is a
    LLaVA-OneVision / VLM² model (only its SigLIP + projector + language model are loaded); a
    selector saved beside it (``shirgx_selector.safetensors``, ``save_selector``) is used, else an
    untrained one (zero coordinate embedding, default-budget head): the training-free SHIRG-X.
    """
    from ..models.shirgx_vlm import load_shirgx_base
    from ..selection import SELECTOR_WEIGHTS_NAME, ShirgXConfig, ShirgXSelector, load_selector
    from ..train.checkpoint import MANIFEST_NAME, CheckpointManifest, load_trained_model

    if (directory / MANIFEST_NAME).is_file():
        task = CheckpointManifest.load(directory).task
        if task != "shirgx":
            raise ValueError(f"{directory} is a '{task}' training checkpoint; --image reads SHIRG-X ('shirgx') ones")
        trained = load_trained_model(directory, merge_lora=True, torch_dtype=dtype)
        if no_selector:
            _say_selector("none (--no-selector: the base model's own image path)")
            return trained.model, None, None
        _say_selector(f"the trained SHIRG-X selector of {directory} (spatialvlm train --task shirgx)")
        return trained.model, trained.selector, trained.training_config.image_config()
    from .inputs import transformers_output

    is_vlm2 = json.loads((directory / "config.json").read_text()).get("model_type") == "vlm2"
    # A VLM² checkpoint holds video modules the image path has no use for: transformers would list
    # each of them as an UNEXPECTED key (~50 lines); one line below says what runs instead.
    with transformers_output(reports=not is_vlm2):
        model = load_shirgx_base(directory, dtype=dtype)
    ignored = "; its VLM² video modules (fusion, memory) are not used" if is_vlm2 else ""
    if no_selector:
        _say_selector(f"none (--no-selector: the base model's own image path){ignored}")
        return model, None, None
    vision_dim = model.config.vision_config.hidden_size
    if (directory / SELECTOR_WEIGHTS_NAME).is_file():
        from ..models import ShirgXImageConfig

        selector = load_selector(directory, vision_dim)
        _say_selector(f"{directory / SELECTOR_WEIGHTS_NAME}{ignored}")
        # The view's side follows the saved selector's grid (672 px for the default 48×48).
        side = selector.config.grid[0] * model.config.vision_config.patch_size
        return model, selector, ShirgXImageConfig(image_size=side)
    _say_selector(
        f"untrained SHIRG-X (no {SELECTOR_WEIGHTS_NAME} in {directory}): training-free scoring, "
        f"zero coordinate embedding, untrained budget head{ignored}"
    )
    return model, ShirgXSelector(ShirgXConfig(vision_dim=vision_dim)), None


def _say_selector(what: str) -> None:
    print(f"selector: {what}", file=sys.stderr)
