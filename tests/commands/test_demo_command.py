"""``spatialvlm demo``: the committed tiny checkpoint answers questions about a fresh synthetic scene,
each answer printed beside the exact one, through the same path as ``spatialvlm ask``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spatialvlm.cli import main
from spatialvlm.commands.demo import default_checkpoint, pick_questions
from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval import score_prediction


def _item(question_type: str) -> BenchmarkItem:
    return BenchmarkItem("0", "synthetic", "s", question_type, "Q?", "1", [], Path("s.mp4"))


def test_pick_questions_takes_one_per_task_in_paper_order():
    items = [_item(name) for name in
             ("route_planning", "object_counting", "object_rel_direction_hard", "object_counting", "room_size_estimation")]
    picked = [item.question_type for item in pick_questions(items, 8)]
    assert picked == ["object_counting", "room_size_estimation", "object_rel_direction_hard", "route_planning"]
    assert len(pick_questions(items, 2)) == 2


def test_demo_asks_the_committed_checkpoint(tmp_path, capsys):
    checkpoint = default_checkpoint()
    assert (checkpoint / "model.safetensors").is_file()
    assert main(["demo", "--out", str(tmp_path), "--questions", "4"]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(records) == 4
    questions = {str(row["id"]): row for row in map(json.loads, (tmp_path / "scene/demo.jsonl").read_text().splitlines())}
    for record in records:
        # Each printed line holds the model's answer beside the generator's exact answer, and the
        # score is the official one of that pair.
        gold = questions[str(record["id"])]["ground_truth"]
        assert f"model: {record['prediction']!r}" in printed
        assert f"exact: {gold}" in printed
        assert record["score_official"] == score_prediction(record, "vsibench", "official")
    assert (tmp_path / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The image job: the committed SHIRG-X model answers one image at two budgets, each with its
    # selection picture, and `spatialvlm ask --image` gives the same answer at K = 512.
    answers = re.findall(r"    K = (\d+) \+ 144 tokens: model '([^']*)'", printed)
    assert [int(k) for k, _ in answers] == [512, 1024]
    adaptive = re.search(r"adaptive head: K = (\d+) \+ 144 tokens: model '([^']*)'", printed)
    assert int(adaptive.group(1)) in (512, 768, 1024)
    for budget in (512, 1024):
        assert (tmp_path / f"selection_K{budget}.png").read_bytes()[:4] == b"\x89PNG"
    question = re.search(r"shirgx-tiny-synthetic; (.*\?) exact: (\w+)", printed)
    shirgx = checkpoint.parent / "shirgx-tiny-synthetic"
    assert main(["ask", "--image", str(tmp_path / "image.png"), "--model", str(shirgx), "--decoding", "diffusion",
                 "--budget", "512", "--post-prompt", "lmms", "--max-new-tokens", "4", "--no-progress",
                 question.group(1)]) == 0
    assert capsys.readouterr().out.strip() == answers[0][1]
    assert main(["ask", "--image", str(tmp_path / "image.png"), "--model", str(shirgx), "--decoding", "diffusion",
                 "--post-prompt", "lmms", "--max-new-tokens", "4", "--no-progress", question.group(1)]) == 0
    assert capsys.readouterr().out.strip() == adaptive.group(2)  # ask's default budget is the adaptive head
    # The trace `spatialvlm viz memory --help` points at is written, and viz redraws it.
    assert main(["viz", "memory", "--trace", str(tmp_path / "memory_trace.json"), "--out", str(tmp_path / "again.png")]) == 0
    assert "demo_out/memory_trace.json" in main_help("viz", "memory")
    capsys.readouterr()
    frames = json.loads((checkpoint / "synthetic_training.json").read_text())["synth"]["num_frames"]
    # The statistics row of the one video: every sampled frame went through the memory.
    assert re.search(rf"^\s*0\s+{frames}\s+\d+/\d+", printed, re.MULTILINE), printed

    # The same question through `spatialvlm ask` gives the same answer.
    first = records[0]
    scene = tmp_path / "scene/synthetic"
    assert main([
        "ask", "--video", str(scene / f"{first['scene_name']}.mp4"),
        "--geometry", str(scene / f"{first['scene_name']}_geometry"), "--model", str(checkpoint),
        "--num-frames", str(frames), "--no-progress", first["prompt"],
    ]) == 0
    assert capsys.readouterr().out.strip() == first["prediction"]


def test_demo_memory_only_streams_tokens_through_the_memory(tmp_path, capsys):
    assert main(["demo", "--memory-only", "--out", str(tmp_path), "--lengths", "12,5"]) == 0
    printed = capsys.readouterr().out
    assert "streamed 2 synthetic videos (17 frames)" in printed
    trace = json.loads((tmp_path / "memory_trace.json").read_text())
    assert trace  # the trace of both videos was written
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "memory_state.safetensors").is_file()


def main_help(*command: str) -> str:
    import contextlib
    import io

    import pytest

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(buffer.getvalue().split())
