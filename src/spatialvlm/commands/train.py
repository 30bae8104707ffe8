"""``spatialvlm train``: fine-tune VLM² or SHIRG-X (LLaVA-style flags, transformers' Trainer underneath).

Every flag of ``ModelArguments``, ``DataArguments`` and transformers' ``TrainingArguments`` is
accepted, spelled as in LLaVA scripts (``--mm_tunable_parts dual_memory,mm_mlp_adapter
--lora_enable True``); a single ``.json`` argument reads them all from a file. Under ``torchrun`` or
``accelerate launch`` every process runs this command and the Trainer wires them together.
``--task shirgx`` trains SHIRG-X on image QA (projector LoRA, coordinate embedding, budget head) and
adds that task's flags.
"""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  spatialvlm train --model_name_or_path llava-video-7b --data_path train.json \\
      --use_dual_memory True --mm_tunable_parts fusion,dual_memory,mm_mlp_adapter \\
      --lora_enable True --num_frames 32 --output_dir checkpoints/vlm2 --bf16 True
  spatialvlm train --task shirgx --model_name_or_path llava-onevision-7b --data_path images.jsonl \
      --output_dir checkpoints/shirgx --bf16 True

  ... --resume_from_checkpoint True  continue the latest checkpoint-N of --output_dir
  ... --overwrite_output_dir True    start afresh over an earlier run in --output_dir (else refused)
  spatialvlm ask --model checkpoints/vlm2 ...   the output (or a checkpoint-N in it) loads as a model

  spatialvlm train -h                lists every flag (model, data and transformers TrainingArguments)
  spatialvlm train --task shirgx -h  the same with the SHIRG-X flags
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    # The flags belong to HfArgumentParser, so this parser passes everything through untouched
    # ('+' as prefix char: no '-' token is taken for one of its own options).
    parser = subparsers.add_parser(
        "train",
        help="fine-tune VLM² on video conversations, or SHIRG-X on image QA (--task shirgx; flags: spatialvlm train -h)",
        add_help=False,
        prefix_chars="+",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("hf_args", nargs=argparse.REMAINDER, help="LLaVA-style training flags")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train import parse_train_args, run_training
    from ..train.arguments import requested_task, train_argument_parser

    if not args.hf_args or any(token in ("-h", "--help") for token in args.hf_args):
        parser = train_argument_parser(requested_task(args.hf_args))
        parser.prog = "spatialvlm train"
        parser.epilog = EXAMPLE
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        return 0 if args.hf_args else 2
    model_args, data_args, training_args = parse_train_args(args.hf_args)
    run_result = run_training(model_args, data_args, training_args)
    if training_args.should_log:
        print(run_result.summary)
        print(f"saved the trained parts to {training_args.output_dir} (spatialvlm ask / eval --model reads it)")
    return 0
