"""Lenient answer parsing on messy model answers."""

import pytest

from spatialvlm.eval import lenient_choice, lenient_number, question_unit

OPTIONS = ["A. front-left", "B. front-right", "C. back-left", "D. back-right"]


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("b.", "B"),
        ("(C) back-left", "C"),
        ("C) back-left", "C"),
        ("D: back-right", "D"),
        ("The answer is C.", "C"),
        ("I choose option D", "D"),
        ("front-right", "B"),  # option text; the longer "front-right" beats a bare "right"
        ("It is to the back-left of the sofa.", "C"),
        ("A", "A"),
        ("A chair", None),  # the article, not option A
        ("Nothing useful", None),
        ("back", None),  # names no single option
    ],
)
def test_lenient_choice(answer, letter):
    assert lenient_choice(answer, OPTIONS) == letter


def test_lenient_choice_respects_the_option_count():
    assert lenient_choice("C", ["A. left", "B. right"]) is None
    assert lenient_choice("the chair", ["A. table", "B. chair", "C. sofa"]) == "B"


@pytest.mark.parametrize(
    ("answer", "question", "value"),
    [
        ("about 2.5 meters", None, 2.5),
        ("2.5m", None, 2.5),
        ("It is 3.", None, 3.0),
        ("three chairs", None, 3.0),
        ("Twelve", None, 12.0),
        ("1,234", None, 1234.0),
        (".5", None, 0.5),
        ("-1.5", None, -1.5),
        ("roughly 250 cm", "What is the distance (in meters)?", 2.5),
        ("1.2 m", "measured in centimeters?", 120.0),
        ("5 feet", "how far (in meters)?", 1.524),
        ("about 20 square meters", "What is the size of this room (in square meters)?", 20.0),
        ("5 m by 4 m", "size of this room (in square meters)?", 5.0),  # a length where an area is asked: kept
        ("no idea", None, None),
    ],
)
def test_lenient_number(answer, question, value):
    parsed = lenient_number(answer, question)
    if value is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(value)


def test_question_unit():
    assert question_unit("what is the direct distance between the sofa and the bed (in meters)?") == "m"
    assert question_unit("longest dimension ..., measured in centimeters?") == "cm"
    assert question_unit("What is the size of this room (in square meters)?") == "m2"
    assert question_unit("How many chair(s) are in this room?") is None
