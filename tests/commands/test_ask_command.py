"""``spatialvlm ask`` as a user meets it: broken inputs give one line naming the file and the
problem (``--debug`` for the traceback), and the flags that the errors point at exist and work.

Cases run the installed command in a subprocess (one per kind of failure that used to print a
traceback) on tiny checkpoints and media written once per session (``conftest.cli_inputs``); their
variants call ``spatialvlm.cli.main`` in-process, the same code without the interpreter start.
"""

from __future__ import annotations

import re
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spatialvlm.cli import main

from cli_helpers import main_error, one_line_error, spatialvlm


def _copy_model(cli_inputs, tmp_path, name="model"):
    return shutil.copytree(cli_inputs.model if name == "model" else cli_inputs.silent, tmp_path / name)


def _copy_geometry(cli_inputs, tmp_path):
    return shutil.copytree(cli_inputs.geometry, tmp_path / "geometry")


def _ask(cli_inputs, *extra, model=None, geometry=True):
    args = ["ask", "--video", cli_inputs.video, "--model", model or cli_inputs.model, "--num-frames", "4",
            "--max-new-tokens", "2", "--no-progress"]
    if geometry is True:
        args += ["--geometry", cli_inputs.geometry]
    elif geometry:
        args += ["--geometry", geometry]
    return [*args, *extra]


# -- item 7: errors users meet become one line naming the file ---------------------------------
def test_truncated_weights_name_the_file(cli_inputs, tmp_path):
    model = _copy_model(cli_inputs, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = one_line_error(spatialvlm(*_ask(cli_inputs, "q", model=model)))
    assert str(weights) in line and "truncated or corrupt" in line


def test_corrupt_geometry_frame_names_the_file(cli_inputs, tmp_path, capsys):
    geometry = _copy_geometry(cli_inputs, tmp_path)
    (geometry / "frame_00003.safetensors").write_bytes(b"\x00" * 64)
    line = main_error(_ask(cli_inputs, "q", geometry=geometry), capsys)
    assert "frame_00003.safetensors is not a readable safetensors frame file" in line
    assert str(cli_inputs.video) in line  # and the video it was the geometry of


@pytest.mark.parametrize("kind", ["text renamed .png", "truncated JPEG"])
def test_unreadable_images_name_the_file(cli_inputs, tmp_path, kind, capsys):
    from PIL import Image

    if kind == "text renamed .png":
        image = tmp_path / "notes.png"
        image.write_text("these are my notes, not a picture\n")
        expected = "not an image file"
    else:
        image = tmp_path / "photo.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image, quality=90)
        image.write_bytes(image.read_bytes()[:1500])
        expected = "truncated"
    argv = ["ask", "--image", image, "--model", cli_inputs.model, "--no-progress", "q"]
    line = one_line_error(spatialvlm(*argv)) if kind == "text renamed .png" else main_error(argv, capsys)
    assert f"cannot read image {image}" in line and expected in line


@pytest.mark.parametrize(("device", "expected"), [("cuda", "no CUDA device here"), ("foo", "is not a torch device")])
def test_bad_device_is_one_line(cli_inputs, device, expected, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = main_error(_ask(cli_inputs, "--device", device, "q"), capsys)
    assert f"--device {device!r}" in line or f"--device {device}" in line
    assert expected in line


@pytest.mark.parametrize("broken", ["config.json", "tokenizer"])
def test_bad_model_files_are_named(cli_inputs, tmp_path, broken, capsys):
    model = _copy_model(cli_inputs, tmp_path)
    if broken == "config.json":
        (model / "config.json").write_text('{"model_type": "vlm2",\n')
        expected = f"{model / 'config.json'} is not valid JSON"
    else:
        for path in model.glob("tokenizer*"):
            path.unlink()
        expected = f"{model} has no tokenizer (tokenizer.json"
    line = main_error(_ask(cli_inputs, "q", model=model), capsys)
    assert expected in line


def test_debug_shows_the_traceback(cli_inputs):
    run = spatialvlm(*_ask(cli_inputs, "--device", "foo", "q"), env={"SPATIALVLM_DEBUG": "1"})
    assert run.returncode != 0 and "Traceback (most recent call last)" in run.stderr
    with pytest.raises(ValueError, match="is not a torch device"):
        main([str(token) for token in _ask(cli_inputs, "--device", "foo", "q")] + ["--debug"])


def test_errors_before_the_model_loads_call_main(cli_inputs, tmp_path, capsys):
    """Argument and input checks (no model needed): one line each, naming the flag or the file."""
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    cases = [
        (["ask", "--video", folder, "--model", cli_inputs.model, "q"], f"video {folder} is a folder, not a video file"),
        (["ask", "--image", cli_inputs.video, "--geometry", cli_inputs.geometry, "--model", cli_inputs.model, "q"],
         "--geometry only applies to --video"),
        (["ask", "--video", cli_inputs.video, "--budget", "512", "--model", cli_inputs.model, "q"],
         "--budget only applies to --image"),
        (["ask", "--video", cli_inputs.video, "--post-prompt", "lmms", "--model", cli_inputs.model, "q"],
         "--post-prompt only applies to --image"),
        (["ask", "--video", cli_inputs.video, "--model", cli_inputs.model, "q"],
         "needs per-frame geometry: pass --geometry DIR"),
        (["viz", "selection", cli_inputs.video, "--budget", "100"], "--budget must be one of the selector's budgets"),
        (["synth", "--out", tmp_path / "s", "--size", "0"], "--size must be at least 16 pixels, got 0"),
    ]
    for argv, expected in cases:
        assert main([str(token) for token in argv]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (argv, err)


# -- items 6, 4: empty question; an empty answer warns --------------------------------------------
def test_empty_question_is_an_error(cli_inputs, capsys):
    assert "the question is empty" in one_line_error(spatialvlm(*_ask(cli_inputs, "")))
    assert "the question is empty" in main_error(_ask(cli_inputs, " \t "), capsys)


def test_empty_question_in_a_streaming_session(cli_inputs):
    from spatialvlm.models import VLM2StreamingSession, load_vlm2

    model, processor = load_vlm2(cli_inputs.silent)
    session = VLM2StreamingSession(model, processor)
    session.add_frame(np.zeros((32, 48, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="the question is empty"):
        session.ask(" \n")


def test_empty_answer_warns_and_no_progress_hides_the_loading_bar(cli_inputs):
    run = spatialvlm(*_ask(cli_inputs, "How many chairs?", model=cli_inputs.silent, geometry=False))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "\n"
    assert "spatialvlm ask: warning: the model generated an empty answer" in run.stderr
    assert "Loading weights" not in run.stderr  # --no-progress covers transformers' bar too


# -- item 5: a fusion checkpoint without geometry -------------------------------------------------
def test_no_fusion_answers_as_a_model_without_the_fusion_block(cli_inputs):
    from spatialvlm.models import VLM2ForConditionalGeneration, answer_video_question, load_vlm2

    run = spatialvlm(*_ask(cli_inputs, "--no-fusion", "--max-new-tokens", "4", "How many chairs?", geometry=False))
    assert run.returncode == 0, run.stderr
    assert "--no-fusion: the fusion block" in run.stderr and "UNEXPECTED" not in run.stderr
    # Reference: a model built without the fusion block, holding every other weight of the checkpoint.
    _, processor = load_vlm2(cli_inputs.model)
    trained = VLM2ForConditionalGeneration.from_pretrained(cli_inputs.model)
    config = trained.config
    config.use_spatial_fusion = False
    reference = VLM2ForConditionalGeneration(config).eval()
    kept = {key: value for key, value in trained.state_dict().items() if ".spatial_fusion." not in key}
    assert reference.load_state_dict(kept, strict=True).unexpected_keys == []
    expected = answer_video_question(reference, processor, cli_inputs.video, "How many chairs?", num_frames=4, max_new_tokens=4)
    assert run.stdout == expected + "\n"


# -- item 8: a truncated mp4 ---------------------------------------------------------------------
def _faststart_mp4(path, frames: int = 30):
    """An mp4 whose index comes first (as phones and web exports write), so a cut file still opens."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def truncated_mp4(tmp_path_factory):
    path = _faststart_mp4(tmp_path_factory.mktemp("truncated") / "cut.mp4")
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.5)])
    return path


def test_truncated_mp4_fails_unless_fewer_frames_are_allowed(cli_inputs, truncated_mp4):
    base = ["ask", "--video", truncated_mp4, "--model", cli_inputs.silent, "--num-frames", "4",
            "--max-new-tokens", "1", "--no-progress", "q"]
    line = one_line_error(spatialvlm(*base))
    decoded = re.search(r"decoded (\d+) of 30 frames", line)
    assert decoded and 0 < int(decoded.group(1)) < 30, line
    assert "--allow-fewer-frames" in line and "allow_fewer=True" not in line
    allowed = spatialvlm(*base, "--allow-fewer-frames")
    assert allowed.returncode == 0, allowed.stderr
    assert f"warning: video {truncated_mp4}: decoded {decoded.group(1)} of 30 frames" in allowed.stderr


def test_short_video_error_names_the_cli_flags(cli_inputs, tmp_path, capsys):
    from spatialvlm.data.video import write_video

    one = write_video(tmp_path / "one.mp4", np.zeros((1, 32, 48, 3), dtype=np.uint8))
    assert main(["ask", "--video", str(one), "--model", str(cli_inputs.silent), "--no-progress", "q"]) == 2
    err = capsys.readouterr().err
    assert "has 1 frame, fewer than the 32 requested; pass --num-frames 1" in err
    assert "--allow-fewer-frames" in err and "allow_fewer=True" not in err


# -- item 11: geometry values, named by field, frame file and video ----------------------------
def test_nan_pose_names_field_frame_and_video(cli_inputs, tmp_path):
    geometry = _copy_geometry(cli_inputs, tmp_path)
    frame = geometry / "frame_00003.safetensors"  # sampled: --num-frames 4 of 6 takes 0, 1, 3, 5
    tensors = load_file(frame)
    tensors["pose"][0, 3] = float("nan")
    save_file(tensors, frame)
    line = one_line_error(spatialvlm(*_ask(cli_inputs, "q", geometry=geometry)))
    assert f"pose in {frame} contains NaN or inf" in line and str(cli_inputs.video) in line


# -- item 14: ask --image on a VLM² checkpoint -----------------------------------------------------
def test_image_on_a_vlm2_checkpoint_says_which_selector_runs(cli_inputs, tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(image)
    run = spatialvlm("ask", "--image", image, "--model", cli_inputs.model, "--max-new-tokens", "2", "--no-progress", "q")
    assert run.returncode == 0, run.stderr
    assert "UNEXPECTED" not in run.stderr and "LOAD REPORT" not in run.stderr
    selector_lines = [line for line in run.stderr.splitlines() if line.startswith("selector: ")]
    assert len(selector_lines) == 1 and "untrained SHIRG-X" in selector_lines[0], run.stderr
    assert "video modules (fusion, memory) are not used" in selector_lines[0]


def test_post_prompt_values():
    from spatialvlm.commands.ask import _post_prompt
    from spatialvlm.eval.image_prompts import ImagePromptConfig

    assert _post_prompt(None) == ""
    assert _post_prompt("lmms") == ImagePromptConfig().post_prompt == "\nAnswer the question using a single word or phrase."
    assert _post_prompt("\\nOne word.") == "\nOne word."
