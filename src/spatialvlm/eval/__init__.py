"""Metrics and benchmark runners: VSI-Bench (official scoring reproduced exactly, plus a named
lenient mode), VSTI-Bench camera tasks, image QA (our synthetic suite; ChartQA relaxed accuracy;
DocVQA ANLS), and a model-agnostic runner with resume over a registry of benchmarks.

``eval`` never imports a model class: a model enters as a predictor callable.
"""

from spatialvlm.eval.baselines import AnswerKey, CategoryPriorBaseline, ChanceBaseline, MostFrequentBaseline, gold_answer
from spatialvlm.eval.image_baselines import ImageAnswerKey, ImageChanceBaseline, ImageMostFrequentBaseline
from spatialvlm.eval.image_metrics import (
    IMAGE_METRICS,
    anls,
    exact_match_accuracy,
    lenient_answer,
    levenshtein_distance,
    relaxed_accuracy,
    relaxed_correctness,
    score_image_benchmark,
    score_image_prediction,
)
from spatialvlm.eval.image_prompts import ImagePromptConfig, build_image_prompt
from spatialvlm.eval.metrics import (
    BENCHMARKS,
    VSI_MC_TYPES,
    VSI_NUMERICAL_TYPES,
    VSI_TASKS,
    VSTI_CATEGORIES,
    VSTI_MC_TYPES,
    VSTI_NUMERICAL_TYPES,
    BenchmarkScores,
    exact_match,
    is_numerical,
    mean_relative_accuracy,
    official_answer_token,
    official_float,
    question_types,
    score_benchmark,
    score_prediction,
    score_vsibench,
    score_vstibench,
)
from spatialvlm.eval.parsing import lenient_choice, lenient_number, question_unit
from spatialvlm.eval.prompts import PromptConfig, build_prompt
from spatialvlm.eval.runner import (
    BENCHMARK_REGISTRY,
    BenchmarkSpec,
    EvalResult,
    Predictor,
    evaluate,
    evaluate_directory,
    get_benchmark,
    load_predictions,
    register_benchmark,
)

__all__ = [
    "AnswerKey",
    "BENCHMARKS",
    "BENCHMARK_REGISTRY",
    "BenchmarkScores",
    "BenchmarkSpec",
    "IMAGE_METRICS",
    "ImageAnswerKey",
    "ImageChanceBaseline",
    "ImageMostFrequentBaseline",
    "ImagePromptConfig",
    "anls",
    "build_image_prompt",
    "exact_match_accuracy",
    "get_benchmark",
    "lenient_answer",
    "levenshtein_distance",
    "register_benchmark",
    "relaxed_accuracy",
    "relaxed_correctness",
    "score_image_benchmark",
    "score_image_prediction",
    "CategoryPriorBaseline",
    "ChanceBaseline",
    "EvalResult",
    "MostFrequentBaseline",
    "Predictor",
    "PromptConfig",
    "VSI_MC_TYPES",
    "VSI_NUMERICAL_TYPES",
    "VSI_TASKS",
    "VSTI_CATEGORIES",
    "VSTI_MC_TYPES",
    "VSTI_NUMERICAL_TYPES",
    "build_prompt",
    "evaluate",
    "evaluate_directory",
    "exact_match",
    "gold_answer",
    "is_numerical",
    "lenient_choice",
    "lenient_number",
    "load_predictions",
    "mean_relative_accuracy",
    "official_answer_token",
    "official_float",
    "question_types",
    "question_unit",
    "score_benchmark",
    "score_prediction",
    "score_vsibench",
    "score_vstibench",
]
