"""The residual memory inside a VLM² model: switching it on leaves an untrained model's logits unchanged."""

import numpy as np
import pytest
import torch

from spatialvlm.geometry import stack_frames
from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_llava_onevision_config, tiny_vlm2_config
from spatialvlm.models.tiny import tiny_frame_geometry


def _batch(processor, lengths):
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, size=(length, 32, 48, 3), dtype=np.uint8) for length in lengths]
    geometry = [stack_frames(tiny_frame_geometry(length, seed=index)) for index, length in enumerate(lengths)]
    return processor([processor.video_prompt("How many chairs?")] * len(lengths), videos=videos, geometry=geometry)


@pytest.mark.parametrize("read_order", ["read_then_write", "write_then_read"])
def test_residual_memory_on_equals_memory_off_at_initialisation(read_order):
    processor = build_tiny_processor(tiny_llava_onevision_config())
    torch.manual_seed(0)
    off = VLM2ForConditionalGeneration(tiny_vlm2_config(use_dual_memory=False)).eval()
    on = VLM2ForConditionalGeneration(
        tiny_vlm2_config(use_dual_memory=True, memory_output="residual", memory_read_order=read_order)
    ).eval()
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert not unexpected and missing and all(".dual_memory." in key for key in missing)
    assert on.model.dual_memory.config.output == "residual"
    batch = _batch(processor, [3, 2])  # padded batch: masked frames too
    with torch.no_grad():
        expected = off(**batch).logits
        got = on(**batch).logits
    assert torch.equal(got, expected)
    # The paper's output replaces the projector's input: the logits move.
    paper = VLM2ForConditionalGeneration(tiny_vlm2_config(use_dual_memory=True, memory_output="paper")).eval()
    paper.load_state_dict(off.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(paper(**batch).logits, expected, atol=1e-3)


def test_memory_options_round_trip_through_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = VLM2ForConditionalGeneration(
        tiny_vlm2_config(use_dual_memory=True, memory_output="residual", memory_read_order="write_then_read")
    )
    model.save_pretrained(tmp_path)
    loaded = VLM2ForConditionalGeneration.from_pretrained(tmp_path)
    memory = loaded.model.dual_memory
    assert (memory.config.output, memory.config.read_order) == ("residual", "write_then_read")
    assert torch.equal(memory.output_proj.weight, model.model.dual_memory.output_proj.weight)
    # A checkpoint without memory weights, loaded with the residual memory on: `out` starts at zero.
    base = VLM2ForConditionalGeneration(tiny_vlm2_config(use_dual_memory=False))
    base.save_pretrained(tmp_path / "base")
    fresh = VLM2ForConditionalGeneration.from_pretrained(tmp_path / "base", use_dual_memory=True, memory_output="residual")
    projection = fresh.model.dual_memory.output_proj
    assert not projection.weight.any() and not projection.bias.any()
    assert fresh.model.dual_memory.gate[0].weight.abs().sum() > 0  # the rest is initialised as usual
    with pytest.raises(ValueError, match="memory_output must be one of"):
        tiny_vlm2_config(use_dual_memory=True, memory_output="resid")


def test_train_arguments_carry_the_options_into_the_model_config(tmp_path):
    from spatialvlm.models.vlm2 import VLM2Config
    from spatialvlm.train.arguments import parse_train_args

    model_args, _, _ = parse_train_args([
        "--model_name_or_path", str(tmp_path), "--data_path", "d.json", "--output_dir", str(tmp_path / "out"),
        "--use_dual_memory", "True", "--memory_output", "residual", "--memory_read_order", "write_then_read",
        "--coordinate_normalization", "metric",
    ])
    config = VLM2Config.from_base(tiny_vlm2_config(), **model_args.model_flags())
    assert (config.memory_output, config.memory_read_order, config.coordinate_normalization) == (
        "residual", "write_then_read", "metric",
    )
    assert config.dual_memory_config().output == "residual"
