"""Model-free predictors for image benchmarks: answer key, most frequent and chance.

Each is a :data:`spatialvlm.eval.runner.Predictor` over :class:`~spatialvlm.data.image_readers.ImageQAItem`.
The most-frequent and chance baselines are fitted on a *training* split's items.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from spatialvlm.data.image_readers import ImageQAItem

__all__ = ["ImageAnswerKey", "ImageMostFrequentBaseline", "ImageChanceBaseline"]


class ImageAnswerKey:
    """Answers every question with its first gold answer (an upper bound and a pipeline check)."""

    def __call__(self, item: ImageQAItem, prompt: str) -> str:
        return item.answers[0]


class ImageMostFrequentBaseline:
    """The training split's most frequent first answer of the question type (ties: the answer seen
    first); the most frequent answer overall for a type the training split lacks."""

    def __init__(self, train_items: Sequence[ImageQAItem]) -> None:
        if not train_items:
            raise ValueError("ImageMostFrequentBaseline needs at least one training item")
        per_type: dict[str, Counter[str]] = {}
        for item in train_items:
            per_type.setdefault(item.question_type, Counter())[item.answers[0]] += 1
        self.answers = {name: counts.most_common(1)[0][0] for name, counts in per_type.items()}
        self.fallback = Counter(item.answers[0] for item in train_items).most_common(1)[0][0]

    def __call__(self, item: ImageQAItem, prompt: str) -> str:
        return self.answers.get(item.question_type, self.fallback)


class ImageChanceBaseline:
    """A uniformly drawn training answer of the question type (the training answer distribution)."""

    def __init__(self, train_items: Sequence[ImageQAItem], seed: int = 0) -> None:
        if not train_items:
            raise ValueError("ImageChanceBaseline needs at least one training item")
        self.answers: dict[str, list[str]] = {}
        for item in train_items:
            self.answers.setdefault(item.question_type, []).append(item.answers[0])
        self.all_answers = [answer for answers in self.answers.values() for answer in answers]
        self.rng = random.Random(seed)

    def __call__(self, item: ImageQAItem, prompt: str) -> str:
        return self.rng.choice(self.answers.get(item.question_type, self.all_answers))
