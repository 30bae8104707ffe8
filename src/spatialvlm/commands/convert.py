"""``spatialvlm convert FORMAT …``: turn an original checkpoint into a directory ``load_vlm2`` reads.

    spatialvlm convert llava-video SRC DST [--vision-config FILE] [--dtype bfloat16]
    spatialvlm convert vlm3r --base BASE --adapter RELEASE DST [--merge-lora]
    spatialvlm convert lavida SRC DST [--vision-config FILE] [--tokenizer DIR]   LaViDa-LLaDA for SHIRG-X
    spatialvlm convert llava-video SRC --dry-run [--vlm2]  the plan of the real model, on the meta device
    spatialvlm convert llava-video LLaVA-Video-7B-Qwen2 --dry-run --vlm2   (built-in config, no download)

Each source format has its own subcommand and its own module in ``spatialvlm/convert/``; every
subcommand prints what it mapped and fails, listing them, on source tensors it did not use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original checkpoint (LLaVA-Video, VLM-3R, ...) into a VLM² / HF directory",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    _register_llava_video(formats)
    _register_vlm3r(formats)
    _register_lavida(formats)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="store weights in this dtype; default: the source's")
    parser.add_argument(
        "--vision-config",
        type=Path,
        default=None,
        help="SiglipVisionConfig JSON of the vision tower when mm_vision_tower is not a known name",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing: build the configuration on the meta device and print parameters and memory",
    )
    parser.add_argument("--frames", type=int, default=32, help="frames of the --dry-run memory estimate (default 32)")


# ---------------------------------------------------------------------- llava-video
def _register_llava_video(formats: argparse._SubParsersAction) -> None:
    parser = formats.add_parser(
        "llava-video",
        help="an original LLaVA-Video / LLaVA-OneVision directory (LLaVA-NeXT layout, model_type llava_qwen)",
        description=(
            "Convert an original LLaVA-NeXT-layout checkpoint (LLaVA-Video-7B-Qwen2, LLaVA-OneVision-qwen2) "
            "into a VLM² directory with LLaVA-Video's own video token layout and prompt."
        ),
    )
    parser.add_argument("source", type=Path, help="original checkpoint directory (config.json + weights)")
    parser.add_argument("destination", type=Path, nargs="?", help="output directory (not needed with --dry-run)")
    _common(parser)
    parser.add_argument(
        "--vlm2",
        action="store_true",
        help="with --dry-run: plan the full VLM² (fusion with injection and alignment, dual memory) on this base",
    )
    parser.set_defaults(run=_run_llava_video)


def _run_llava_video(args: argparse.Namespace) -> int:
    from ..convert import convert_llava_video, plan_llava_video

    if args.dry_run:
        flags = dict(use_spatial_fusion=True, use_dual_memory=True) if args.vlm2 else {}
        print(plan_llava_video(args.source, vision_config=args.vision_config, frames=args.frames, **flags).summary())
        return 0
    if args.vlm2:
        raise ValueError("--vlm2 only applies to --dry-run; a converted directory gets VLM² flags at load time")
    _require_destination(args)
    report = convert_llava_video(args.source, args.destination, vision_config=args.vision_config, dtype=args.dtype)
    print(report.summary())
    return 0


# ---------------------------------------------------------------------- vlm3r
def _register_vlm3r(formats: argparse._SubParsersAction) -> None:
    parser = formats.add_parser(
        "vlm3r",
        help="a VLM-3R release (peft LoRA + non_lora_trainables.bin) on its LLaVA-Video base",
        description=(
            "Convert a VLM-3R training output (adapter_config.json, adapter_model.*, non_lora_trainables.bin, "
            "config.json) on top of its LLaVA-Video base into a VLM² directory: the fusion block becomes "
            "GeometryFusion, the projector is the release's, the LoRA is kept as a peft adapter or merged."
        ),
    )
    parser.add_argument("destination", type=Path, nargs="?", help="output directory (not needed with --dry-run)")
    parser.add_argument("--base", type=Path, required=True, help="the original LLaVA-Video directory, or a converted one")
    parser.add_argument("--adapter", type=Path, required=True, help="the VLM-3R release / training output folder")
    parser.add_argument("--merge-lora", action="store_true", help="merge the LoRA into the weights (W += α/r·B·A)")
    _common(parser)
    parser.set_defaults(run=_run_vlm3r)


def _run_vlm3r(args: argparse.Namespace) -> int:
    from ..convert import convert_vlm3r, plan_vlm3r

    if args.dry_run:
        print(plan_vlm3r(args.base, args.adapter, vision_config=args.vision_config, frames=args.frames).summary())
        return 0
    _require_destination(args)
    report = convert_vlm3r(
        args.base,
        args.adapter,
        args.destination,
        vision_config=args.vision_config,
        dtype=args.dtype,
        merge_lora=args.merge_lora,
    )
    print(report.summary())
    return 0


# ---------------------------------------------------------------------- lavida
def _register_lavida(formats: argparse._SubParsersAction) -> None:
    parser = formats.add_parser(
        "lavida",
        help="a LaViDa-LLaDA release (model_type llava_llada) for the SHIRG-X image path",
        description=(
            "Convert a LaViDa-LLaDA release (LLaDA-8B + fine-tuned 26-layer SigLIP + mlp2x_gelu projector) into "
            "a LLaVA-OneVision directory the SHIRG-X image path loads offline, with LaViDa's mask token, "
            "conv_llava_llada prompt, stop id and a reserved <image> id. See docs/diffusion.md."
        ),
    )
    parser.add_argument("source", type=Path, help="LaViDa release directory (config.json + weights + tokenizer)")
    parser.add_argument("destination", type=Path, help="output directory")
    parser.add_argument("--vision-config", type=Path, default=None,
                        help="SiglipVisionConfig JSON of the tower (default: so400m's, when the widths are so400m's)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer directory when SRC has none (LLaDA-8B-Instruct's)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="store weights in this dtype; default: the source's")
    parser.add_argument("--training-attention", choices=("bidirectional", "prefix_dlm"), default="bidirectional",
                        help="attention the checkpoint was trained with (LaViDa: bidirectional, prefix_lm=False)")
    parser.set_defaults(run=_run_lavida)


def _run_lavida(args: argparse.Namespace) -> int:
    from ..convert.lavida import convert_lavida

    report = convert_lavida(args.source, args.destination, vision_config=args.vision_config,
                            tokenizer=args.tokenizer, dtype=args.dtype, training_attention=args.training_attention)
    print(report.summary())
    return 0


def _require_destination(args: argparse.Namespace) -> None:
    if args.destination is None:
        raise ValueError("give the output directory DST (or --dry-run to only print the plan)")
