"""Image QA metrics on hand-computed cases from the reference definitions (ChartQA, DocVQA)."""

import random
from functools import lru_cache

import pytest

from spatialvlm.eval import (
    anls,
    exact_match_accuracy,
    lenient_answer,
    levenshtein_distance,
    relaxed_accuracy,
    relaxed_correctness,
    score_image_benchmark,
    score_image_prediction,
)


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("105", "100", True),  # exactly 5 % over: |p - t| / |t| = 0.05 <= 0.05
        ("95", "100", True),  # exactly 5 % under
        ("105.1", "100", False),  # just past the edge
        ("94.9", "100", False),
        ("21", "20", True),  # 1 / 20 = 0.05
        ("-10.4", "-10", True),  # |t| in the denominator
        ("12%", "0.12", True),  # "%" divides by 100
        ("12", "12%", False),  # 12 vs 0.12 numerically, "12" vs "12%" as strings
        ("0", "0", True),  # zero target: string comparison
        ("0.0", "0", False),  # ... which is exact, as the reference
        ("Yes", "yes", True),  # non-numeric: case-insensitive equality
        ("yes.", "yes", False),  # no punctuation stripping
        ("1,000", "1000", False),  # float("1,000") fails: compared as strings
        ("Brazil", "Brazil ", False),  # relaxed_correctness itself does not strip
    ],
)
def test_relaxed_correctness_reference_cases(prediction, target, expected):
    assert relaxed_correctness(prediction, target) is expected


def test_relaxed_accuracy_strips_prediction_and_takes_the_best_answer():
    assert relaxed_accuracy("  yes \n", ["yes"]) == 1.0  # Qwen-VL strips the prediction
    assert relaxed_accuracy("7", ["5", "7"]) == 1.0
    assert relaxed_accuracy("6", ["5", "7"]) == 0.0  # 1/5 and 1/7 are both over 5 %
    with pytest.raises(ValueError, match="non-empty list"):
        relaxed_accuracy("7", "7")


@lru_cache(maxsize=None)
def _naive_levenshtein(first, second):
    if not first or not second:
        return len(first) + len(second)
    return min(
        _naive_levenshtein(first[1:], second) + 1,
        _naive_levenshtein(first, second[1:]) + 1,
        _naive_levenshtein(first[1:], second[1:]) + (first[0] != second[0]),
    )


def test_levenshtein_matches_the_recursive_definition():
    rng = random.Random(0)
    for _ in range(150):
        first = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 7)))
        second = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 7)))
        assert levenshtein_distance(first, second) == _naive_levenshtein(first, second)
    assert levenshtein_distance("kitten", "sitting") == 3


def test_anls_reference_cases():
    assert anls("Hello", ["hello"]) == 1.0  # case-insensitive
    assert anls("  New   York ", ["new york"]) == 1.0  # stripped, inner whitespace collapsed
    assert anls("abcx", ["abcd"]) == pytest.approx(0.75)  # 1 edit in 4
    assert anls("abxy", ["abcd"]) == 0.5  # NL = 0.5 exactly: kept (the official script's `<`)
    assert anls("abxyz", ["abcde"]) == 0.0  # NL = 0.6 -> similarity 0.4 < 0.5 -> 0
    assert anls("abcx", ["zzzz", "abcd"]) == pytest.approx(0.75)  # best gold answer
    # The official denominator uses the raw lengths: "  ab  " (6 chars) vs "abcd": 2 edits / 6.
    assert anls("  ab  ", ["abcd"]) == pytest.approx(1 - 2 / 6)
    assert anls("", [""]) == 1.0  # both empty: distance 0 by definition
    assert anls("abc", [""]) == 0.0


def test_exact_match_accuracy():
    assert exact_match_accuracy(" Red ", ["red"]) == 1.0
    assert exact_match_accuracy("red.", ["red"]) == 0.0
    assert exact_match_accuracy("top left", ["bottom left", "top left"]) == 1.0


def test_lenient_answer_cuts_the_answer_out():
    assert lenient_answer("The answer is 47.", ["47"]) == "47"
    assert lenient_answer("Answer: top left\nbecause ...") == "top left"
    assert lenient_answer("about 1,234 units", ["1234"]) == "1234"
    assert lenient_answer("'red'") == "red"
    assert lenient_answer("It is 12%.", ["12%"]) == "12%"
    assert lenient_answer("It is red.", ["red"]) == "It is red"  # no word spotting


def test_score_image_prediction_dispatches_on_metric():
    record = {"metric": "relaxed_accuracy", "answers": ["40"], "prediction": "The answer is 41."}
    assert score_image_prediction(record, "official") == 0.0
    assert score_image_prediction(record, "lenient") == 1.0
    assert score_image_prediction({"metric": "anls", "answers": ["K7P"], "prediction": "K7Q"}) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        score_image_prediction({"metric": "bleu", "answers": ["a"], "prediction": "a"})
    with pytest.raises(ValueError, match="missing 'answers'"):
        score_image_prediction({"metric": "anls", "prediction": "a"})


def test_aggregation_by_tasks_or_questions_and_categories():
    records = [
        {"question_type": "a", "score_official": 1.0, "cats": ["x"]},
        {"question_type": "a", "score_official": 1.0, "cats": ["x", "y"]},
        {"question_type": "a", "score_official": 0.0, "cats": ["y"]},
        {"question_type": "b", "score_official": 0.0},
    ]
    by_tasks = score_image_benchmark(records, "official", benchmark="t", overall="tasks", task_order=("b",))
    assert list(by_tasks.tasks) == ["b", "a"]
    assert by_tasks.tasks["a"] == pytest.approx(200 / 3) and by_tasks.overall == pytest.approx(100 / 3)
    assert by_tasks.counts == {"b": 1, "a": 3}
    by_questions = score_image_benchmark(records, "official", benchmark="t", overall="questions", category_key="cats")
    assert by_questions.overall == pytest.approx(50.0)
    assert by_questions.categories == pytest.approx({"x": 100.0, "y": 50.0})
