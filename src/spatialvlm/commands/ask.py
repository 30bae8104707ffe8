"""``spatialvlm ask``: answer a question about a video with a VLM² (or LLaVA-OneVision) checkpoint.

    spatialvlm ask --video scene.mp4 --geometry scene_geo/ --model ckpt/ "How many chairs are in the room?"

Each input kind is one member of the ``--video`` / ... group and one ``_ask_<kind>`` function, so a
new input (an image path) is a parser line and a function.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")

# --diffusion-<flag>: a DiffusionConfig field each (same name with '_'), its type or choices, its help.
DIFFUSION_FLAGS: tuple[tuple[str, type | tuple[str, ...], str], ...] = (
    ("steps", int, "denoising steps in total, split evenly over the blocks (default: the answer length, "
     "one token per step); LLaDA's example: 128 steps for 128 tokens in blocks of 32"),
    ("block-length", int, "tokens per semi-autoregressive block; must divide --max-new-tokens (default: one block)"),
    ("steps-per-block", int, "LaViDa's step_per_block: steps of each block (instead of --diffusion-steps)"),
    ("remasking", ("low_confidence", "margin", "entropy", "random"),
     "which masked positions are committed first (default low_confidence, LLaDA's)"),
    ("cfg-scale", float, "classifier-free guidance scale (default 0: off)"),
    ("attention", ("bidirectional", "prefix_dlm"),
     "answer attention (default: the checkpoint's training attention; prefix_dlm: LaViDa's cached inference)"),
)


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
        "--post-prompt", metavar="TEXT|lmms",
        help="--image: text after the question in the prompt, not scored for relevance ('\\n' is a newline; "
        "'lmms': lmms-eval's \"Answer the question using a single word or phrase.\", what the synthetic suite trains with)",
    )
    diffusion = parser.add_argument_group(
        "masked diffusion (--decoding diffusion; defaults: LLaDA generate()'s, see docs/diffusion.md)"
    )
    for flag, kind, meaning in DIFFUSION_FLAGS:
        options = {"choices": kind} if isinstance(kind, tuple) else {"type": kind, "metavar": kind.__name__.upper()}
        diffusion.add_argument(f"--diffusion-{flag}", dest=f"diffusion_{flag.replace('-', '_')}", help=meaning, **options)
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
            ("--no-selector", args.no_selector), ("--post-prompt", args.post_prompt is not None),
            *((f"--diffusion-{flag}", getattr(args, f"diffusion_{flag.replace('-', '_')}") is not None)
              for flag, _, _ in DIFFUSION_FLAGS),
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


def _diffusion_config(args: argparse.Namespace, mask_token_id: int):
    """--diffusion-* as a DiffusionConfig (answer length: --max-new-tokens); None without diffusion."""
    from ..models import DiffusionConfig

    given = {
        flag: getattr(args, f"diffusion_{flag.replace('-', '_')}") for flag, _, _ in DIFFUSION_FLAGS
        if getattr(args, f"diffusion_{flag.replace('-', '_')}") is not None
    }
    if args.decoding != "diffusion":
        if given:
            named = " and ".join(f"--diffusion-{flag}" for flag in given)
            verb, pronoun = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise ValueError(f"{named} only {verb} to --decoding diffusion; add that or drop {pronoun}")
        return None
    if mask_token_id is None:
        raise ValueError(f"the tokenizer of {args.model} has no mask token; --decoding diffusion needs a masked-diffusion model")
    fields = {flag.replace("-", "_"): value for flag, value in given.items()}
    try:
        return DiffusionConfig(mask_token_id=mask_token_id, answer_length=args.max_new_tokens, **fields)
    except ValueError as error:
        # DiffusionConfig names its fields; the user typed flags.
        names = {"answer_length": "--max-new-tokens"} | {
            flag.replace("-", "_"): f"--diffusion-{flag}" for flag, _, _ in DIFFUSION_FLAGS
        }
        pattern = r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b"
        message = re.sub(pattern, lambda match: names[match.group(1)], str(error))
        raise ValueError(f"masked diffusion: {message}") from error


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


def _load(args: argparse.Namespace, **flags):
    import torch
    from safetensors import SafetensorError

    from ..geometry import parse_coordinate_stats
    from ..models import load_vlm2
    from .inputs import corrupt_weights_error, transformers_output

    try:
        with transformers_output(progress=not args.no_progress):
            model, processor = load_vlm2(
                args.model, dtype=getattr(torch, args.dtype), device=args.device, **_coordinate_options(args), **flags
            )
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
    skip_fusion = args.no_fusion and config.get("use_spatial_fusion", True)
    # --no-fusion builds the model without the block (its stored weights are left unread).
    model, processor = _load(args, **({"use_spatial_fusion": False} if skip_fusion else {}))
    if skip_fusion:
        print(f"--no-fusion: the fusion block of {args.model} is not built; answering from the frames alone", file=sys.stderr)
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


def _post_prompt(value: str | None) -> str:
    """``--post-prompt``: "" when absent, lmms-eval's image post-prompt for "lmms", else the text."""
    if value is None:
        return ""
    if value == "lmms":
        from ..eval.image_prompts import ImagePromptConfig

        return ImagePromptConfig().post_prompt
    return value.replace("\\n", "\n")


def _ask_image(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer

    from ..models import ShirgXImagePath, load_shirgx_image_model

    from ..data.preprocess import load_image
    from .inputs import transformers_output, warn

    if args.no_selector and (args.viz or args.budget is not None):
        raise ValueError("--budget and --viz describe the SHIRG-X selection; drop --no-selector")
    _diffusion_config(args, mask_token_id=0)  # a bad combination fails before the model loads
    image = load_image(args.image)  # before the model: a bad file fails in a second
    with transformers_output(progress=not args.no_progress):
        loaded = load_shirgx_image_model(args.model, getattr(torch, args.dtype), args.no_selector)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    print(f"selector: {loaded.selector_source.replace('(no_selector:', '(--no-selector:')}", file=sys.stderr)
    model, selector, image_config = loaded.model, loaded.selector, loaded.image_config
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
        max_new_tokens=args.max_new_tokens, post_prompt=_post_prompt(args.post_prompt),
        diffusion_config=_diffusion_config(args, tokenizer.mask_token_id) if args.decoding == "diffusion" else None,
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
