"""ModelArguments / DataArguments parsing with HfArgumentParser (as `spatialvlm train` does)."""

from __future__ import annotations

import json

import pytest

from spatialvlm.train import DataArguments, ModelArguments, parse_train_args
from spatialvlm.train.arguments import QWEN2_LORA_TARGETS

REQUIRED = ["--model_name_or_path", "base", "--data_path", "data.json", "--output_dir", "out"]


def test_flags_reach_the_three_groups():
    model_args, data_args, training_args = parse_train_args(
        REQUIRED
        + [
            "--use_dual_memory", "True", "--memory_L_w", "4", "--memory_L_e", "16",
            "--mm_tunable_parts", "dual_memory, fusion,mm_mlp_adapter",
            "--lora_enable", "True", "--lora_r", "8",
            "--num_frames", "16", "--memory_mode", "stream", "--stream_chunk_frames", "4",
            "--learning_rate", "2e-5", "--per_device_train_batch_size", "3",
        ]
    )
    assert model_args.use_dual_memory is True and model_args.memory_L_w == 4 and model_args.memory_L_e == 16
    assert model_args.requested_parts() == ("dual_memory", "fusion", "mm_mlp_adapter")
    assert model_args.lora_enable and model_args.lora_r == 8
    assert model_args.lora_targets == QWEN2_LORA_TARGETS
    assert data_args.num_frames == 16 and data_args.memory_mode == "stream" and data_args.stream_chunk_frames == 4
    assert training_args.learning_rate == 2e-5 and training_args.per_device_train_batch_size == 3
    # Only the flags the user gave become config overrides; the rest keep the checkpoint's values.
    assert model_args.model_flags() == {"use_dual_memory": True, "memory_L_w": 4, "memory_L_e": 16}


def test_defaults_follow_the_seed_and_vlm3r():
    model_args, data_args, _ = parse_train_args(REQUIRED)
    assert model_args.requested_parts() is None  # the task's default applies
    assert (model_args.lora_r, model_args.lora_alpha) == (128, 256)
    assert data_args.memory_mode == "per_sample" and data_args.num_frames == 32
    assert model_args.model_flags() == {}


def test_tune_dual_memory_adds_the_part():
    model_args, _, _ = parse_train_args(REQUIRED + ["--tune_dual_memory", "True", "--mm_tunable_parts", "fusion"])
    assert model_args.requested_parts() == ("fusion", "dual_memory")


def test_json_file_holds_all_flags(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"model_name_or_path": "m", "data_path": "d.json", "output_dir": "o", "num_frames": 8}))
    model_args, data_args, training_args = parse_train_args([str(path)])
    assert (model_args.model_name_or_path, data_args.num_frames, training_args.output_dir) == ("m", 8, "o")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ModelArguments(mm_tunable_parts="fusion,projector"), "unknown parts"),
        (lambda: ModelArguments(coordinate_gate_type="tanh"), "coordinate_gate_type"),
        (lambda: ModelArguments(memory_L_w=0), "memory_L_w"),
        (lambda: ModelArguments(tune_dual_memory=True, use_dual_memory=False), "tune_dual_memory"),
        (lambda: DataArguments(memory_mode="carry"), "memory_mode"),
        (lambda: DataArguments(memory_mode="stream", num_frames=10, stream_chunk_frames=4), "divide"),
    ],
)
def test_bad_values_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_missing_paths_are_reported():
    with pytest.raises(ValueError, match="model_name_or_path"):
        parse_train_args(["--data_path", "d.json", "--output_dir", "o"])
    with pytest.raises(ValueError, match="data_path"):
        parse_train_args(["--model_name_or_path", "m", "--output_dir", "o"])


def test_shipped_recipe_and_deepspeed_configs_are_valid():
    import shlex
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs"
    zero2 = json.loads((configs / "zero2.json").read_text())
    zero3 = json.loads((configs / "zero3.json").read_text())
    assert zero2["zero_optimization"]["stage"] == 2 and zero3["zero_optimization"]["stage"] == 3
    # Checkpoints are written from a gathered state dict; ZeRO-3 must gather it.
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # "auto" lets the Trainer's own flags fill the batch sizes, so the two never disagree.
    assert zero2["train_micro_batch_size_per_gpu"] == zero3["gradient_accumulation_steps"] == "auto"

    script = (configs / "train_vlm2_8gpu.sh").read_text().replace("\\\n", " ")
    command = next(line for line in script.splitlines() if "spatialvlm.cli train" in line)
    tokens = shlex.split(command.split("spatialvlm.cli train", 1)[1])
    values = {"$MODEL": "base", "$DATA": "data.json", "$OUTPUT": "out"}
    tokens = [values.get(token, token) for token in tokens]
    at = tokens.index("--deepspeed")  # DeepSpeed itself is not installed on the test machine
    assert tokens[at + 1] == "$ZERO"
    del tokens[at : at + 2]
    model_args, data_args, training_args = parse_train_args(tokens + ["--use_cpu", "True"])
    assert model_args.requested_parts() == ("fusion", "dual_memory", "mm_mlp_adapter", "mm_language_model")
    assert model_args.lora_enable and (model_args.lora_r, model_args.lora_alpha) == (128, 256)
    assert data_args.num_frames == 32 and training_args.learning_rate == 2e-5 and training_args.bf16
