"""``spatialvlm train`` → ``eval`` / ``ask``: what train writes is a model every ``--model`` reads.

The README's flow (train on a LLaVA-OneVision base with fusion, dual memory and LoRA, then evaluate
the output folder) runs through the installed command, at tiny sizes: a tiny HF LLaVA-OneVision
base, the README's flags plus the tiny model's widths and a few steps. The loaded output is then
checked against the files train wrote: the trained VLM² parts as saved, and every LoRA target's
weight equal to base + (α / r) · B · A computed here from the adapter file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_fixtures import QUICK_RUN_FLAGS, write_dataset  # noqa: E402

SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")


def spatialvlm(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed command, as a user runs it (one thread: tiny models)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("SPATIALVLM_DEBUG", None)
    return subprocess.run([SPATIALVLM, *map(str, args)], capture_output=True, text=True, env=environment, cwd=cwd, timeout=600)


def one_line_error(run: subprocess.CompletedProcess, command: str) -> str:
    """The only non-warning stderr line of a failed run (exit 2, no traceback)."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip() and ": warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"spatialvlm {command}: error: "), run.stderr
    return lines[0]

# The README's train flags, then what a tiny base needs (its widths) and a quick run.
README_TRAIN = [
    "--use_dual_memory", "True", "--mm_tunable_parts", "fusion,dual_memory,mm_mlp_adapter", "--lora_enable", "True",
]
TINY = [
    "--num_frames", "4", "--memory_num_heads", "2", "--fusion_num_heads", "2", "--geometry_dim", "24",
    "--view_dim", "16", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-3",
]
QUICK = [token for name, value in {**QUICK_RUN_FLAGS, "max_steps": "2", "save_strategy": "steps", "save_steps": "1"}.items()
         for token in (f"--{name}", value)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LLaVA-OneVision base, a training set, a synthetic benchmark, and one README-style run."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from spatialvlm.models.tiny import build_tiny_processor, tiny_llava_onevision_config

    root = tmp_path_factory.mktemp("train_flow")
    torch.manual_seed(0)
    config = tiny_llava_onevision_config()
    base = LlavaOnevisionForConditionalGeneration(config)
    base.save_pretrained(root / "base")
    build_tiny_processor(config).save_pretrained(root / "base")
    write_dataset(root, num_samples=2, num_frames=4).rename(root / "train.json")  # mp4s + geometry, LLaVA JSON
    synth = spatialvlm("synth", "--out", "bench", "--scenes", "1", "--frames", "6", "--size", "56", "--seed", "0", cwd=root)
    assert synth.returncode == 0, synth.stderr[-2000:]
    run = spatialvlm(
        "train", "--model_name_or_path", "base", "--data_path", "train.json", *README_TRAIN,
        "--output_dir", "ckpt/vlm2", *TINY, *QUICK, cwd=root,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return root, base.state_dict()


def test_eval_and_ask_read_the_train_output_and_its_checkpoints(trained):
    root, _ = trained
    output = root / "ckpt" / "vlm2"
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (output / "model.safetensors").exists()  # train writes only what trained

    run = spatialvlm("eval", "--benchmark", "vsibench", "--data", "bench", "--model", "ckpt/vlm2", "--out", "runs/vsi",
                     "--limit", "2", "--max-new-tokens", "3", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len((root / "runs/vsi/predictions.jsonl").read_text().splitlines()) == 2

    from spatialvlm.models import answer_video_question, load_vlm2

    video, geometry = root / "bench/synthetic/test_00000.mp4", root / "bench/synthetic/test_00000_geometry"
    model, processor = load_vlm2(output / "checkpoint-1")
    expected = answer_video_question(model, processor, video, "How many chairs?", geometry=geometry, num_frames=4, max_new_tokens=3)
    run = spatialvlm("ask", "--video", video, "--geometry", geometry, "--model", output / "checkpoint-1",
                     "--num-frames", "4", "--max-new-tokens", "3", "--no-progress", "How many chairs?", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == expected + "\n"
    # The base's load report (listing as missing the weights the checkpoint restores) is not shown.
    assert "MISSING" not in run.stderr and "freshly initialised" not in run.stderr, run.stderr


def test_loaded_output_is_base_plus_merged_lora_plus_trained_parts(trained):
    from spatialvlm.models import load_vlm2

    root, base_state = trained
    output = root / "ckpt" / "vlm2"
    model, _ = load_vlm2(output)
    state = model.state_dict()
    assert model.config.use_spatial_fusion and model.config.use_dual_memory and not model.vlm2_new_weights

    trained_parts = load_file(str(output / "trained_parameters.safetensors"))
    assert any(name.startswith("model.spatial_fusion.") for name in trained_parts)
    assert any(name.startswith("model.dual_memory.") for name in trained_parts)
    for name, tensor in trained_parts.items():
        assert torch.equal(state[name], tensor), name

    adapters = load_file(str(output / "adapter_model.safetensors"))
    adapter_config = json.loads((output / "adapter_config.json").read_text())
    scale = adapter_config["lora_alpha"] / adapter_config["r"]
    targets = sorted({key.split(".lora_")[0].removeprefix("base_model.model.") for key in adapters})
    assert targets and all(name.startswith("model.language_model.") for name in targets)
    moved = 0
    for target in targets:
        a = adapters[f"base_model.model.{target}.lora_A.weight"]
        b = adapters[f"base_model.model.{target}.lora_B.weight"]
        expected = base_state[f"{target}.weight"] + scale * b @ a
        torch.testing.assert_close(state[f"{target}.weight"], expected, rtol=1e-6, atol=1e-6)
        moved += int(bool(b.abs().sum() > 0))
    assert moved == len(targets)  # every adapter trained (B starts at zero)
    # Weights nobody trained are the base's.
    assert torch.equal(state["model.vision_tower.embeddings.patch_embedding.weight"],
                       base_state["model.vision_tower.embeddings.patch_embedding.weight"])


def test_a_video_command_on_an_image_training_checkpoint_says_so(trained, tmp_path):
    root, _ = trained
    fake = shutil.copytree(root / "ckpt/vlm2/checkpoint-1", tmp_path / "shirgx_ckpt")
    manifest = json.loads((fake / "spatialvlm_training.json").read_text())
    (fake / "spatialvlm_training.json").write_text(json.dumps({**manifest, "task": "shirgx"}))
    run = spatialvlm("ask", "--video", root / "bench/synthetic/test_00000.mp4",
                     "--geometry", root / "bench/synthetic/test_00000_geometry", "--model", fake, "q")
    assert "'shirgx' training checkpoint" in one_line_error(run, "ask")
