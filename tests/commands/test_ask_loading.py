"""``ask`` loading and decoding options: --diffusion-* flags, --no-fusion building no fusion block,
the public SHIRG-X image loader the lmms-eval plugin shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import one_line_error, spatialvlm


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


def test_diffusion_flags_reach_the_decoder(cli_inputs, photo):
    from transformers import AutoTokenizer

    from spatialvlm.data.preprocess import load_image
    from spatialvlm.models import DiffusionConfig, ShirgXImagePath, load_shirgx_image_model

    flags = ["--decoding", "diffusion", "--diffusion-steps", "2", "--diffusion-block-length", "2",
             "--diffusion-remasking", "margin", "--diffusion-attention", "bidirectional"]
    run = spatialvlm("ask", "--image", photo, "--model", cli_inputs.model, "--max-new-tokens", "4", "--no-progress", *flags, "q")
    assert run.returncode == 0, run.stderr
    # Reference: the same decoder settings given as a DiffusionConfig in-process.
    loaded = load_shirgx_image_model(cli_inputs.model)
    tokenizer = AutoTokenizer.from_pretrained(cli_inputs.model)
    config = DiffusionConfig(mask_token_id=tokenizer.mask_token_id, answer_length=4, block_length=2, steps=2,
                             remasking="margin", attention="bidirectional")
    path = ShirgXImagePath(loaded.model.eval(), loaded.selector.eval(), loaded.image_config)
    expected = path.answer(load_image(photo), "q", tokenizer, decoding="diffusion", diffusion_config=config).text
    assert run.stdout == expected + "\n"


@pytest.mark.parametrize("flags,expected", [
    (["--decoding", "diffusion", "--diffusion-steps", "3", "--diffusion-block-length", "2"],
     "--diffusion-steps (3) must be divisible by the number of blocks (2 = --max-new-tokens 4 / --diffusion-block-length 2)"),
    (["--diffusion-cfg-scale", "1.5"], "--diffusion-cfg-scale only applies to --decoding diffusion"),
    (["--decoding", "diffusion", "--diffusion-steps", "2", "--diffusion-steps-per-block", "1"],
     "pass --diffusion-steps (in total) or --diffusion-steps-per-block (LaViDa), not both"),
])
def test_bad_diffusion_flags_are_one_line(cli_inputs, photo, flags, expected):
    run = spatialvlm("ask", "--image", photo, "--model", cli_inputs.model, "--max-new-tokens", "4", "--no-progress", *flags, "q")
    line = one_line_error(run)
    assert expected in line and "selector:" not in run.stderr  # refused before the model loads


def test_no_fusion_loads_without_the_fusion_block(cli_inputs):
    from spatialvlm.models import load_vlm2

    model, _ = load_vlm2(cli_inputs.model, use_spatial_fusion=False)
    assert model.model.spatial_fusion is None and not model.config.use_spatial_fusion
    assert not any(".spatial_fusion." in name for name in model.state_dict())
    # The other weights are the checkpoint's.
    full, _ = load_vlm2(cli_inputs.model)
    kept = full.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, kept[name], rtol=0, atol=0)


def test_image_loader_is_public_and_shared_by_the_plugin(cli_inputs):
    import spatialvlm
    from spatialvlm.models import ShirgXImageModel, load_shirgx_image_model

    # Read as text: importing the plugin needs lmms-eval, which only `make test-lmms` installs.
    plugin_source = (Path(spatialvlm.__file__).parent / "integrations" / "lmms_plugin.py").read_text()
    assert "commands.ask" not in plugin_source and "load_shirgx_image_model" in plugin_source
    loaded = load_shirgx_image_model(cli_inputs.model, no_selector=True)
    assert isinstance(loaded, ShirgXImageModel) and loaded.selector is None and loaded.image_config is None
    assert "not used" in loaded.selector_source  # a VLM² checkpoint: its video modules are unused
