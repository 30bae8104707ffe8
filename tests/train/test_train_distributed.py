"""Data-parallel training in 2 CPU processes (torchrun + gloo), the path DeepSpeed/FSDP runs take."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from train_fixtures import save_tiny_base, trainer_flags, write_dataset

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_train_one_model(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    data = write_dataset(tmp_path, num_samples=4)
    out = tmp_path / "out"
    flags = trainer_flags(
        base, data, out, use_dual_memory="True", per_device_train_batch_size="1", max_steps="3",
        ddp_backend="gloo", learning_rate="1e-2",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER), *flags,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert [r["global_step"] for r in ranks] == [3, 3]
    # Each process saw other samples ...
    assert not torch.equal(ranks[0]["first_input_ids"], ranks[1]["first_input_ids"])
    # ... yet both hold the same weights after 3 steps: gradients were averaged across processes.
    names = sorted(ranks[0]["parameters"])
    assert names == sorted(ranks[1]["parameters"]) and any("dual_memory" in n for n in names)
    for name in names:
        assert torch.equal(ranks[0]["parameters"][name], ranks[1]["parameters"][name]), name
    # Rank 0 wrote the checkpoint, holding the trained weights.
    stored = load_file(str(out / "trained_parameters.safetensors"))
    for name in names:
        assert torch.equal(stored[name], ranks[0]["parameters"][name]), name
    base_projector = load_file(str(base / "model.safetensors"))["multi_modal_projector.linear_1.weight"]
    assert not torch.equal(stored["model.multi_modal_projector.linear_1.weight"], base_projector)
