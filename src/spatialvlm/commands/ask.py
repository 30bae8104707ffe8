"""``spatialvlm ask``: answer a question about a video with a VLM² (or LLaVA-OneVision) checkpoint.

    spatialvlm ask --video scene.mp4 --geometry scene_geo/ --model ckpt/ "How many chairs are in the room?"

Each input kind is one member of the ``--video`` / ... group and one ``_ask_<kind>`` function, so a
new input (an image path) is a parser line and a function.
"""

from __future__ import annotations

import argparse
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
        "--budget", default="auto", metavar="512|768|1024|auto",
        help="--image: high-detail tokens K kept besides the 144 scaffold tokens, one of the selector's "
        "budgets (default auto: adaptive head)",
    )
    parser.add_argument(
        "--decoding", choices=("autoregressive", "diffusion"), default="autoregressive",
        help="--image: answer decoding (diffusion: masked diffusion with a prefix cache, 30 steps)",
    )
    parser.add_argument("--no-selector", action="store_true", help="--image: the base model's own image path")
    parser.add_argument(
        "--geometry",
        type=Path,
        help="per-frame geometry folder (frame_00000.safetensors ..., or ScanNet-style depth/ pose/)",
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--num-frames", type=int, default=32, help="frames sampled uniformly (default 32)")
    parser.add_argument("--all-frames", action="store_true", help="use every frame instead of sampling")
    parser.add_argument(
        "--allow-fewer-frames", action="store_true", help="use all frames of a video shorter than --num-frames"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length limit (default 16)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype (default float32)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--stats", action="store_true", help="print memory statistics after the answer")
    parser.add_argument(
        "--viz", type=Path, help="save a picture (PNG) here: the memory (--video) or the token selection (--image)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.num_frames < 1:
        raise ValueError(f"--num-frames must be >= 1, got {args.num_frames}")
    if not args.model.is_dir():
        raise FileNotFoundError(f"model directory {args.model} does not exist")
    if args.video is not None:
        return _ask_video(args)
    if args.image is not None:
        return _ask_image(args)
    raise ValueError("give an input (--video or --image)")


def _load(args: argparse.Namespace):
    import torch

    from ..models import load_vlm2

    return load_vlm2(args.model, dtype=getattr(torch, args.dtype), device=args.device)


def _ask_video(args: argparse.Namespace) -> int:
    from ..diagnostics import format_memory_statistics, memory_statistics, plot_memory_trace
    from ..models import ask_video

    if not args.video.is_file():
        raise FileNotFoundError(f"video {args.video} does not exist")
    model, processor = _load(args)
    if (args.stats or args.viz) and not model.config.use_dual_memory:
        raise ValueError("--stats and --viz describe the dual memory, but this model has use_dual_memory=False")
    result = ask_video(
        model,
        processor,
        args.video,
        args.question,
        geometry=args.geometry,
        num_frames=None if args.all_frames else args.num_frames,
        max_new_tokens=args.max_new_tokens,
        allow_fewer_frames=args.allow_fewer_frames,
        progress=not args.no_progress,
        record_memory=bool(args.stats or args.viz),
    )
    print(result.text)
    if args.stats:
        print(format_memory_statistics(memory_statistics(result.memory_state)), file=sys.stderr)
    if args.viz:
        plot_memory_trace(result.memory_trace, args.viz, title=f"VLM² dual memory: {args.video.name}")
        print(f"memory picture saved to {args.viz}", file=sys.stderr)
    return 0


def _ask_image(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from transformers import AutoTokenizer

    from ..models import ShirgXImagePath

    if not args.image.is_file():
        raise FileNotFoundError(f"image {args.image} does not exist")
    if args.no_selector and (args.viz or args.budget != "auto"):
        raise ValueError("--budget and --viz describe the SHIRG-X selection; drop --no-selector")
    model, selector, image_config = _load_image_model(args.model, getattr(torch, args.dtype), args.no_selector)
    model.to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    budget = None
    if selector is not None:
        selector.to(device=args.device, dtype=model.dtype).eval()
        if args.budget != "auto":
            if not args.budget.isdigit() or int(args.budget) not in selector.config.budgets:
                raise ValueError(f"--budget must be 'auto' or one of the selector's budgets {selector.config.budgets}")
            budget = int(args.budget)
    path = ShirgXImagePath(model, selector, image_config)
    image = Image.open(args.image)
    result = path.answer(
        image, args.question, tokenizer, decoding=args.decoding, budget=budget, max_new_tokens=args.max_new_tokens,
    )
    print(result.text)
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
            return trained.model, None, None
        return trained.model, trained.selector, trained.training_config.image_config()
    model = load_shirgx_base(directory, dtype=dtype)
    if no_selector:
        return model, None, None
    vision_dim = model.config.vision_config.hidden_size
    if (directory / SELECTOR_WEIGHTS_NAME).is_file():
        from ..models import ShirgXImageConfig

        selector = load_selector(directory, vision_dim)
        # The view's side follows the saved selector's grid (672 px for the default 48×48).
        side = selector.config.grid[0] * model.config.vision_config.patch_size
        return model, selector, ShirgXImageConfig(image_size=side)
    return model, ShirgXSelector(ShirgXConfig(vision_dim=vision_dim)), None
