"""Image question-answering metrics, reproducing the reference evaluation code exactly.

- **Relaxed accuracy** (ChartQA; Masry et al. 2022 §5.1, after Methani et al. 2020): the
  reference ``relaxed_correctness`` (google-research/pix2struct ``metrics.py``, copied into Qwen-VL
  ``eval_mm/evaluate_vqa.py`` and lmms-eval ``tasks/chartqa/utils.py``). A string parses as a
  number with Python ``float()``, a trailing "%" dividing by 100. When the prediction parses and
  the target parses to a non-zero number, the answer is right iff ``|p − t| / |t| <= 0.05``;
  otherwise (non-numeric, or a zero target) iff the strings are equal ignoring case. Qwen-VL's
  ``evaluate_relaxed_accuracy`` strips the prediction and takes the max over the gold answers; so
  do we. No other normalisation: "1,000" and "$5" are strings.
- **ANLS** (DocVQA; Mathew et al. 2021 eq. 1, official RRC script as copied into lmms-eval
  ``api/metrics.py`` ``anls``): both strings lower-cased, stripped, inner whitespace collapsed to
  one space; normalised Levenshtein ``NL = dist(gold', pred') / max(len(gold), len(pred))`` —
  the lengths are those of the *raw* strings, as the official script has it; score
  ``1 − min over golds of NL``, set to 0 when below the 0.5 threshold (exactly 0.5 is kept, as
  the script's ``<`` has it; the paper's equation reads ``NL < τ``).
- **Exact match** (our suite's closed answers; Qwen-VL ``evaluate_exact_match_accuracy``):
  ``pred.strip().lower() == gold.strip().lower()`` for any gold answer.

A **lenient** mode, reported beside and never instead of the official score, first cuts the answer
out of free text (:func:`lenient_answer`). Scores are per question in [0, 1]; tables report percent.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spatialvlm.eval.metrics import BenchmarkScores, ScoringMode

__all__ = [
    "IMAGE_METRICS",
    "ANLS_THRESHOLD",
    "RELAXED_TOLERANCE",
    "levenshtein_distance",
    "relaxed_correctness",
    "relaxed_accuracy",
    "anls",
    "exact_match_accuracy",
    "lenient_answer",
    "score_image_prediction",
    "score_image_benchmark",
]

ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05


def levenshtein_distance(first: str, second: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character, each cost 1)."""
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for row, char in enumerate(first, 1):
        current = [row]
        for col, other in enumerate(second, 1):
            current.append(min(previous[col] + 1, current[col - 1] + 1, previous[col - 1] + (char != other)))
        previous = current
    return previous[-1]


def _to_float(text: str) -> float | None:
    # The reference: float(text), "12%" → 0.12, and None when float() raises ValueError.
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(prediction: str, target: str, max_relative_change: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's reference check of one prediction against one target (module docstring)."""
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the stripped prediction is relaxed-correct for any gold answer, else 0.0."""
    _check_answers(answers)
    return float(max(relaxed_correctness(prediction.strip(), answer) for answer in answers))


def anls(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """DocVQA's per-question ANLS of ``prediction`` against all gold ``answers`` (module docstring)."""
    _check_answers(answers)
    predicted = " ".join(prediction.strip().lower().split())
    distances = []
    for answer in answers:
        gold = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        distances.append(0.0 if length == 0 else levenshtein_distance(gold, predicted) / length)
    score = 1.0 - min(distances)
    return 0.0 if score < threshold else score


def exact_match_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals a gold answer after strip + lower-case, else 0.0."""
    _check_answers(answers)
    predicted = prediction.strip().lower()
    return float(any(predicted == answer.strip().lower() for answer in answers))


def _check_answers(answers: Sequence[str]) -> None:
    if isinstance(answers, str) or not answers:
        raise ValueError(f"answers must be a non-empty list of strings; got {answers!r}")


IMAGE_METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact_match": exact_match_accuracy,
    "relaxed_accuracy": relaxed_accuracy,
    "anls": anls,
}

_ANSWER_CUE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?%?|-?\.\d+%?")
_TRAILING = "".join(char for char in string.punctuation if char != "%") + string.whitespace


def lenient_answer(prediction: str, answers: Sequence[str] = ()) -> str:
    """The answer cut out of free text, for the lenient score.

    Takes the text after the last "answer is" / "answer:" (if any), its first non-empty line,
    drops surrounding whitespace, quotes and brackets and trailing punctuation (a "%" stays). When
    every gold answer is a number and that span is not, the span's first number (thousands commas
    removed) is the answer.
    """
    text = prediction
    cues = list(_ANSWER_CUE.finditer(text))
    if cues:
        text = text[cues[-1].end():]
    lines = [line for line in text.splitlines() if line.strip()]
    span = lines[0] if lines else ""
    span = span.strip().strip("\"'`*()[]{}").rstrip(_TRAILING).strip()
    if answers and all(_to_float(answer.strip()) is not None for answer in answers) and _to_float(span) is None:
        match = _NUMBER.search(span)
        if match:
            span = match.group(0).replace(",", "")
    return span


def score_image_prediction(record: Mapping[str, Any], mode: ScoringMode = "official") -> float:
    """Score one record (keys ``metric``, ``answers``, ``prediction``) in [0, 1]."""
    if mode not in ("official", "lenient"):
        raise ValueError(f"unknown scoring mode {mode!r}; expected 'official' or 'lenient'")
    for key in ("metric", "answers", "prediction"):
        if key not in record:
            raise ValueError(f"record is missing {key!r}; got keys {sorted(record)}")
    metric = IMAGE_METRICS.get(record["metric"])
    if metric is None:
        raise ValueError(f"unknown metric {record['metric']!r}; expected one of {sorted(IMAGE_METRICS)}")
    answers = [str(answer) for answer in record["answers"]]
    prediction = str(record["prediction"])
    if mode == "lenient":
        prediction = lenient_answer(prediction, answers)
    return metric(prediction, answers)


def score_image_benchmark(
    records: Sequence[Mapping[str, Any]],
    mode: ScoringMode = "official",
    *,
    benchmark: str = "shirgx-images",
    overall: str = "tasks",
    category_key: str | None = None,
    task_order: Sequence[str] = (),
) -> BenchmarkScores:
    """Per-task means (percent) and the overall score of image records.

    Args:
        records: rows with ``question_type`` and either ``score_<mode>`` or what
            :func:`score_image_prediction` needs.
        mode: "official" or "lenient".
        benchmark: the name recorded in the result.
        overall: "questions" — mean over all questions (ChartQA's ``relaxed_overall``, DocVQA's
            ANLS); "tasks" — mean of the per-task scores (our suite, so each task weighs the same).
        category_key: a record key holding a list of categories (DocVQA ``question_types``);
            per-category means go to ``categories``.
        task_order: tasks listed first, in this order; the others follow sorted by name.
    """
    if not records:
        raise ValueError("score_image_benchmark: no records to score")
    if overall not in ("questions", "tasks"):
        raise ValueError(f"overall must be 'questions' or 'tasks'; got {overall!r}")
    per_task: dict[str, list[float]] = {}
    per_category: dict[str, list[float]] = {}
    for record in records:
        precomputed = record.get(f"score_{mode}")
        value = float(precomputed if precomputed is not None else score_image_prediction(record, mode))
        per_task.setdefault(str(record["question_type"]), []).append(value)
        for category in (record.get(category_key) or []) if category_key else []:
            per_category.setdefault(str(category), []).append(value)
    names = [name for name in task_order if name in per_task] + sorted(set(per_task) - set(task_order))
    tasks = {name: 100.0 * sum(per_task[name]) / len(per_task[name]) for name in names}
    counts = {name: len(per_task[name]) for name in names}
    categories = {name: 100.0 * sum(values) / len(values) for name, values in sorted(per_category.items())}
    if overall == "tasks":
        overall_score = sum(tasks.values()) / len(tasks)
    else:
        overall_score = 100.0 * sum(sum(values) for values in per_task.values()) / len(records)
    micro = 100.0 * sum(sum(values) for values in per_task.values()) / len(records)
    macro = sum(tasks.values()) / len(tasks)
    return BenchmarkScores(
        benchmark, mode, tasks, overall_score, counts, {}, categories, micro, macro, dict(counts)
    )
