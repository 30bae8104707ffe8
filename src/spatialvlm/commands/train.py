"""``spatialvlm train``: fine-tune VLM² (LLaVA-style flags, transformers' Trainer underneath).

Every flag of ``ModelArguments``, ``DataArguments`` and transformers' ``TrainingArguments`` is
accepted, spelled as in LLaVA scripts (``--mm_tunable_parts dual_memory,mm_mlp_adapter
--lora_enable True``); a single ``.json`` argument reads them all from a file. Under ``torchrun`` or
``accelerate launch`` every process runs this command and the Trainer wires them together.
"""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  spatialvlm train --model_name_or_path llava-video-7b --data_path train.json \\
      --use_dual_memory True --mm_tunable_parts fusion,dual_memory,mm_mlp_adapter \\
      --lora_enable True --num_frames 32 --output_dir checkpoints/vlm2 --bf16 True

  spatialvlm train -h    lists every flag (model, data and transformers TrainingArguments)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    # The flags belong to HfArgumentParser, so this parser passes everything through untouched
    # ('+' as prefix char: no '-' token is taken for one of its own options).
    parser = subparsers.add_parser(
        "train",
        help="fine-tune VLM² on LLaVA-format video conversations (flags: spatialvlm train -h)",
        add_help=False,
        prefix_chars="+",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("hf_args", nargs=argparse.REMAINDER, help="LLaVA-style training flags")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from transformers import HfArgumentParser, TrainingArguments

    from ..train import DataArguments, ModelArguments, parse_train_args, run_training

    if not args.hf_args or args.hf_args[0] in ("-h", "--help"):
        parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), prog="spatialvlm train")
        parser.epilog = EXAMPLE
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        return 0 if args.hf_args else 2
    model_args, data_args, training_args = parse_train_args(args.hf_args)
    run_result = run_training(model_args, data_args, training_args)
    if training_args.should_log:
        print(run_result.summary)
        print(f"saved the trained parts to {training_args.output_dir}")
    return 0
