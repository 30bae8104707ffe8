"""Official VSI-Bench / VSTI-Bench scoring against hand-computed cases."""

import pytest

from spatialvlm.eval import (
    VSI_TASKS,
    mean_relative_accuracy,
    official_answer_token,
    official_float,
    score_benchmark,
    score_prediction,
    score_vsibench,
    score_vstibench,
)


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        (4.0, 4.0, 1.0),  # exact: all 10 thresholds
        (5.0, 4.0, 0.6),  # rel. error 0.25 passes θ = 0.50 … 0.75 (6 of 10); 0.25 ≤ 1 − 0.75 holds exactly
        (3.0, 4.0, 0.6),  # symmetric below the target
        (6.0, 4.0, 0.1),  # rel. error 0.5 passes only θ = 0.50 (≤, not <)
        (2.0, 4.0, 0.1),
        (6.2, 4.0, 0.0),  # rel. error 0.55 fails every threshold
        (1.05, 1.0, 1.0),  # float: |1.05 − 1| = 1 − 0.95 = 0.050000000000000044, equal → passes θ = 0.95
        (1.1, 1.0, 0.9),  # 0.10000000000000009 vs 1 − 0.9 (linspace gives 0.8999999999999999 → 0.1000…09): passes
        (1.12, 1.0, 0.8),  # rel. error 0.12 passes θ ≤ 0.85 (8 of 10)
        (0.0, 4.0, 0.0),  # rel. error 1
        (None, 4.0, 0.0),  # unparsable → worst case
        (float("nan"), 4.0, 0.0),
    ],
)
def test_mean_relative_accuracy_hand_cases(prediction, target, expected):
    assert mean_relative_accuracy(prediction, target) == pytest.approx(expected, abs=1e-12)


def test_mean_relative_accuracy_zero_target_is_an_error():
    with pytest.raises(ValueError, match="target is 0"):
        mean_relative_accuracy(1.0, 0.0)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("B...", "B"),
        ("B. chair", "B"),
        ("(B) chair", "(B)"),  # official keeps the brackets → scores 0
        (" B", ""),  # a leading space makes the first word empty
        ("2.5 meters", "2.5"),
        ("2.5.", "2.5"),
        ("B\nbecause", "B\nbecause"),  # only " " splits
        ("The answer is B", "The"),
    ],
)
def test_official_answer_token(text, token):
    assert official_answer_token(text) == token


def test_official_float():
    assert official_float("2.5") == 2.5
    assert official_float("3") == 3.0
    assert official_float("three") is None
    assert official_float(None) is None


def test_official_scoring_of_messy_answers_is_strict():
    mc = {"question_type": "route_planning", "ground_truth": "B", "options": ["A. x", "B. y"]}
    assert score_prediction({**mc, "prediction": "b."}) == 1.0  # case-insensitive
    assert score_prediction({**mc, "prediction": "(B) y"}) == 0.0
    assert score_prediction({**mc, "prediction": "(B) y"}, mode="lenient") == 1.0
    na = {"question_type": "object_abs_distance", "ground_truth": "2.0", "question": "distance (in meters)?"}
    assert score_prediction({**na, "prediction": "2.0 meters"}) == 1.0
    assert score_prediction({**na, "prediction": "about 2.0 meters"}) == 0.0
    assert score_prediction({**na, "prediction": "about 2.0 meters"}, mode="lenient") == 1.0


def _record(question_type, ground_truth, prediction):
    return {"question_type": question_type, "ground_truth": ground_truth, "prediction": prediction}


def test_score_vsibench_aggregation_by_hand():
    records = [
        _record("object_counting", "4", "5"),  # 0.6
        _record("object_counting", "4", "4"),  # 1.0  → task 80
        _record("object_abs_distance", "2", "3"),  # rel 0.5 → 0.1 → 10
        _record("object_size_estimation", "100", "100"),  # 100
        _record("room_size_estimation", "20", "twenty"),  # unparsable → 0
        _record("object_rel_distance", "A", "A"),  # 100
        _record("object_rel_direction_easy", "A", "A"),  # easy 100
        _record("object_rel_direction_medium", "B", "A"),  # medium 0
        _record("object_rel_direction_medium", "B", "B"),  # medium 50
        _record("object_rel_direction_hard", "C", "C"),  # hard 100 → direction (100+50+100)/3
        _record("route_planning", "D", "A"),  # 0
        _record("obj_appearance_order", "C", "C."),  # 100
    ]
    scores = score_vsibench(records)
    expected = {
        "object_counting": 80.0,
        "object_abs_distance": 10.0,
        "object_size_estimation": 100.0,
        "room_size_estimation": 0.0,
        "object_rel_distance": 100.0,
        "object_rel_direction": 250.0 / 3,
        "route_planning": 0.0,
        "obj_appearance_order": 100.0,
    }
    assert list(scores) == list(VSI_TASKS) + ["overall"]
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value)
    # Overall is the mean of the 8 tasks, not of the 12 questions (which would be 59.2).
    assert scores["overall"] == pytest.approx(sum(expected.values()) / 8)

    detailed = score_benchmark(records)
    assert detailed.subtasks == pytest.approx({"object_rel_direction_easy": 100.0, "object_rel_direction_medium": 50.0, "object_rel_direction_hard": 100.0})
    assert detailed.counts["object_rel_direction_medium"] == 2


def test_score_vsibench_subset_means_only_present_tasks():
    scores = score_vsibench([_record("object_counting", "4", "5"), _record("route_planning", "A", "A")])
    assert scores == pytest.approx({"object_counting": 60.0, "route_planning": 100.0, "overall": 80.0})


def test_unknown_question_type_is_named():
    with pytest.raises(ValueError, match="object_teleportation"):
        score_vsibench([_record("object_teleportation", "A", "A")])


def test_vstibench_uses_mc_answer_and_means_all_subtypes():
    records = [
        {"question_type": "obj_obj_relative_pos_nf", "ground_truth": "Near", "mc_answer": "A", "prediction": "A"},
        {"question_type": "obj_obj_relative_pos_lr", "ground_truth": "Left", "mc_answer": "A", "prediction": "B"},
        {"question_type": "camera_displacement", "ground_truth": "2", "prediction": "2.5"},  # rel .25 → 60
        {"question_type": "camera_movement_direction", "ground_truth": "forward", "mc_answer": "C", "prediction": "C"},
    ]
    scores = score_vstibench(records)
    assert scores["obj_obj_relative_pos_nf"] == 100.0
    assert scores["obj_obj_relative_pos_lr"] == 0.0
    assert scores["camera_displacement"] == pytest.approx(60.0)
    assert scores["overall"] == pytest.approx((100 + 0 + 60 + 100) / 4)
    categories = score_benchmark(records, "vstibench").categories
    assert categories["obj_obj_rel_pos"] == pytest.approx(50.0)
    assert categories["average"] == pytest.approx((50 + 60 + 100) / 3)
