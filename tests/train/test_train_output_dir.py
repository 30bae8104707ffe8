"""What ``spatialvlm train`` does with an output folder that already holds a run, and with damaged
checkpoints: refuse to mix runs, resume the latest on ``--resume_from_checkpoint True``, say when
the optimizer state is missing, and fail in one line on corrupt weights. Through the installed
command in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixtures import save_tiny_base, trainer_flags, write_dataset

from spatialvlm.train import parse_train_args
from spatialvlm.train.run import resolve_resume_checkpoint

SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")


def _train(root: Path, **overrides: str) -> subprocess.CompletedProcess:
    flags = trainer_flags(root / "base", root / "data.json", root / "out", save_strategy="steps", save_steps="1", **overrides)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("SPATIALVLM_DEBUG", None)
    return subprocess.run([SPATIALVLM, "train", *flags], capture_output=True, text=True, env=environment, timeout=600)


def _error_line(run: subprocess.CompletedProcess, command: str = "train") -> str:
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip() and ": warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"spatialvlm {command}: error: "), run.stderr
    return lines[0]


def _logged_steps(checkpoint: Path) -> list[int]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [entry["step"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("output_dir")
    save_tiny_base(root / "base")
    write_dataset(root, num_samples=2, num_frames=2, with_geometry=False)
    return root


def test_rerun_resume_latest_missing_optimizer_and_overwrite(root):
    first = _train(root, max_steps="2")
    assert first.returncode == 0, first.stderr[-3000:]
    out = root / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    stamp = (out / "checkpoint-2" / "trained_parameters.safetensors").read_bytes()

    # The same command again would write over the run: refused, nothing touched.
    line = _error_line(_train(root, max_steps="2"))
    assert "already holds an earlier run (checkpoint-1, checkpoint-2)" in line
    assert "--resume_from_checkpoint True" in line and "--overwrite_output_dir True" in line
    assert (out / "checkpoint-2" / "trained_parameters.safetensors").read_bytes() == stamp

    # "True" resumes the latest checkpoint (2, not 1); its optimizer state is gone: said so.
    (out / "checkpoint-2" / "optimizer.pt").unlink()
    resumed = _train(root, max_steps="3", resume_from_checkpoint="True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-2 has no optimizer.pt" in resumed.stderr and "fresh optimizer" in resumed.stderr
    assert _logged_steps(out / "checkpoint-3") == [1, 2, 3]  # continued from step 2, one new step

    # Overwriting is explicit, and removes the old run's checkpoints (no stale "latest" remains).
    overwritten = _train(root, max_steps="1", overwrite_output_dir="True")
    assert overwritten.returncode == 0, overwritten.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert _logged_steps(out / "checkpoint-1") == [1]


def test_corrupt_or_truncated_weights_fail_in_one_line(root, tmp_path):
    run = _train(root, max_steps="1", output_dir=str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-3000:]
    weights = tmp_path / "out" / "checkpoint-1" / "trained_parameters.safetensors"
    data = weights.read_bytes()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for damaged in (data[: len(data) * 2 // 3], b"not a safetensors file"):  # cut in the tensor data; junk
        weights.write_bytes(damaged)
        line = _error_line(_train(root, max_steps="2", output_dir=str(tmp_path / "out"), resume_from_checkpoint="True"))
        assert f"{weights} is corrupt or truncated" in line, line
    ask = subprocess.run(
        [SPATIALVLM, "ask", "--video", str(root / "videos/scene0.mp4"), "--model", str(weights.parent), "q"],
        capture_output=True, text=True, env=environment, timeout=600,
    )
    assert f"{weights} is corrupt or truncated" in _error_line(ask, "ask")


def test_resume_flag_values(tmp_path):
    assert resolve_resume_checkpoint(None, tmp_path) is None
    assert resolve_resume_checkpoint("False", tmp_path) is None
    with pytest.raises(ValueError, match="has none"):
        resolve_resume_checkpoint("True", tmp_path)
    for step in (2, 10, 9):  # numeric order, not string order
        (tmp_path / f"checkpoint-{step}").mkdir()
    for value in ("true", True):  # picks checkpoint-10, then finds it is not a checkpoint
        with pytest.raises(ValueError, match="checkpoint-10 is not a training checkpoint"):
            resolve_resume_checkpoint(value, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_resume_checkpoint(str(tmp_path / "elsewhere"), tmp_path)
    _, _, training_args = parse_train_args(["--model_name_or_path", "m", "--data_path", "d", "--overwrite_output_dir", "True"])
    assert training_args.overwrite_output_dir is True
