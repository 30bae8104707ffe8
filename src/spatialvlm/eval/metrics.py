"""Scoring for VSI-Bench (full and debiased), VSTI-Bench and ReVSI, reproducing the official task code.

Official rules (``thinking-in-space`` / lmms-eval ``tasks/vsibench/utils.py``; VLM-3R
``tasks/vstibench/utils.py``), reproduced here exactly:

- The answer is reduced to its first space-separated word with trailing dots removed
  (``pred.split(" ")[0].rstrip(".").strip()``), see :func:`official_answer_token`.
- Multiple-choice: case-insensitive string equality with the gold letter.
- Numerical: the token is parsed with ``float()`` (failure scores 0) and scored by Mean Relative
  Accuracy over ``np.linspace(0.5, 0.95, 10)`` with ``|pred - gold| / gold <= 1 - θ``.
- VSI-Bench aggregation: mean per question type; ``object_rel_direction_{easy,medium,hard}`` are
  averaged into one ``object_rel_direction`` task; ``overall`` is the mean of the task scores.
- VSTI-Bench aggregation: mean per question type; ``overall`` is the mean of all sub-type scores.
- VSI-Bench-Debiased (lmms-eval ``vsibench_debiased``): the VSI-Bench rows not pruned by Iterative
  Bias Pruning, scored by the same ``utils.py`` as ``vsibench``.
- ReVSI (lmms-eval ``tasks/revsi/utils.py``): the answer is stripped *before* taking the first
  word (``str(pred).strip().split(" ")[0].rstrip(".").strip()``); multiple choice by
  case-insensitive equality, numbers by the same MRA (any failure, a zero target included, scores
  0); mean per question type, then the sub-types of ``object_rel_direction`` (forward/backward ×
  easy/hard), ``object_rel_distance`` (closest/farthest), ``object_counting`` and
  ``room_size_estimation`` (single/multiple) are averaged into one task each; ``overall`` = mean
  of the task scores.

Every result carries the official (macro) overall — the mean of the task scores — and the micro
average — the mean over all questions — since papers report both under one name.

The lenient mode (:mod:`spatialvlm.eval.parsing`) is a separate, named score reported beside the
official one, never instead of it. Scores are returned as percentages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from spatialvlm.eval.parsing import lenient_choice, lenient_number

__all__ = [
    "BENCHMARKS",
    "VSI_MC_TYPES",
    "VSI_NUMERICAL_TYPES",
    "VSI_TASKS",
    "VSTI_MC_TYPES",
    "VSTI_NUMERICAL_TYPES",
    "VSTI_CATEGORIES",
    "REVSI_MC_TYPES",
    "REVSI_NUMERICAL_TYPES",
    "REVSI_TASKS",
    "REVSI_COMPOSITES",
    "BenchmarkScores",
    "ScoringMode",
    "official_answer_token",
    "revsi_answer_token",
    "official_float",
    "exact_match",
    "mean_relative_accuracy",
    "score_prediction",
    "score_benchmark",
    "score_vsibench",
    "score_vstibench",
    "question_types",
    "is_numerical",
]

ScoringMode = Literal["official", "lenient"]

VSI_MC_TYPES: tuple[str, ...] = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
VSI_NUMERICAL_TYPES: tuple[str, ...] = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)
# The eight VSI-Bench tasks in the paper's column order.
VSI_TASKS: tuple[str, ...] = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)
_REL_DIRECTION_SUBTYPES = VSI_MC_TYPES[:3]

VSTI_MC_TYPES: tuple[str, ...] = (
    "obj_obj_relative_pos_nf",
    "obj_obj_relative_pos_ud",
    "obj_obj_relative_pos_lr",
    "camera_obj_rel_dist_v1",
    "camera_obj_rel_dist_v2",
    "camera_obj_rel_dist_v3",
    "camera_movement_direction",
)
VSTI_NUMERICAL_TYPES: tuple[str, ...] = (
    "camera_obj_abs_dist",
    "camera_displacement",
    "camera_obj_dist_change",
)
# The five categories of the VLM-3R paper's VSTI-Bench table; reported beside the official overall.
VSTI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "cam_obj_abs_dist": ("camera_obj_abs_dist",),
    "cam_displacement": ("camera_displacement",),
    "cam_movement_direction": ("camera_movement_direction",),
    "obj_obj_rel_pos": VSTI_MC_TYPES[:3],
    "cam_obj_rel_dist": VSTI_MC_TYPES[3:6],
}

REVSI_MC_TYPES: tuple[str, ...] = (
    "object_rel_direction_forward_easy",
    "object_rel_direction_backward_easy",
    "object_rel_direction_forward_hard",
    "object_rel_direction_backward_hard",
    "object_rel_distance_closest",
    "object_rel_distance_farthest",
    "route_planning",
)
REVSI_NUMERICAL_TYPES: tuple[str, ...] = (
    "object_counting_single",
    "object_counting_multiple",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation_single",
    "room_size_estimation_multiple",
)
# lmms-eval revsi COMPOSITE_METRICS: a task is the mean of its sub-types' scores.
REVSI_COMPOSITES: dict[str, tuple[str, ...]] = {
    "object_rel_direction": REVSI_MC_TYPES[:4],
    "object_rel_distance": REVSI_MC_TYPES[4:6],
    "object_counting": REVSI_NUMERICAL_TYPES[:2],
    "room_size_estimation": REVSI_NUMERICAL_TYPES[4:6],
}
# The seven ReVSI tasks in lmms-eval's metric order (REVSI_METRICS without overall).
REVSI_TASKS: tuple[str, ...] = (
    "object_abs_distance",
    "object_counting",
    "object_rel_direction",
    "object_rel_distance",
    "object_size_estimation",
    "room_size_estimation",
    "route_planning",
)

BENCHMARKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vsibench": (VSI_MC_TYPES, VSI_NUMERICAL_TYPES),
    "vsibench_debiased": (VSI_MC_TYPES, VSI_NUMERICAL_TYPES),
    "vstibench": (VSTI_MC_TYPES, VSTI_NUMERICAL_TYPES),
    "revsi": (REVSI_MC_TYPES, REVSI_NUMERICAL_TYPES),
}

# The official code evaluates `np.linspace(start, end, int((end - start) / interval + 2))`;
# the float division gives 10.999..., so there are 10 thresholds, 0.50 ... 0.95.
_MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {sorted(BENCHMARKS)}")


def question_types(benchmark: str) -> tuple[str, ...]:
    """All question types of ``benchmark`` ("vsibench" or "vstibench")."""
    _check_benchmark(benchmark)
    multiple_choice, numerical = BENCHMARKS[benchmark]
    return multiple_choice + numerical


def is_numerical(question_type: str, benchmark: str = "vsibench") -> bool:
    """Whether ``question_type`` is scored by MRA (True) or exact match (False)."""
    multiple_choice, numerical = BENCHMARKS[benchmark]
    if question_type in numerical:
        return True
    if question_type in multiple_choice:
        return False
    raise ValueError(
        f"unknown question type {question_type!r} for {benchmark}; "
        f"expected one of {multiple_choice + numerical}"
    )


def official_answer_token(prediction: str) -> str:
    """The official ``fuzzy_matching``: first space-separated word, trailing dots stripped.

    Only the space character splits (a newline does not), exactly as the official code.
    """
    return prediction.split(" ")[0].rstrip(".").strip()


def revsi_answer_token(prediction: str) -> str:
    """ReVSI's parse: ``str(pred).strip().split(" ")[0].rstrip(".").strip()`` (stripped first, so a
    leading space or newline does not empty the token, unlike VSI-Bench's)."""
    return str(prediction).strip().split(" ")[0].rstrip(".").strip()


def official_float(text: Any) -> float | None:
    """The official ``to_float``: ``float(text)``, or None when that fails."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def exact_match(prediction: str, target: str) -> float:
    """1.0 when the strings are equal ignoring case, else 0.0."""
    return 1.0 if prediction.lower() == target.lower() else 0.0


def mean_relative_accuracy(prediction: float | None, target: float) -> float:
    """Mean over θ ∈ {0.50, 0.55, …, 0.95} of ``1[|prediction − target| / target ≤ 1 − θ]``.

    An unparsable prediction (None) scores 0, as the official code's ``TypeError`` fallback.
    A zero target has no relative error; the official code crashes on it, we raise ValueError.
    """
    if prediction is None:
        return 0.0
    if target == 0:
        raise ValueError("mean_relative_accuracy: target is 0; relative error is undefined")
    relative_error = abs(prediction - target) / target
    return float((relative_error <= 1 - _MRA_THRESHOLDS).mean())


def _gold(record: Mapping[str, Any], benchmark: str, numerical: bool) -> str:
    # VSTI-Bench keeps the multiple-choice letter in `mc_answer`; `ground_truth` holds the value.
    if benchmark == "vstibench" and not numerical and record.get("mc_answer") not in (None, ""):
        return str(record["mc_answer"])
    return str(record["ground_truth"])


def score_prediction(
    record: Mapping[str, Any], benchmark: str = "vsibench", mode: ScoringMode = "official"
) -> float:
    """Score one record (keys ``question_type``, ``ground_truth``, ``prediction``; lenient mode also
    reads ``options`` and ``question``) in [0, 1]."""
    if mode not in ("official", "lenient"):
        raise ValueError(f"unknown scoring mode {mode!r}; expected 'official' or 'lenient'")
    _check_benchmark(benchmark)
    for key in ("question_type", "ground_truth", "prediction"):
        if key not in record:
            raise ValueError(f"record is missing {key!r}; got keys {sorted(record)}")
    numerical = is_numerical(record["question_type"], benchmark)
    gold = _gold(record, benchmark, numerical)
    prediction = str(record["prediction"])
    if numerical:
        target = official_float(gold)
        if target is None:
            raise ValueError(f"numerical ground_truth {gold!r} is not a number")
        if benchmark == "revsi" and mode == "official":
            # ReVSI catches every failure (a zero target too) as 0.
            value = official_float(revsi_answer_token(prediction))
            return 0.0 if value is None or target == 0 else mean_relative_accuracy(value, target)
        if mode == "official":
            return mean_relative_accuracy(official_float(official_answer_token(prediction)), target)
        return mean_relative_accuracy(
            lenient_number(prediction, question=record.get("question")), target
        )
    if mode == "official":
        token = revsi_answer_token(prediction) if benchmark == "revsi" else official_answer_token(prediction)
        return exact_match(token, gold)
    letter = lenient_choice(prediction, record.get("options") or [])
    return 0.0 if letter is None else exact_match(letter, gold)


@dataclass
class BenchmarkScores:
    """Scores of one benchmark in one mode, in percent.

    Attributes:
        benchmark: "vsibench", "vsibench_debiased", "vstibench", "revsi" or an image benchmark.
        mode: "official" or "lenient".
        tasks: task name → score. VSI-Bench: the 8 tasks (rel_direction combined); ReVSI: the 7
            tasks (composites combined); VSTI-Bench: every sub-type present.
        overall: the official overall (for the video benchmarks the macro average: mean of ``tasks``).
        counts: question type → number of records scored.
        subtasks: parts of a combined task (VSI-Bench rel_direction easy/medium/hard; ReVSI's
            sub-types).
        categories: VSTI-Bench only, the VLM-3R paper's five categories and their ``average``.
        micro: the mean over all questions (every question weighs the same).
        macro: the mean of the task scores (every task weighs the same).
        task_counts: task name → number of questions (a combined task counts all its sub-types).
    """

    benchmark: str
    mode: str
    tasks: dict[str, float]
    overall: float
    counts: dict[str, int]
    subtasks: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    micro: float = 0.0
    macro: float = 0.0
    task_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(sum(values) / len(values))


def score_benchmark(
    records: Sequence[Mapping[str, Any]],
    benchmark: str = "vsibench",
    mode: ScoringMode = "official",
) -> BenchmarkScores:
    """Score and aggregate ``records`` as the official task code does (see the module docstring).

    A record may carry a precomputed ``score`` for this mode under ``f"score_{mode}"``; otherwise it
    is scored from its ``prediction``.
    """
    if not records:
        raise ValueError("score_benchmark: no records to score")
    _check_benchmark(benchmark)
    per_type: dict[str, list[float]] = {}
    for record in records:
        precomputed = record.get(f"score_{mode}")
        value = precomputed if precomputed is not None else score_prediction(record, benchmark, mode)
        per_type.setdefault(record["question_type"], []).append(float(value))
    type_scores = {name: 100.0 * _mean(values) for name, values in per_type.items()}
    counts = {name: len(values) for name, values in per_type.items()}
    micro = 100.0 * _mean(value for values in per_type.values() for value in values)

    def result(tasks, subtasks, composites, categories=None) -> BenchmarkScores:
        task_counts = {
            name: sum(counts.get(part, 0) for part in composites.get(name, (name,))) for name in tasks
        }
        macro = _mean(tasks.values())
        return BenchmarkScores(
            benchmark, mode, tasks, macro, counts, subtasks, categories or {}, micro, macro, task_counts
        )

    if benchmark == "vstibench":
        tasks = {name: type_scores[name] for name in question_types(benchmark) if name in type_scores}
        categories = {
            name: _mean(tasks[part] for part in parts if part in tasks)
            for name, parts in VSTI_CATEGORIES.items()
            if any(part in tasks for part in parts)
        }
        if categories:
            categories["average"] = _mean(categories.values())
        return result(tasks, {}, {}, categories)

    if benchmark == "revsi":
        # lmms-eval _collapse_question_types: a composite is the mean of the sub-types present.
        subtasks = {
            part: type_scores[part] for parts in REVSI_COMPOSITES.values() for part in parts if part in type_scores
        }
        tasks = {}
        for name in REVSI_TASKS:
            parts = [part for part in REVSI_COMPOSITES.get(name, (name,)) if part in type_scores]
            if parts:
                tasks[name] = _mean(type_scores[part] for part in parts)
        return result(tasks, subtasks, REVSI_COMPOSITES)

    subtasks = {name: type_scores[name] for name in _REL_DIRECTION_SUBTYPES if name in type_scores}
    tasks = {}
    for name in VSI_TASKS:
        if name == "object_rel_direction":
            if subtasks:
                # Official: (easy + medium + hard) / 3. With a sub-type missing the official code
                # either crashes (lmms-eval) or counts it as 0 (first thinking-in-space release);
                # we average the sub-types present.
                tasks[name] = _mean(subtasks.values())
        elif name in type_scores:
            tasks[name] = type_scores[name]
    return result(tasks, subtasks, {"object_rel_direction": _REL_DIRECTION_SUBTYPES})


def score_vsibench(
    records: Sequence[Mapping[str, Any]], mode: ScoringMode = "official"
) -> dict[str, float]:
    """VSI-Bench scores in percent: the 8 task scores and ``overall``.

    Each record needs ``question_type``, ``ground_truth`` and ``prediction`` (raw answer text).
    """
    scores = score_benchmark(records, "vsibench", mode)
    return {**scores.tasks, "overall": scores.overall}


def score_vstibench(
    records: Sequence[Mapping[str, Any]], mode: ScoringMode = "official"
) -> dict[str, float]:
    """VSTI-Bench scores in percent: every sub-type score and ``overall`` (their mean)."""
    scores = score_benchmark(records, "vstibench", mode)
    return {**scores.tasks, "overall": scores.overall}
