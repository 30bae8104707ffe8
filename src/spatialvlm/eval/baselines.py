"""Model-free predictors: the chance and most-frequent-answer baselines, and an answer key.

Each is a :data:`spatialvlm.eval.runner.Predictor` (``(item, prompt) -> answer``). The baselines
are fitted on a *training* split's items, never on the questions they answer.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval.metrics import VSI_NUMERICAL_TYPES, VSTI_NUMERICAL_TYPES
from spatialvlm.eval.parsing import option_letter, option_text

__all__ = ["ChanceBaseline", "MostFrequentBaseline", "AnswerKey", "gold_answer"]

_NUMERICAL_TYPES = frozenset(VSI_NUMERICAL_TYPES + VSTI_NUMERICAL_TYPES)


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


class AnswerKey:
    """Answers every question with its gold answer (an upper bound and a pipeline check)."""

    def __call__(self, item: BenchmarkItem, prompt: str) -> str:
        return gold_answer(item)
