"""Shared inputs of the command-line tests: tiny checkpoints and media the tests write once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def cli_inputs(tmp_path_factory) -> SimpleNamespace:
    """A 6-frame mp4 with geometry, a tiny VLM² checkpoint with fusion and memory (``model``) and
    a fusion-free one whose zero LM head only emits the pad token: an empty answer (``silent``)."""
    from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_vlm2_config
    from spatialvlm.models.tiny import make_tiny_video_sample

    root = tmp_path_factory.mktemp("cli")
    video, geometry, _ = make_tiny_video_sample(root / "scene", num_frames=6)
    torch.manual_seed(0)
    config = tiny_vlm2_config(use_dual_memory=True, memory_L_w=2, memory_L_e=3)
    VLM2ForConditionalGeneration(config).save_pretrained(root / "model")
    build_tiny_processor(config).save_pretrained(root / "model")
    silent_config = tiny_vlm2_config(use_spatial_fusion=False)
    silent = VLM2ForConditionalGeneration(silent_config)
    with torch.no_grad():
        silent.lm_head.weight.zero_()  # every logit equal: greedy picks id 0, the pad token
    silent.save_pretrained(root / "silent")
    build_tiny_processor(silent_config).save_pretrained(root / "silent")
    return SimpleNamespace(root=root, video=video, geometry=geometry, model=root / "model", silent=root / "silent")
