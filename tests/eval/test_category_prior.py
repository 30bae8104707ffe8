"""The category-prior baseline on a hand-built training split, and through `spatialvlm eval`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval import CategoryPriorBaseline

COUNT = "How many {}(s) are in this room?"
DISTANCE = "Measuring from the closest point of each object, what is the direct distance between the {} and the {} (in meters)?"
CLOSEST = "Measuring from the closest point of each object, which of these objects ({}) is the closest to the {}?"


def _item(question_type, question, ground_truth, options=()):
    return BenchmarkItem("0", "synthetic", "s", question_type, question, ground_truth, list(options), video_path=None)


def _closest(target, gold_text, texts):
    options = [f"{letter}. {text}" for letter, text in zip("ABCD", texts)]
    letter = "ABCD"[texts.index(gold_text)]
    return _item("object_rel_distance", CLOSEST.format(", ".join(texts), target), letter, options)


TRAIN = [
    *(_item("object_counting", COUNT.format("chair"), str(n)) for n in (2, 4, 6, 8, 10)),
    *(_item("object_counting", COUNT.format("trash can"), "1") for _ in range(2)),
    _item("object_counting", COUNT.format("table"), "3"),
    *(_item("object_abs_distance", DISTANCE.format("chair", "table"), str(d)) for d in (1, 2, 4)),
    *(_item("object_abs_distance", DISTANCE.format("chair", "sofa"), str(d)) for d in (5, 6, 7)),
    _closest("chair", "sofa", ["sofa", "lamp", "tv", "bed"]),
    _closest("chair", "sofa", ["lamp", "sofa", "bed", "tv"]),
    _closest("chair", "sofa", ["tv", "bed", "lamp", "sofa"]),
    _closest("lamp", "tv", ["tv", "chair", "sofa", "bed"]),
    _closest("bed", "tv", ["sofa", "tv", "chair", "lamp"]),
    _closest("tv", "tv", ["tv", "lamp", "chair", "sofa"]),  # not a real question; makes "tv" the type's favourite
]


def test_hand_computed_keys_and_back_off():
    prior = CategoryPriorBaseline(TRAIN, min_support=3)
    # Vocabulary from the counting questions and the rel-distance options; "trash can" is one name.
    assert prior.categories == ["bed", "chair", "lamp", "sofa", "table", "trash can", "tv"]
    # Option lists in parentheses are not "named": only the target is.
    assert prior.named_categories(CLOSEST.format("sofa, lamp, tv, bed", "chair")) == ("chair",)
    assert prior.named_categories(COUNT.format("trash can")) == ("trash can",)
    # Chair counts 2, 4, 6, 8, 10 → 6; trash can has 2 < 3 questions → the type median of all 8
    # (1, 1, 2, 3, 4, 6, 8, 10) → 3.5.
    assert prior(_item("object_counting", COUNT.format("chair"), "3"), "") == "6"
    assert prior(_item("object_counting", COUNT.format("trash can"), "3"), "") == "3.5"
    # The (chair, table) pair has 3 → median 2; (chair, lamp) has none → chair first: 1,2,4,5,6,7 → 4.5;
    # (tv, bed) → the type: 4.5.
    assert prior(_item("object_abs_distance", DISTANCE.format("chair", "table"), "1"), "") == "2"
    assert prior(_item("object_abs_distance", DISTANCE.format("chair", "lamp"), "1"), "") == "4.5"
    assert prior(_item("object_abs_distance", DISTANCE.format("tv", "bed"), "1"), "") == "4.5"
    # Closest to the chair: "sofa" 3 times → the letter of sofa wherever it is listed.
    question = _closest("chair", "bed", ["bed", "tv", "lamp", "sofa"])
    assert prior(question, "") == "D"
    # Closest to the sofa: no support → the type's most frequent text, "sofa" 3 vs "tv" 3 → ties keep
    # first-seen order (sofa); with sofa not listed, the next most frequent listed text, "tv".
    assert prior(_closest("sofa", "bed", ["bed", "tv", "lamp", "chair"]), "") == "B"


def test_min_support_one_uses_every_key():
    prior = CategoryPriorBaseline(TRAIN, min_support=1)
    assert prior(_item("object_counting", COUNT.format("trash can"), "3"), "") == "1"
    with pytest.raises(ValueError, match="min_support"):
        CategoryPriorBaseline(TRAIN, min_support=0)


def _write_split(path: Path, items) -> None:
    rows = [{**item.to_record(), "id": index} for index, item in enumerate(items)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_cli_category_prior(tmp_path):
    _write_split(tmp_path / "train.jsonl", TRAIN)
    test = [
        _item("object_counting", COUNT.format("chair"), "6"),  # prior 6: MRA 1
        _item("object_counting", COUNT.format("trash can"), "7"),  # type median 3.5: rel. error 0.5 → MRA 0.1
        _closest("chair", "sofa", ["bed", "tv", "lamp", "sofa"]),  # right
    ]
    _write_split(tmp_path / "test.jsonl", test)
    command = [
        sys.executable, "-m", "spatialvlm.cli", "eval", "--data", str(tmp_path), "--train-data", str(tmp_path),
        "--baseline", "category-prior", "--out", str(tmp_path / "out"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    # Default min_support 5: chair counts have 5 → 6; trash cans have 2 → the type median 3.5.
    assert [p["prediction"] for p in predictions] == ["6", "3.5", "D"]
    tasks = json.loads((tmp_path / "out" / "scores.json").read_text())["official"]["tasks"]
    assert tasks["object_counting"] == pytest.approx(100 * (1.0 + 0.1) / 2)
    assert tasks["object_rel_distance"] == pytest.approx(100.0)
