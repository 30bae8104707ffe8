"""Checkpoints hold what trained (adapters, trained and new modules, config) and load back exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from spatialvlm.train import (
    CheckpointManifest,
    load_trained_model,
    load_trained_parameters,
    parse_train_args,
    prepare_training,
)
from train_fixtures import save_tiny_base, trainer_flags, write_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train a few steps: LoRA + memory + projector; the fusion block is new but stays frozen."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("checkpoint")
    base = save_tiny_base(root / "base")
    data = write_dataset(root, num_samples=2)
    flags = trainer_flags(
        base, data, root / "out",
        use_dual_memory="True", use_spatial_fusion="True",
        mm_tunable_parts="dual_memory,mm_mlp_adapter", lora_enable="True", lora_r="4", lora_alpha="8",
        learning_rate="1e-2", max_steps="3",
    )
    run = prepare_training(*parse_train_args(flags))
    run.trainer.train()
    run.trainer.save_model()
    batch = run.trainer.data_collator([run.trainer.train_dataset[0], run.trainer.train_dataset[1]])
    model = run.trainer.model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    return root, run, batch, logits


def test_checkpoint_holds_adapters_trained_and_new_weights_only(trained):
    root, run, _, _ = trained
    out = root / "out"
    manifest = CheckpointManifest.load(out)
    stored = load_file(str(out / "trained_parameters.safetensors"))
    model = run.trainer.model
    trainable = {
        n.removeprefix("base_model.model.") for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n
    }
    base_model = model.get_base_model()
    fusion = {"model.spatial_fusion." + n for n in base_model.model.spatial_fusion.state_dict()}
    assert set(stored) == trainable | fusion == set(manifest.saved_parameters)
    assert not any(name.startswith(("model.vision_tower", "model.language_model", "lm_head")) for name in stored)
    adapters = load_file(str(out / "adapter_model.safetensors"))
    assert adapters and all("lora_" in name for name in adapters)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and "language_model" in adapter_config["target_modules"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vlm2" and config["use_dual_memory"] and config["use_spatial_fusion"]
    assert manifest.lora and manifest.task == "vlm2" and manifest.base_model == str(root / "base")
    # The saved values are the trained ones, not the base checkpoint's.
    projector = "model.multi_modal_projector.linear_1.weight"
    base_weights = load_file(str(root / "base" / "model.safetensors"))
    # (transformers writes LLaVA checkpoints in the original layout, without the "model." prefix)
    assert not torch.equal(stored[projector], base_weights[projector.removeprefix("model.")])
    assert torch.equal(stored[projector], base_model.state_dict()[projector])


def test_checkpoint_loads_back_to_identical_outputs(trained):
    root, _, batch, logits = trained
    loaded = load_trained_model(root / "out")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, logits)
    merged = load_trained_model(root / "out", merge_lora=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, logits, rtol=1e-4, atol=1e-5)
    assert not hasattr(merged, "peft_config")


def test_resume_loads_into_a_freshly_prepared_model(trained):
    root, _, batch, logits = trained
    flags = trainer_flags(
        root / "base", root / "data.json", root / "resume",
        use_dual_memory="True", use_spatial_fusion="True",
        mm_tunable_parts="dual_memory,mm_mlp_adapter", lora_enable="True", lora_r="4", lora_alpha="8",
    )
    torch.manual_seed(123)  # other fresh values for the new modules than the trained run had
    fresh = prepare_training(*parse_train_args(flags)).trainer.model.eval()
    with torch.no_grad():
        assert not torch.equal(fresh(**batch).logits, logits)
    load_trained_parameters(fresh, root / "out")
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, logits)


def test_loading_a_directory_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="spatialvlm_training.json"):
        load_trained_model(tmp_path)


def test_trainer_resumes_from_its_own_checkpoint(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    data = write_dataset(tmp_path, num_samples=2)
    flags = trainer_flags(
        base, data, tmp_path / "out", use_dual_memory="True", lora_enable="True", lora_r="4",
        max_steps="4", save_strategy="steps", save_steps="2",
    )
    straight = prepare_training(*parse_train_args(flags)).trainer
    straight.train()
    assert (tmp_path / "out" / "checkpoint-2" / "optimizer.pt").is_file()
    resumed = prepare_training(*parse_train_args(flags)).trainer
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    expected = dict(straight.model.named_parameters())
    for name, parameter in resumed.model.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, expected[name], rtol=1e-5, atol=1e-6)
