"""ReVSI and VSI-Bench-Debiased scored as their official lmms-eval task code, micro and macro averages
side by side, and the readers of both local layouts. References are hand computations from the
official formulas (tests/integrations compares against the installed lmms-eval code itself)."""

import json

import pytest

from spatialvlm.data.readers import write_jsonl
from spatialvlm.eval import evaluate_directory, score_benchmark, score_prediction
from spatialvlm.eval.prompts import build_prompt
from spatialvlm.eval.revsi import read_revsi, read_vsibench_debiased


def _record(question_type, gold, prediction, options=None):
    return {"question_type": question_type, "ground_truth": gold, "prediction": prediction, "options": options or []}


def test_revsi_parsing_differs_from_vsibench_where_the_official_code_does():
    # ReVSI strips before splitting: a leading newline or space still gives the first word.
    assert score_prediction(_record("route_planning", "B", "\nb. turn right"), "revsi") == 1.0
    assert score_prediction(_record("object_rel_direction_easy", "B", " B"), "vsibench") == 0.0
    assert score_prediction(_record("object_counting_single", "4", " 4."), "revsi") == 1.0
    assert score_prediction(_record("object_counting", "4", " 4."), "vsibench") == 0.0
    # Any failure is 0 in ReVSI's bare except, a zero target included.
    assert score_prediction(_record("object_abs_distance", "0", "0"), "revsi") == 0.0
    assert score_prediction(_record("object_abs_distance", "2.0", "two"), "revsi") == 0.0
    # MRA: |2.3 − 2| / 2 = 0.15 ≤ 1 − θ for θ ∈ {0.50 … 0.85} → 8 of 10.
    assert score_prediction(_record("object_size_estimation", "2", "2.3 m"), "revsi") == pytest.approx(0.8)
    with pytest.raises(ValueError, match="unknown question type"):
        score_prediction(_record("object_rel_direction_easy", "A", "A"), "revsi")


def test_revsi_composites_are_means_of_their_sub_types():
    records = (
        [_record("object_rel_direction_forward_easy", "A", p) for p in ("A", "A", "B", "B")]  # 0.5
        + [_record("object_rel_direction_backward_hard", "A", "A")]  # 1.0
        + [_record("object_rel_distance_closest", "C", "c"), _record("object_rel_distance_farthest", "C", "D")]
        + [_record("object_counting_single", "10", "10")] * 3 + [_record("object_counting_multiple", "10", "20")]
        + [_record("room_size_estimation_single", "20", "22")]  # |22 − 20| / 20 = 0.1 → θ ≤ 0.9 → 0.9
        + [_record("route_planning", "A", "B")]
    )
    scores = score_benchmark(records, "revsi")
    assert scores.tasks == pytest.approx({
        "object_counting": 100 * (1.0 + 0.0) / 2,  # mean of the sub-types, not of the 4 questions (75)
        "object_rel_direction": 100 * (0.5 + 1.0) / 2,
        "object_rel_distance": 100 * (1.0 + 0.0) / 2,
        "room_size_estimation": 90.0,
        "route_planning": 0.0,
    })
    assert list(scores.tasks) == ["object_counting", "object_rel_direction", "object_rel_distance",
                                  "room_size_estimation", "route_planning"]  # lmms-eval's metric order
    assert scores.overall == pytest.approx((50 + 75 + 50 + 90 + 0) / 5)
    assert scores.macro == scores.overall
    # micro: the 13 questions, 2 + 1 + 1 + 3 + 0.9 of them right.
    assert scores.micro == pytest.approx(100 * (2 + 1 + 1 + 3 + 0.9) / 13)
    assert scores.task_counts == {"object_counting": 4, "object_rel_direction": 5, "object_rel_distance": 2,
                                  "room_size_estimation": 1, "route_planning": 1}
    assert scores.subtasks["object_counting_single"] == 100.0


def test_micro_and_macro_for_vsibench_and_the_report(tmp_path):
    rows = [
        {"id": i, "dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "How many?",
         "ground_truth": "3", "options": None} for i in range(3)
    ] + [{"id": 9, "dataset": "d", "scene_name": "s", "question_type": "route_planning", "question": "q",
          "ground_truth": "A", "options": ["A. x", "B. y"]}]
    write_jsonl(tmp_path / "test.jsonl", rows)
    result = evaluate_directory(tmp_path, lambda item, prompt: "3" if item.id != "0" else "A", tmp_path / "o",
                                show_progress=False)
    # counting 2 of 3 right (66.7); route planning wrong (0): macro 33.3, micro 2 of 4 = 50.
    assert result.official.macro == pytest.approx(100 / 3) and result.official.micro == pytest.approx(50.0)
    table = result.scores_markdown_path.read_text()
    assert "| micro: mean over the questions | 4 | 50.0 |" in table
    assert json.loads(result.scores_json_path.read_text())["official"]["micro"] == pytest.approx(50.0)


def test_revsi_reader_layout_and_prompts(tmp_path):
    rows = [
        {"scene_id": "scene0011_00", "num_frames": 32, "question_type": "object_counting_multiple",
         "question": "How many chairs?", "ground_truth": "4", "options": None},
        {"scene_id": "scene0011_00", "num_frames": 32, "question_type": "route_planning", "question": "Route?",
         "ground_truth": "B", "options": ["A. Turn Left", "B. Turn Right"]},
    ]
    (tmp_path / "32_frame").mkdir()
    write_jsonl(tmp_path / "32_frame" / "test.jsonl", rows)
    items = read_revsi(tmp_path, "32_frame/test")
    assert [item.id for item in items] == ["32_frame-0", "32_frame-1"]
    assert items[0].video_path == (tmp_path / "32_frame" / "scene0011_00.mp4").resolve()
    assert items[0].dataset == "revsi" and items[0].extra == {"num_frames": 32}
    assert build_prompt(items[0], "revsi") == (
        "These are frames of a video.\nHow many chairs?\nAnswer the question using a single integer or decimal number."
    )
    assert build_prompt(items[1], "revsi") == (
        "These are frames of a video.\nRoute?\nOptions:\nA. Turn Left\nB. Turn Right\n"
        "Answer with the option's letter from the given choices directly."
    )
    result = evaluate_directory(tmp_path, lambda item, prompt: "4" if not item.options else "b", tmp_path / "o",
                                benchmark="revsi", split="32_frame/test", show_progress=False)
    assert result.official.tasks == {"object_counting": 100.0, "route_planning": 100.0}


def test_vsibench_debiased_reads_the_unpruned_rows_and_scores_as_vsibench(tmp_path):
    base = {"dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "How many?",
            "options": None}
    rows = [{**base, "id": i, "ground_truth": str(2 + i), "pruned": i % 2 == 1} for i in range(6)]
    write_jsonl(tmp_path / "test.jsonl", rows)
    assert [item.id for item in read_vsibench_debiased(tmp_path)] == ["0", "2", "4"]

    def predict(item, prompt):
        return "4"

    debiased = evaluate_directory(tmp_path, predict, tmp_path / "deb", benchmark="vsibench_debiased", show_progress=False)
    full = evaluate_directory(tmp_path, predict, tmp_path / "full", benchmark="vsibench", show_progress=False)
    # Golds 2, 4, 6 → MRA 0, 1, 0.5 (|4 − 6| / 6 = 0.33 ≤ 1 − θ for θ ≤ 0.65: 0.50 … 0.65, 4 of 10 → 0.4).
    assert debiased.official.tasks["object_counting"] == pytest.approx(100 * (0 + 1 + 0.4) / 3)
    # The full run reports the debiased subset beside its own score.
    subset = json.loads(full.scores_json_path.read_text())["debiased_subset"]
    assert subset["num_questions"] == 3 and subset["overall"] == pytest.approx(debiased.official.overall)
    assert "VSI-Bench-Debiased subset" in full.scores_markdown_path.read_text()

    # A released test_debiased file wins over filtering.
    write_jsonl(tmp_path / "test_debiased.jsonl", rows[:1])
    assert [item.id for item in read_vsibench_debiased(tmp_path)] == ["0"]
    no_column = tmp_path / "plain"
    no_column.mkdir()
    write_jsonl(no_column / "test.jsonl", [{k: v for k, v in row.items() if k != "pruned"} for row in rows])
    with pytest.raises(ValueError, match="pruned"):
        read_vsibench_debiased(no_column)
