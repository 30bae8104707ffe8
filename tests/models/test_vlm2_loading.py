"""Deterministic loading: every tensor of a loaded VLM² is defined by the checkpoint and its config.

transformers' ``from_pretrained`` builds the model on the meta device and gives every buffer that is
not in the checkpoint (non-persistent buffers) an uninitialised placeholder, which the model's
``_init_weights`` must fill. ``PointTokenEncoder.frequencies`` was such a buffer and was never
filled: each process got other logits. These tests load in this process and in separate processes
(``loading_worker.py``) and demand bit-identical tensors, logits and streaming results.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, load_vlm2, tiny_vlm2_config

WORKER = Path(__file__).with_name("loading_worker.py")
FLAGS = dict(use_dual_memory=True, memory_L_w=2, memory_L_e=3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny VLM² with fusion (point tokens, coordinate injection, viewpoint alignment) and memory."""
    directory = tmp_path_factory.mktemp("vlm2")
    torch.manual_seed(0)
    config = tiny_vlm2_config(**FLAGS)
    VLM2ForConditionalGeneration(config).save_pretrained(directory)
    build_tiny_processor(config).save_pretrained(directory)
    return directory


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit patterns (NaN-safe, -0.0 ≠ 0.0): what "bit-identical" means."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def _fresh_buffers(config) -> dict[str, torch.Tensor]:
    """Buffers of a model constructed eagerly on the CPU: every buffer is a function of the config."""
    return dict(VLM2ForConditionalGeneration(config).named_buffers())


@pytest.mark.parametrize("source", ["vlm2_checkpoint", "base_plus_new_modules"])
def test_every_buffer_after_loading_is_the_one_the_config_defines(checkpoint, tmp_path, source):
    if source == "vlm2_checkpoint":
        model, _ = load_vlm2(checkpoint)
    else:
        # A plain base (no VLM² weights): the VLM² modules are new at load time, filled by _init_weights.
        base = tmp_path / "base"
        config = tiny_vlm2_config(use_spatial_fusion=False)
        VLM2ForConditionalGeneration(config).save_pretrained(base)
        build_tiny_processor(config).save_pretrained(base)
        model, _ = load_vlm2(base, **FLAGS, use_spatial_fusion=True)
        assert model.vlm2_new_weights
    loaded = dict(model.named_buffers())
    expected = _fresh_buffers(model.config)
    assert loaded.keys() == expected.keys()
    for name, buffer in expected.items():
        assert _same_bits(loaded[name], buffer), f"{name}: loaded {loaded[name].flatten()[:4]} vs {buffer.flatten()[:4]}"


def test_point_tokens_of_a_loaded_model_match_the_formula(checkpoint):
    """The octaves π·2^k enter the geometry keys: check the loaded encoder against the formula."""
    model, _ = load_vlm2(checkpoint)
    encoder = model.model.spatial_fusion.point_encoder
    coords = torch.tensor([[[0.5, -1.0, 2.0], [3.0, 0.25, -0.75]]])
    octaves = torch.pi * 2.0 ** torch.arange(model.model.spatial_fusion.config.point_encoder_frequencies, dtype=torch.float32)
    angles = (coords[..., None] * octaves).flatten(-2)
    expected = encoder.mlp(torch.cat([coords, angles.sin(), angles.cos()], -1))
    with torch.no_grad():
        torch.testing.assert_close(encoder(coords, torch.ones(1, 2, dtype=torch.bool)), expected, rtol=0, atol=0)


def _run_worker(checkpoint, out, *extra) -> dict[str, torch.Tensor]:
    result = subprocess.run(
        [sys.executable, str(WORKER), str(checkpoint), str(out), *map(str, extra)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(str(out))


def test_two_processes_load_bit_identical_tensors_logits_and_streams(checkpoint, tmp_path):
    session = tmp_path / "session"
    first = _run_worker(checkpoint, tmp_path / "a.safetensors", "--save-session", session)
    second = _run_worker(checkpoint, tmp_path / "b.safetensors")
    resumed = _run_worker(checkpoint, tmp_path / "c.safetensors", "--resume-session", session)

    assert first.keys() == second.keys()
    assert any(name.endswith("point_encoder.mlp.0.weight") for name in first)
    different = [name for name in first if not _same_bits(first[name], second[name])]
    assert not different, f"differ between two processes: {different[:5]}"
    assert torch.isfinite(first["ask_logits"]).all()
    # Streaming: saved after 3 frames in one process, resumed for the last 2 in another, bit-exact
    # against the uninterrupted stream of either process.
    for name in ("stream_context", "stream_logits"):
        assert _same_bits(resumed[name], first[name]), name
        assert _same_bits(resumed[name], second[name]), name
