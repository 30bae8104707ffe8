"""``spatialvlm train --model_name_or_path <a spatialvlm train output>``: training continues from it."""

from __future__ import annotations

import torch

from spatialvlm.cli import main
from spatialvlm.models import load_vlm2
from spatialvlm.train import parse_train_args, prepare_training
from train_fixtures import save_tiny_base, trainer_flags, write_dataset


def test_training_starts_from_a_train_output(tmp_path):
    save_tiny_base(tmp_path / "base")
    write_dataset(tmp_path, num_samples=2, num_frames=4)
    first = tmp_path / "first"
    # LoRA on the language model plus the fusion / memory modules the base lacks: the output holds
    # no model.safetensors, only adapters and trained parts over the recorded base.
    modules = dict(use_dual_memory="True", use_spatial_fusion="True", memory_num_heads="2", max_steps="2",
                   learning_rate="1e-2", lora_enable="True", lora_r="4", lora_alpha="8")
    assert main(["train", *trainer_flags(tmp_path / "base", tmp_path / "data.json", first, **modules)]) == 0
    assert not (first / "model.safetensors").exists()

    # Reference: the first run's model as load_vlm2 rebuilds it (base + merged LoRA + trained parts).
    reference, _ = load_vlm2(first)
    flags = dict(use_dual_memory="True", use_spatial_fusion="True", memory_num_heads="2", max_steps="1")
    run = prepare_training(*parse_train_args(trainer_flags(first, tmp_path / "data.json", tmp_path / "second", **flags)))
    assert run.new_parameters == []  # nothing re-initialised: fusion and memory come from the first run
    start = run.trainer.model.state_dict()
    expected = reference.state_dict()
    assert start.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(start[name], value, rtol=0, atol=0, msg=name)
    assert run.trainer.model.training
    run.trainer.train()  # and it trains
