"""``ask --frames``: the frame sampling policy ``eval --frames`` uses, with the same indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli_helpers import one_line_error, spatialvlm


@pytest.fixture(scope="module")
def fusion_free(tmp_path_factory):
    """A 30-frame 10 fps mp4 and a tiny fusion-free VLM² checkpoint."""
    from spatialvlm.data.video import write_video
    from spatialvlm.models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_vlm2_config

    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    video = write_video(root / "walk.mp4", rng.integers(0, 256, (30, 32, 48, 3), dtype=np.uint8), fps=10)
    torch.manual_seed(0)
    config = tiny_vlm2_config(use_spatial_fusion=False)
    VLM2ForConditionalGeneration(config).save_pretrained(root / "model")
    build_tiny_processor(config).save_pretrained(root / "model")
    return video, root / "model"


@pytest.mark.parametrize("policy", ["8", "1fps:64", "2fps:4", "all"])
def test_ask_video_frames_are_evals(fusion_free, policy):
    from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor
    from spatialvlm.models import ask_video, load_vlm2

    video, model_dir = fusion_free
    model, processor = load_vlm2(model_dir)
    asked = ask_video(model, processor, video, "q", frames=policy, max_new_tokens=1).frame_indices
    evaluated = VLM2VideoPredictor(model_dir, frames=policy).answer(video, "q", max_new_tokens=1).details["frame_indices"]
    assert asked.tolist() == evaluated
    # Independent: 1 fps of a 10 fps, 30-frame video is every 10th frame; '2fps:4' (6 > 4 frames)
    # falls back to 4 uniform frames over the whole video.
    expected = {"8": np.linspace(0, 29, 8, dtype=int).tolist(), "1fps:64": [0, 10, 20],
                "2fps:4": np.linspace(0, 29, 4, dtype=int).tolist(), "all": list(range(30))}[policy]
    assert asked.tolist() == expected


def test_cli_frames_policy_and_num_frames_alias(cli_inputs):
    # The 6-frame 5 fps video: '3fps' keeps every round(5/3) = 2nd frame; 3 uniform frames differ.
    base = ["ask", "--video", cli_inputs.video, "--model", cli_inputs.model, "--geometry", cli_inputs.geometry,
            "--max-new-tokens", "1", "--no-progress", "--stats"]
    for flags, expected in ((["--frames", "3fps:64"], "0, 2, 4"), (["--num-frames", "3"], "0, 2, 5"),
                            (["--all-frames"], "0, 1, 2, 3, 4, 5")):
        run = spatialvlm(*base, *flags, "q")
        assert run.returncode == 0, run.stderr
        assert f"sampled: {expected}\n" in run.stderr, run.stderr
    line = one_line_error(spatialvlm(*base, "--frames", "fast", "q"))
    assert "--frames" in line and "'1fps:64'" in line


def test_an_encoded_video_answers_every_question_as_a_fresh_encoding_does(fusion_free):
    # encode_video once, then one language-model run per question: the same answers as encoding
    # the video again for each question (ask_video on the file), and the tower runs once.
    from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor
    from spatialvlm.models import ask_video, encode_video, load_vlm2

    video, model_dir = fusion_free
    model, processor = load_vlm2(model_dir)
    calls = []
    model.model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    questions = ["How many chairs?", "Which is closer, the table or the bed?", "q"]
    fresh = [ask_video(model, processor, video, q, num_frames=8, max_new_tokens=4) for q in questions]
    assert len(calls) == len(questions)
    calls.clear()
    encoded = encode_video(model, processor, video, num_frames=8)
    again = [ask_video(model, processor, encoded, q, max_new_tokens=4) for q in questions]
    assert len(calls) == 1
    assert [a.text for a in again] == [a.text for a in fresh]
    assert [a.num_new_tokens for a in again] == [a.num_new_tokens for a in fresh]
    assert all(a.frame_indices.tolist() == fresh[0].frame_indices.tolist() for a in again)
    assert len({a.text for a in fresh}) > 1 or fresh[0].num_new_tokens > 0  # the answers are not all empty

    # The benchmark predictor encodes a video once for the questions asked about it in a row.
    predictor = VLM2VideoPredictor(model_dir, frames="8", max_new_tokens=4)
    predictor.model.model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    calls.clear()
    answers = [predictor.answer(video, q).text for q in questions]
    assert len(calls) == 1
    reference, reference_processor = load_vlm2(model_dir)
    from spatialvlm.data.video import read_video

    clip = read_video(video, sampling=predictor.sampling, allow_fewer=True)
    assert answers == [ask_video(reference, reference_processor, clip.frames, q, num_frames=None, max_new_tokens=4).text for q in questions]
