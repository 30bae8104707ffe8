"""Model-agnostic benchmark runner with resume, and the registry of the benchmarks it runs.

Every benchmark — VSI-Bench and VSTI-Bench (video), our synthetic image suite, ChartQA and DocVQA
(images) — is a :class:`BenchmarkSpec` in :data:`BENCHMARK_REGISTRY`: how a local copy is read, how
the prompt is built and how answers are scored and aggregated. The runner asks a *predictor* —
any callable ``(item, prompt) -> answer text`` — one question at a time, appends each answer to
``predictions.jsonl`` as soon as it has it, and at the end writes
``scores.json``, ``scores.md`` and ``scores.png``. Rerunning into the same output directory skips
every question already in ``predictions.jsonl`` (a half-written last line from a killed run is
dropped), so an interrupted evaluation resumes where it stopped. This module never imports a model
class; ``spatialvlm eval`` builds the predictor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spatialvlm.data.image_readers import ImageQAItem, read_chartqa, read_docvqa, read_image_suite
from spatialvlm.data.readers import BenchmarkItem, read_benchmark
from spatialvlm.data.synthetic_images.families import QUESTION_METRICS
from spatialvlm.eval.image_metrics import score_image_benchmark, score_image_prediction
from spatialvlm.eval.image_prompts import ImagePromptConfig, build_image_prompt
from spatialvlm.eval.metrics import BenchmarkScores, ScoringMode, question_types, score_benchmark, score_prediction
from spatialvlm.eval.prompts import PromptConfig, build_prompt
from spatialvlm.eval.report import VIDEO_SCORES_NOTE, plot_task_scores, scores_markdown, write_scores_json

__all__ = [
    "Predictor",
    "BenchmarkSpec",
    "BENCHMARK_REGISTRY",
    "register_benchmark",
    "get_benchmark",
    "EvalResult",
    "evaluate",
    "evaluate_directory",
    "load_predictions",
]

Item = BenchmarkItem | ImageQAItem

Predictor = Callable[[Item, str], str]
"""Answers one question: ``predictor(item, prompt) -> raw answer text``. ``item.video_path`` is the
video (video benchmarks) or ``item.image_path`` the image (image benchmarks); ``prompt`` is the
official text prompt (pre-prompt, question, options, post-prompt)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """How one benchmark is read, prompted and scored; the runner is the same for all.

    Attributes:
        name: the ``--benchmark`` name.
        modality: "video" or "image" (what a predictor receives).
        read: ``(data_dir, split) -> items`` from a local copy.
        build_prompt: ``(item, prompt_config or None) -> prompt``; None means the official pieces.
        score: ``(record, mode) -> score in [0, 1]``; a record is ``item.to_record()`` plus
            ``prediction``.
        aggregate: ``(records, mode) -> BenchmarkScores``.
        default_split: the split read when none is named.
        question_types: the types the benchmark scores (items of others are refused); None: any.
        note: the footnote of the score table.
    """

    name: str
    modality: str
    read: Callable[[Path, str], list[Any]]
    build_prompt: Callable[[Any, Any], str]
    score: Callable[[Mapping[str, Any], ScoringMode], float]
    aggregate: Callable[[Sequence[Mapping[str, Any]], ScoringMode], BenchmarkScores]
    default_split: str = "test"
    question_types: tuple[str, ...] | None = None
    note: str = ""


BENCHMARK_REGISTRY: dict[str, BenchmarkSpec] = {}


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add (or replace) ``spec`` under ``spec.name``; ``evaluate`` and ``spatialvlm eval`` then run it."""
    BENCHMARK_REGISTRY[spec.name] = spec
    return spec


def get_benchmark(name: str) -> BenchmarkSpec:
    """The registered benchmark called ``name``."""
    if name not in BENCHMARK_REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARK_REGISTRY)}")
    return BENCHMARK_REGISTRY[name]


def _read_video_benchmark(name: str, data_dir: Path, split: str) -> list[BenchmarkItem]:
    return read_benchmark(data_dir, split, question_types(name))


def _video_prompt(name: str, item: BenchmarkItem, config: PromptConfig | None) -> str:
    return build_prompt(item, name, config)


def _video_score(name: str, record: Mapping[str, Any], mode: ScoringMode) -> float:
    return score_prediction(record, name, mode)


def _video_aggregate(name: str, records: Sequence[Mapping[str, Any]], mode: ScoringMode) -> BenchmarkScores:
    return score_benchmark(records, name, mode)


for _name in ("vsibench", "vstibench"):
    register_benchmark(BenchmarkSpec(
        name=_name,
        modality="video",
        read=partial(_read_video_benchmark, _name),
        build_prompt=partial(_video_prompt, _name),
        score=partial(_video_score, _name),
        aggregate=partial(_video_aggregate, _name),
        question_types=question_types(_name),
        note=VIDEO_SCORES_NOTE,
    ))

_IMAGE_LENIENT_NOTE = (
    " Lenient = the answer cut out of free text first (after \"answer is\", first line, punctuation "
    "stripped, first number for numeric answers); reported beside, never instead of, official."
)
register_benchmark(BenchmarkSpec(
    name="shirgx-images",
    modality="image",
    read=read_image_suite,
    build_prompt=build_image_prompt,
    score=score_image_prediction,
    aggregate=partial(score_image_benchmark, benchmark="shirgx-images", overall="tasks", task_order=tuple(QUESTION_METRICS)),
    question_types=tuple(QUESTION_METRICS),
    note="Official = each question's metric: exact match (strip, lower case), ChartQA relaxed accuracy "
    "(numbers within 5 %), DocVQA ANLS (threshold 0.5); overall = mean of the task scores." + _IMAGE_LENIENT_NOTE,
))
register_benchmark(BenchmarkSpec(
    name="chartqa",
    modality="image",
    read=read_chartqa,
    build_prompt=build_image_prompt,
    score=score_image_prediction,
    aggregate=partial(score_image_benchmark, benchmark="chartqa", overall="questions"),
    note="Official = ChartQA relaxed accuracy (numbers within 5 %, else exact ignoring case); overall = "
    "mean over all questions (lmms-eval relaxed_overall)." + _IMAGE_LENIENT_NOTE,
))
register_benchmark(BenchmarkSpec(
    name="docvqa",
    modality="image",
    read=read_docvqa,
    build_prompt=build_image_prompt,
    score=score_image_prediction,
    aggregate=partial(score_image_benchmark, benchmark="docvqa", overall="questions", category_key="question_types"),
    default_split="val",
    note="Official = DocVQA ANLS (threshold 0.5, best over the gold answers); overall = mean over all "
    "questions; categories = DocVQA question types." + _IMAGE_LENIENT_NOTE,
))

PREDICTIONS_FILE = "predictions.jsonl"


@dataclass
class EvalResult:
    """What an evaluation produced.

    Attributes:
        official: scores under the benchmark's official rules.
        lenient: scores with lenient answer parsing (reported beside, never instead of, official).
        predictions_path, scores_json_path, scores_markdown_path, chart_path: the files written.
        num_predicted: questions the predictor answered in this run.
        num_resumed: questions taken from an earlier run's predictions file.
    """

    official: BenchmarkScores
    lenient: BenchmarkScores
    predictions_path: Path
    scores_json_path: Path
    scores_markdown_path: Path
    chart_path: Path
    num_predicted: int
    num_resumed: int


def load_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Finished predictions by id. A half-written last line (a killed run) is cut from the file."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    records: dict[str, dict[str, Any]] = {}
    good_end = 0
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.endswith(b"\n"):
                raise ValueError(f"{path}: a complete line is not valid JSON: {line[:80]!r}") from None
            break
        if not line.endswith(b"\n"):
            break
        records[str(record["id"])] = record
        good_end += len(line)
    if good_end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return records


def _prediction_record(item: Item, prompt: str, answer: str, spec: BenchmarkSpec) -> dict[str, Any]:
    record = {**item.to_record(), "prompt": prompt, "prediction": answer}
    record["score_official"] = spec.score(record, "official")
    record["score_lenient"] = spec.score(record, "lenient")
    return record


def evaluate(
    items: Sequence[Item],
    predictor: Predictor,
    output_dir: str | Path,
    benchmark: str = "vsibench",
    prompt_config: PromptConfig | ImagePromptConfig | None = None,
    resume: bool = True,
    show_progress: bool = True,
    title: str = "",
) -> EvalResult:
    """Ask ``predictor`` every question of ``items`` not answered yet, then score and report.

    Args:
        items: benchmark questions (``BenchmarkSpec.read``, e.g.
            :func:`spatialvlm.data.readers.read_benchmark`, :func:`spatialvlm.data.image_readers.read_chartqa`).
        predictor: ``(item, prompt) -> answer``; exceptions propagate after the answers so far are
            saved, so a rerun resumes.
        output_dir: where ``predictions.jsonl``, ``scores.{json,md,png}`` go (created).
        benchmark: a :data:`BENCHMARK_REGISTRY` name ("vsibench", "vstibench", "shirgx-images",
            "chartqa", "docvqa"); selects scoring and prompt rules.
        prompt_config: prompt pieces (``PromptConfig`` for video, ``ImagePromptConfig`` for
            images); the official ones by default.
        resume: reuse answers in an existing ``predictions.jsonl``; False starts it afresh.
        show_progress: draw a tqdm bar.
        title: heading of the score table and chart.
    """
    spec = get_benchmark(benchmark)
    if not items:
        raise ValueError("evaluate: no benchmark items (is the split empty or filtered out?)")
    if spec.question_types is not None:
        unknown = sorted({item.question_type for item in items} - set(spec.question_types))
        if unknown:
            raise ValueError(f"items have question types {unknown} that {benchmark} does not score")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions_path = output_dir / PREDICTIONS_FILE
    if not resume and predictions_path.exists():
        predictions_path.unlink()
    done = load_predictions(predictions_path)
    wanted_ids = {item.id for item in items}
    done = {key: value for key, value in done.items() if key in wanted_ids}
    todo = [item for item in items if item.id not in done]

    num_resumed = len(items) - len(todo)
    with predictions_path.open("a") as handle:
        progress = tqdm(todo, desc=f"eval {benchmark}", unit="q", disable=not show_progress, initial=0)
        for item in progress:
            prompt = spec.build_prompt(item, prompt_config)
            record = _prediction_record(item, prompt, str(predictor(item, prompt)), spec)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            done[item.id] = record

    records = [done[item.id] for item in items]
    official = spec.aggregate(records, "official")
    lenient = spec.aggregate(records, "lenient")
    scores_json_path = output_dir / "scores.json"
    scores_markdown_path = output_dir / "scores.md"
    chart_path = output_dir / "scores.png"
    write_scores_json(scores_json_path, official, lenient, num_questions=len(records))
    scores_markdown_path.write_text(scores_markdown(official, lenient, title, note=spec.note))
    plot_task_scores(chart_path, official, lenient, title)
    return EvalResult(
        official, lenient, predictions_path, scores_json_path, scores_markdown_path, chart_path,
        num_predicted=len(todo), num_resumed=num_resumed,
    )


def evaluate_directory(
    data_dir: str | Path,
    predictor: Predictor,
    output_dir: str | Path,
    benchmark: str = "vsibench",
    split: str | None = None,
    limit: int | None = None,
    **kwargs: Any,
) -> EvalResult:
    """Read a local benchmark copy with ``benchmark``'s reader and :func:`evaluate` it.

    ``split`` defaults to the benchmark's (``test``; ``val`` for DocVQA). ``limit`` keeps the first N
    questions (file order), for quick runs.
    """
    spec = get_benchmark(benchmark)
    items = spec.read(Path(data_dir), split or spec.default_split)
    if limit is not None:
        items = items[:limit]
    return evaluate(items, predictor, output_dir, benchmark, **kwargs)
