"""One process of the 2-process data-parallel test (run by torchrun, see test_train_distributed.py).

Trains with the same code path as ``spatialvlm train`` and, after training, writes this rank's
trainable parameters, its world size and its first batch's token ids to ``<output_dir>/rank<R>.pt``, so the
test can check that gradients were averaged across processes (identical weights on both ranks
although each saw different samples).
"""

from __future__ import annotations

import sys

import torch
from transformers import TrainerCallback

from spatialvlm.train import parse_train_args, prepare_training


class RecordRank(TrainerCallback):
    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.first_input_ids: torch.Tensor | None = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        torch.save(
            {
                "world_size": torch.distributed.get_world_size(),
                "rank": args.process_index,
                "parameters": trainable,
                "global_step": state.global_step,
                "first_input_ids": self.first_input_ids,
            },
            f"{self.output_dir}/rank{args.process_index}.pt",
        )


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    model_args, data_args, training_args = parse_train_args(argv)
    run = prepare_training(model_args, data_args, training_args)
    recorder = RecordRank(training_args.output_dir)
    collator = run.trainer.data_collator

    def recording_collator(items):
        batch = collator(items)
        if recorder.first_input_ids is None:
            recorder.first_input_ids = batch["input_ids"].clone()
        return batch

    run.trainer.data_collator = recording_collator
    run.trainer.add_callback(recorder)
    run.trainer.train()
    run.trainer.save_model()


if __name__ == "__main__":
    main(sys.argv[1:])
