"""Model-free predictors: the chance, most-frequent-answer and category-prior baselines, and an answer key.

Each is a :data:`spatialvlm.eval.runner.Predictor` (``(item, prompt) -> answer``). The baselines
are fitted on a *training* split's items, never on the questions they answer.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from collections.abc import Sequence

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval.metrics import REVSI_NUMERICAL_TYPES, VSI_NUMERICAL_TYPES, VSTI_NUMERICAL_TYPES
from spatialvlm.eval.parsing import option_letter, option_text

__all__ = ["ChanceBaseline", "MostFrequentBaseline", "CategoryPriorBaseline", "AnswerKey", "gold_answer"]

_NUMERICAL_TYPES = frozenset(VSI_NUMERICAL_TYPES + VSTI_NUMERICAL_TYPES + REVSI_NUMERICAL_TYPES)


def gold_answer(item: BenchmarkItem) -> str:
    """The scored answer: the option letter (VSTI-Bench keeps it in ``mc_answer``) or the number."""
    if item.question_type not in _NUMERICAL_TYPES and item.extra.get("mc_answer"):
        return str(item.extra["mc_answer"])
    return item.ground_truth


def _format_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class ChanceBaseline:
    """Multiple choice: a uniformly random option letter. Numerical: a random training answer of the
    same question type (the training answer distribution); "0" when the type has none."""

    def __init__(self, train_items: Sequence[BenchmarkItem], seed: int = 0) -> None:
        self.numerical_answers: dict[str, list[str]] = {}
        for item in train_items:
            if item.question_type in _NUMERICAL_TYPES:
                self.numerical_answers.setdefault(item.question_type, []).append(item.ground_truth)
        self.rng = random.Random(seed)

    def __call__(self, item: BenchmarkItem, prompt: str) -> str:
        if item.question_type in _NUMERICAL_TYPES:
            return self.rng.choice(self.numerical_answers.get(item.question_type, ["0"]))
        return option_letter(self.rng.choice(item.options))


class MostFrequentBaseline:
    """Multiple choice: the option whose text was the training split's most frequent answer text
    for the question type (else the most frequent letter). Numerical: the training median."""

    def __init__(self, train_items: Sequence[BenchmarkItem]) -> None:
        self.texts: dict[str, Counter[str]] = {}
        self.letters: dict[str, Counter[str]] = {}
        numbers: dict[str, list[float]] = {}
        for item in train_items:
            if item.question_type in _NUMERICAL_TYPES:
                numbers.setdefault(item.question_type, []).append(float(item.ground_truth))
                continue
            letter = gold_answer(item)
            chosen = [option_text(option).lower() for option in item.options if option_letter(option) == letter]
            self.texts.setdefault(item.question_type, Counter()).update(chosen)
            self.letters.setdefault(item.question_type, Counter())[letter] += 1
        self.medians = {name: statistics.median(values) for name, values in numbers.items()}

    def __call__(self, item: BenchmarkItem, prompt: str) -> str:
        if item.question_type in _NUMERICAL_TYPES:
            return _format_number(self.medians.get(item.question_type, 0.0))
        letter_of = {option_text(option).lower(): option_letter(option) for option in item.options}
        for text, _ in self.texts.get(item.question_type, Counter()).most_common():
            if text in letter_of:
                return letter_of[text]
        letters = self.letters.get(item.question_type)
        return letters.most_common(1)[0][0] if letters else option_letter(item.options[0])


_COUNTED_CATEGORY = re.compile(r"How many (.+?)\(s\)")
_PARENTHESISED = re.compile(r"\([^)]*\)")


class CategoryPriorBaseline:
    """What a question's wording alone gives away: the answer prior per question type *and* the
    object categories the question names.

    A question's key is ``(type, categories)`` with the categories named in its text in order of
    appearance (text in parentheses, such as a list of the options, is skipped); with fewer than
    ``min_support`` training questions on a key it backs off to ``(type, first category)``, then to
    the type alone. Numerical: the training median of the key. Multiple choice: the option whose
    text was the key's most frequent training answer text (an option matching no training answer
    backs off a level; last, the type's most frequent letter).

    Args:
        train_items: the training split.
        categories: the category vocabulary; default, learnt from the training split (the counting
            questions' "How many X(s)" and the options of ``object_rel_distance``).
        min_support: training questions a key needs before it is used.
    """

    def __init__(self, train_items: Sequence[BenchmarkItem], categories: Sequence[str] | None = None, min_support: int = 5) -> None:
        if min_support < 1:
            raise ValueError(f"min_support must be >= 1, got {min_support}")
        self.min_support = min_support
        vocabulary = set(categories or ())
        if categories is None:
            for item in train_items:
                match = _COUNTED_CATEGORY.search(item.question)
                if match:
                    vocabulary.add(match.group(1).strip().lower())
                if item.question_type == "object_rel_distance":
                    vocabulary.update(option_text(option).strip().lower() for option in item.options)
        self.categories = sorted(vocabulary)
        # Longest names first, so "trash can" wins over a shorter name inside it.
        names = sorted(self.categories, key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None
        self.numbers: dict[tuple, list[float]] = {}
        self.texts: dict[tuple, Counter[str]] = {}
        self.letters: dict[str, Counter[str]] = {}
        self.support: Counter[tuple] = Counter()
        for item in train_items:
            keys = self.keys(item)
            self.support.update(keys)
            if item.question_type in _NUMERICAL_TYPES:
                for key in keys:
                    self.numbers.setdefault(key, []).append(float(item.ground_truth))
                continue
            letter = gold_answer(item)
            chosen = [option_text(option).lower() for option in item.options if option_letter(option) == letter]
            for key in keys:
                self.texts.setdefault(key, Counter()).update(chosen)
            self.letters.setdefault(item.question_type, Counter())[letter] += 1
        self.medians = {key: statistics.median(values) for key, values in self.numbers.items()}

    def named_categories(self, question: str) -> tuple[str, ...]:
        """Categories of the vocabulary named in ``question`` (outside parentheses), in order, each once."""
        if self._pattern is None:
            return ()
        found = self._pattern.findall(_PARENTHESISED.sub(" ", question.lower()))
        return tuple(dict.fromkeys(found))

    def keys(self, item: BenchmarkItem) -> list[tuple]:
        """The item's keys from most to least specific (duplicates removed)."""
        named = self.named_categories(item.question)
        keys = [(item.question_type, named), (item.question_type, named[:1]), (item.question_type, ())]
        return list(dict.fromkeys(keys))

    def _usable(self, key: tuple) -> bool:
        # The type-level key is the last resort: any support will do.
        return self.support[key] >= (1 if key[1] == () else self.min_support)

    def __call__(self, item: BenchmarkItem, prompt: str) -> str:
        keys = self.keys(item)
        if item.question_type in _NUMERICAL_TYPES:
            for key in keys:
                if self._usable(key) and key in self.medians:
                    return _format_number(self.medians[key])
            return "0"
        letter_of = {option_text(option).lower(): option_letter(option) for option in item.options}
        for key in keys:
            if not self._usable(key):
                continue
            for text, _ in self.texts.get(key, Counter()).most_common():
                if text in letter_of:
                    return letter_of[text]
        letters = self.letters.get(item.question_type)
        return letters.most_common(1)[0][0] if letters else option_letter(item.options[0])


class AnswerKey:
    """Answers every question with its gold answer (an upper bound and a pipeline check)."""

    def __call__(self, item: BenchmarkItem, prompt: str) -> str:
        return gold_answer(item)
