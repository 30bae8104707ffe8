"""Lenient answer parsing: a separately named score for models that answer in full sentences.

The official VSI-Bench scorer reads only the first word of an answer, so "(B) chair" or
"about 2.5 meters" score 0. The lenient parsers below recover the intended answer; their score is
always reported beside the official one, never in place of it.

Choice parsing, in order: a leading letter ("B", "B.", "(B)", "B) chair"); a phrase such as
"answer is B" / "option B"; the text of exactly one option ("the chair" → the option "B. chair",
longest option text first); a single standalone valid letter anywhere.

Number parsing: the first number in the text (digits with an optional sign, decimal point and
thousands commas, or an English number word up to "twenty"); when the question states its unit
("in meters", "in centimeters", "square meters") and the answer names another length or area
unit, the number is converted ("250 cm" for a question in meters → 2.5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["lenient_choice", "lenient_number", "question_unit", "option_letter", "option_text"]

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER = re.compile(
    r"(?<![\w.])(?:[-+]?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b)",
    re.IGNORECASE,
)
_NUMBER_THEN_UNIT = re.compile(
    r"\s*(square\s+meters?|square\s+metres?|sq\.?\s*m|m²|m2|square\s+feet|sq\.?\s*ft|ft²"
    r"|millimeters?|millimetres?|mm|centimeters?|centimetres?|cm|meters?|metres?|m"
    r"|kilometers?|kilometres?|km|feet|foot|ft|inches|inch|in)\b",
    re.IGNORECASE,
)
# Metres (length) or square metres (area) per unit.
_LENGTH_UNITS = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "ft": 0.3048, "in": 0.0254}
_AREA_UNITS = {"m2": 1.0, "ft2": 0.09290304}
_LEADING_LETTER = re.compile(r"^\W*\(?([A-Za-z])\)?(?:[.:)\]]|\s|$)")
_ANSWER_PHRASE = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE)


def _canonical_unit(unit: str) -> str:
    unit = re.sub(r"\s+", " ", unit.lower().replace(".", ""))
    if unit.startswith(("square f", "sq ft", "sqft", "ft²")):
        return "ft2"
    if unit.startswith(("square m", "sq m", "sqm", "m²", "m2")):
        return "m2"
    if unit.startswith(("milli", "mm")):
        return "mm"
    if unit.startswith(("centi", "cm")):
        return "cm"
    if unit.startswith(("kilo", "km")):
        return "km"
    if unit.startswith(("feet", "foot", "ft")):
        return "ft"
    if unit.startswith("inch") or unit == "in":
        return "in"
    return "m"


def question_unit(question: str | None) -> str | None:
    """The unit a question asks for: "m", "cm", "m2", or None when it names none."""
    if not question:
        return None
    text = question.lower()
    if "square meter" in text or "square metre" in text:
        return "m2"
    if "centimeter" in text or "centimetre" in text:
        return "cm"
    if "meter" in text or "metre" in text:
        return "m"
    return None


def lenient_number(prediction: str, question: str | None = None) -> float | None:
    """The first number in ``prediction``, converted to the question's unit when both name one."""
    for match in _NUMBER.finditer(prediction):
        token = match.group(0)
        word = _NUMBER_WORDS.get(token.lower())
        value = float(word) if word is not None else float(token.replace(",", ""))
        target_unit = question_unit(question)
        unit_match = _NUMBER_THEN_UNIT.match(prediction, match.end())
        if target_unit is None or unit_match is None:
            return value
        unit = _canonical_unit(unit_match.group(1))
        target_is_area, unit_is_area = target_unit == "m2", unit in _AREA_UNITS
        if target_is_area != unit_is_area:
            # A length where an area is asked (or the reverse), e.g. "5 m by 4 m": keep the number.
            return value
        if unit_is_area:
            return value * _AREA_UNITS[unit] / _AREA_UNITS[target_unit]
        return value * _LENGTH_UNITS[unit] / _LENGTH_UNITS[target_unit]
    return None


def option_letter(option: str) -> str:
    """The letter of an option written as "A. chair" (the VSI-Bench format)."""
    return option.strip()[:1].upper()


def option_text(option: str) -> str:
    """The text of an option written as "A. chair"."""
    return re.sub(r"^\s*[A-Za-z]\s*[.)]\s*", "", option).strip()


def lenient_choice(prediction: str, options: Sequence[str]) -> str | None:
    """The option letter ``prediction`` most plausibly names, or None (see the module docstring)."""
    letters = [option_letter(option) for option in options] or list("ABCD")
    text = prediction.strip()
    # "A chair" reads as the article, not option A; "A." or "A" alone is the option.
    article = re.match(r"^\W*[Aa]\s+(?=[a-z])", text)
    if article:
        text = text[article.end():]
    else:
        leading = _LEADING_LETTER.match(text)
        if leading and leading.group(1).upper() in letters:
            return leading.group(1).upper()
    phrase = _ANSWER_PHRASE.search(text)
    if phrase and phrase.group(1).upper() in letters:
        return phrase.group(1).upper()
    lowered = text.lower()
    by_length = sorted(options, key=lambda option: -len(option_text(option)))
    found = [
        option
        for option in by_length
        if option_text(option) and re.search(r"\b" + re.escape(option_text(option).lower()) + r"\b", lowered)
    ]
    if found:
        # The longest option text that matches wins ("front-left" over "left"), provided no other
        # option of that length also matches.
        best = [option for option in found if len(option_text(option)) == len(option_text(found[0]))]
        if len(best) == 1:
            return option_letter(best[0])
    standalone = {letter for letter in re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", text) if letter in letters}
    if len(standalone) == 1:
        return standalone.pop()
    return None
