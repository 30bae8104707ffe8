"""`spatialvlm ask` end to end on an mp4 and geometry files the test writes."""

import re

import torch
from PIL import Image

from spatialvlm.cli import main
from spatialvlm.models import VLM2ForConditionalGeneration, answer_video_question, build_tiny_processor, load_vlm2, tiny_vlm2_config
from spatialvlm.models.tiny import make_tiny_video_sample


def test_ask_prints_the_same_answer_as_the_library(tmp_path, capsys):
    video, geometry, _ = make_tiny_video_sample(tmp_path / "scene", num_frames=6)
    torch.manual_seed(0)
    config = tiny_vlm2_config(use_dual_memory=True, memory_L_w=2, memory_L_e=3)
    VLM2ForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    build_tiny_processor(config).save_pretrained(tmp_path / "model")
    model, processor = load_vlm2(tmp_path / "model")
    expected = answer_video_question(model, processor, video, "How many chairs?", geometry=geometry, num_frames=4, max_new_tokens=4)

    picture = tmp_path / "memory.png"
    code = main([
        "ask", "--video", str(video), "--geometry", str(geometry), "--model", str(tmp_path / "model"),
        "--num-frames", "4", "--max-new-tokens", "4", "--stats", "--viz", str(picture), "--no-progress",
        "How many chairs?",
    ])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == expected + "\n"
    # 4 frames with L_w = 2 and L_e = 3: full memories and exactly one episodic replacement.
    # Statistics row: video 0, 4 frames, working 2/2, episodic 3/3, 1 replacement.
    assert re.search(r"^\s*0\s+4\s+2/2\s+3/3\s+1\s", err, re.MULTILINE), err
    assert Image.open(picture).size[0] > 100


def test_ask_reports_bad_inputs_in_one_line(tmp_path, capsys):
    video, geometry, _ = make_tiny_video_sample(tmp_path / "scene", num_frames=3)
    torch.manual_seed(0)
    config = tiny_vlm2_config()
    VLM2ForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    build_tiny_processor(config).save_pretrained(tmp_path / "model")
    base = ["ask", "--model", str(tmp_path / "model"), "--no-progress", "--video", str(video)]
    assert main([*base, "q"]) == 2
    assert "needs per-frame geometry" in capsys.readouterr().err
    assert main([*base, "--geometry", str(geometry), "q"]) == 2
    assert "has 3 frames, fewer than the 32 requested" in capsys.readouterr().err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    assert main(["ask", "--model", str(tmp_path / "model"), "--video", str(broken), "--geometry", str(geometry), "q"]) == 2
    assert "cannot read video" in capsys.readouterr().err
