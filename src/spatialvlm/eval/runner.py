"""Model-agnostic benchmark runner with resume, and the registry of the benchmarks it runs.

Every benchmark — VSI-Bench and VSTI-Bench (video), our synthetic image suite, ChartQA and DocVQA
(images) — is a :class:`BenchmarkSpec` in :data:`BENCHMARK_REGISTRY`: how a local copy is read, how
the prompt is built and how answers are scored and aggregated. The runner asks a *predictor* —
any callable ``(item, prompt) -> answer text`` — one question at a time, appends each answer to
``predictions.jsonl`` as soon as it has it, and at the end writes
``scores.json``, ``scores.md`` and ``scores.png``, the reproducibility bundle ``bundle.json`` and
the predictions again in lmms-eval's samples format (:mod:`spatialvlm.eval.bundle`). Rerunning into
the same output directory skips every question already in ``predictions.jsonl`` (a half-written
last line from a killed run is dropped), so an interrupted evaluation resumes where it stopped — but
only when the run's fingerprint (benchmark, split, predictor, prompts, frames, decoding, version)
matches the one stored there; otherwise it stops before asking anything. This module never imports
a model class; ``spatialvlm eval`` builds the predictor.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spatialvlm.data.image_readers import ImageQAItem, read_chartqa, read_docvqa, read_image_suite
from spatialvlm.data.readers import BenchmarkItem, read_benchmark
from spatialvlm.data.synthetic_images.families import QUESTION_METRICS
from spatialvlm.eval.bundle import (
    check_resume,
    environment_record,
    read_bundle,
    run_fingerprint,
    write_bundle,
    write_lmms_eval_samples,
)
from spatialvlm.eval.image_metrics import score_image_benchmark, score_image_prediction
from spatialvlm.eval.image_prompts import ImagePromptConfig, build_image_prompt
from spatialvlm.eval.metrics import (
    BenchmarkScores,
    ScoringMode,
    is_numerical,
    question_types,
    score_benchmark,
    score_prediction,
)
from spatialvlm.eval.prompts import PromptConfig, build_prompt, default_prompt_config
from spatialvlm.eval.revsi import read_revsi, read_vsibench_debiased
from spatialvlm.eval.report import VIDEO_SCORES_NOTE, plot_task_scores, scores_markdown, write_scores_json

__all__ = [
    "Predictor",
    "PredictorAnswer",
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

@dataclass
class PredictorAnswer:
    """A predictor's answer with what the run should record beside it.

    Attributes:
        text: the raw answer text.
        details: JSON-able facts merged into the question's prediction row, e.g. ``video`` and
            ``frame_indices`` (gathered per video into the bundle), ``num_new_tokens``.
    """

    text: str
    details: dict[str, Any] = field(default_factory=dict)


Predictor = Callable[[Item, str], "str | PredictorAnswer"]
"""Answers one question: ``predictor(item, prompt) -> raw answer text`` (or a
:class:`PredictorAnswer`). ``item.video_path`` is the video (video benchmarks) or ``item.image_path``
the image (image benchmarks); ``prompt`` is the official text prompt (pre-prompt, question, options,
post-prompt). A predictor may also have ``check_inputs(items)``, called on every question still to
answer before the first one is asked (so a missing file stops the run at once, not hours in)."""


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
    # Every row: rows of other benchmarks' types are skipped and reported by evaluate_directory.
    return read_benchmark(data_dir, split)


def _video_prompt(name: str, item: BenchmarkItem, config: PromptConfig | None) -> str:
    return build_prompt(item, "vsibench" if name == "vsibench_debiased" else name, config)


def _video_score(name: str, record: Mapping[str, Any], mode: ScoringMode) -> float:
    return score_prediction(record, name, mode)


def _video_aggregate(name: str, records: Sequence[Mapping[str, Any]], mode: ScoringMode) -> BenchmarkScores:
    return score_benchmark(records, name, mode)


_VIDEO_READERS: dict[str, Callable[[Path, str], list[BenchmarkItem]]] = {
    "vsibench": partial(_read_video_benchmark, "vsibench"),
    "vsibench_debiased": read_vsibench_debiased,
    "vstibench": partial(_read_video_benchmark, "vstibench"),
    "revsi": read_revsi,
}
_VIDEO_NOTES = {
    "vsibench_debiased": " VSI-Bench-Debiased = the VSI-Bench rows not pruned by Iterative Bias Pruning, scored as VSI-Bench.",
    "revsi": " ReVSI: first word after stripping the answer; composites = mean of their sub-types.",
}
for _name, _read in _VIDEO_READERS.items():
    register_benchmark(BenchmarkSpec(
        name=_name,
        modality="video",
        read=_read,
        build_prompt=partial(_video_prompt, _name),
        score=partial(_video_score, _name),
        aggregate=partial(_video_aggregate, _name),
        question_types=question_types(_name),
        note=VIDEO_SCORES_NOTE + _VIDEO_NOTES.get(_name, ""),
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
        bundle_path: the reproducibility bundle (``bundle.json``).
        samples_path: the predictions in lmms-eval's samples format.
        skipped: question type → rows of the data the benchmark does not score (other benchmarks'
            types, e.g. VSTI-Bench rows in a mixed synthetic set), reported, never scored.
        references: reference levels per task — ``chance`` (a uniformly random option) and
            ``frequency`` (the most frequent answer of the evaluated questions themselves, VSI-Bench's
            "Chance Level (Frequency)"); video benchmarks only.
    """

    official: BenchmarkScores
    lenient: BenchmarkScores
    predictions_path: Path
    scores_json_path: Path
    scores_markdown_path: Path
    chart_path: Path
    num_predicted: int
    num_resumed: int
    bundle_path: Path | None = None
    samples_path: Path | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    references: dict[str, dict[str, float]] = field(default_factory=dict)


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


def _prediction_record(item: Item, prompt: str, answer: str | PredictorAnswer, spec: BenchmarkSpec) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if isinstance(answer, PredictorAnswer):
        answer, details = answer.text, dict(answer.details)
    record = {**item.to_record(), "prompt": prompt, "prediction": str(answer)}
    record["score_official"] = spec.score(record, "official")
    record["score_lenient"] = spec.score(record, "lenient")
    record.update(details)
    return record


def _config_dict(config: Any) -> dict[str, Any] | None:
    return asdict(config) if is_dataclass(config) else None


def _default_fingerprint(benchmark: str, predictor: Predictor, prompt_config: Any) -> dict[str, Any]:
    kind = type(predictor)
    name = getattr(predictor, "__qualname__", None) or f"{kind.__module__}.{kind.__qualname__}"
    module = getattr(predictor, "__module__", kind.__module__)
    return run_fingerprint(benchmark, None, {"kind": "callable", "name": f"{module}:{name}"}, _config_dict(prompt_config))


def reference_scores(items: Sequence[BenchmarkItem], benchmark: str) -> dict[str, dict[str, float]]:
    """Per-task reference levels of video ``items`` (percent): ``chance`` — the expected score of a
    uniformly random option (multiple-choice tasks only) — and ``frequency`` — the most-frequent
    baseline fitted on ``items`` themselves (VSI-Bench's "Chance Level (Frequency)")."""
    from spatialvlm.eval.baselines import MostFrequentBaseline

    spec = get_benchmark(benchmark)
    frequent = MostFrequentBaseline(items)
    frequency_records, chance_records = [], []
    for item in items:
        record = item.to_record()
        frequency_records.append({**record, "prediction": frequent(item, "")})
        if item.options and not is_numerical(item.question_type, benchmark):
            chance_records.append({**record, "score_official": 1.0 / len(item.options)})
    references = {"frequency": spec.aggregate(frequency_records, "official").tasks}
    if chance_records:
        references["chance"] = spec.aggregate(chance_records, "official").tasks
    return references


def evaluate(
    items: Sequence[Item],
    predictor: Predictor,
    output_dir: str | Path,
    benchmark: str = "vsibench",
    prompt_config: PromptConfig | ImagePromptConfig | None = None,
    resume: bool = True,
    show_progress: bool = True,
    title: str = "",
    fingerprint: Mapping[str, Any] | None = None,
    run_details: Mapping[str, Any] | None = None,
    skipped: Mapping[str, int] | None = None,
) -> EvalResult:
    """Ask ``predictor`` every question of ``items`` not answered yet, then score and report.

    Args:
        items: benchmark questions (``BenchmarkSpec.read``, e.g.
            :func:`spatialvlm.data.readers.read_benchmark`, :func:`spatialvlm.data.image_readers.read_chartqa`).
        predictor: ``(item, prompt) -> answer``; exceptions propagate after the answers so far are
            saved, so a rerun resumes. Its ``check_inputs(items)``, when it has one, runs first.
        output_dir: where ``predictions.jsonl``, ``scores.{json,md,png}``, ``bundle.json`` and
            ``samples_<benchmark>.jsonl`` go (created).
        benchmark: a :data:`BENCHMARK_REGISTRY` name ("vsibench", "vsibench_debiased", "vstibench",
            "revsi", "shirgx-images", "chartqa", "docvqa"); selects scoring and prompt rules.
        prompt_config: prompt pieces (``PromptConfig`` for video, ``ImagePromptConfig`` for
            images); the benchmark's official ones by default.
        resume: reuse answers in an existing ``predictions.jsonl`` (only when its run's fingerprint
            equals this one's; else ValueError); False starts it afresh.
        show_progress: draw a tqdm bar.
        title: heading of the score table and chart.
        fingerprint: what decides the answers (:func:`spatialvlm.eval.bundle.run_fingerprint`);
            default: the benchmark, the predictor's import path and the prompt pieces.
        run_details: more facts for the bundle (``model`` record, ``decoding``, ``seed``, ...).
        skipped: rows of the data left out (question type → count), reported in the outputs.
    """
    spec = get_benchmark(benchmark)
    if not items:
        raise ValueError("evaluate: no benchmark items (is the split empty or filtered out?)")
    if spec.question_types is not None:
        unknown = sorted({item.question_type for item in items} - set(spec.question_types))
        if unknown:
            raise ValueError(f"items have question types {unknown} that {benchmark} does not score")
    if prompt_config is None and spec.modality == "video":
        prompt_config = default_prompt_config("vsibench" if benchmark == "vsibench_debiased" else benchmark)
    fingerprint = dict(fingerprint) if fingerprint is not None else _default_fingerprint(benchmark, predictor, prompt_config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions_path = output_dir / PREDICTIONS_FILE
    if not resume and predictions_path.exists():
        predictions_path.unlink()
    done = load_predictions(predictions_path)
    check_resume(output_dir, fingerprint, has_predictions=bool(done))
    wanted_ids = {item.id for item in items}
    done = {key: value for key, value in done.items() if key in wanted_ids}
    todo = [item for item in items if item.id not in done]
    if todo and hasattr(predictor, "check_inputs"):
        predictor.check_inputs(todo)

    previous = read_bundle(output_dir) if done else None
    bundle: dict[str, Any] = {
        "fingerprint": fingerprint,
        **dict(run_details or {}),
        "environment": environment_record(seed=(run_details or {}).get("seed")),
        "prompt_templates": _config_dict(prompt_config),
        "status": "running",
    }
    if previous and previous.get("environment"):
        # A resumed run keeps the environment of every session that answered part of it.
        bundle["earlier_sessions"] = previous.get("earlier_sessions", []) + [previous["environment"]]
    write_bundle(output_dir, bundle)

    num_resumed = len(items) - len(todo)
    with predictions_path.open("a") as handle:
        progress = tqdm(todo, desc=f"eval {benchmark}", unit="q", disable=not show_progress, initial=0)
        for item in progress:
            prompt = spec.build_prompt(item, prompt_config)
            record = _prediction_record(item, prompt, predictor(item, prompt), spec)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            done[item.id] = record

    records = [done[item.id] for item in items]
    official = spec.aggregate(records, "official")
    lenient = spec.aggregate(records, "lenient")
    skipped = dict(skipped or {})
    references = reference_scores(items, benchmark) if spec.modality == "video" else {}
    extra: dict[str, Any] = {"num_questions": len(records), "skipped": skipped, "references": references}
    if benchmark == "vsibench" and any("pruned" in record for record in records):
        # VSI-Bench's test.jsonl marks the rows Iterative Bias Pruning removed; report the rest too.
        kept = [record for record in records if not record.get("pruned")]
        if kept:
            extra["debiased_subset"] = {"num_questions": len(kept), **spec.aggregate(kept, "official").to_dict()}
    scores_json_path = output_dir / "scores.json"
    scores_markdown_path = output_dir / "scores.md"
    chart_path = output_dir / "scores.png"
    write_scores_json(scores_json_path, official, lenient, **extra)
    note = spec.note
    if skipped:
        note += f" Skipped {sum(skipped.values())} rows of question types {benchmark} does not score: {skipped}."
    if "debiased_subset" in extra:
        subset = extra["debiased_subset"]
        note += f" VSI-Bench-Debiased subset (rows with pruned = false): overall {subset['overall']:.1f} on {subset['num_questions']} questions."
    scores_markdown_path.write_text(scores_markdown(official, lenient, title, note=note))
    plot_task_scores(chart_path, official, lenient, title, references=references)

    frame_indices = dict((previous or {}).get("frame_indices", {}))
    for record in records:
        if "frame_indices" in record and "video" in record:
            frame_indices[str(record["video"])] = record["frame_indices"]
    numerical = (lambda record: is_numerical(record["question_type"], benchmark)) if spec.modality == "video" else None
    samples_path = write_lmms_eval_samples(output_dir, benchmark, records, numerical)
    bundle.update({
        "status": "finished",
        "frame_indices": frame_indices,
        "num_questions": len(records),
        "num_predicted_this_session": len(todo),
        "overall": {"official": official.overall, "micro": official.micro, "macro": official.macro},
        "files": {"predictions": PREDICTIONS_FILE, "samples": samples_path.name, "scores": scores_json_path.name},
    })
    bundle_path = write_bundle(output_dir, bundle)
    return EvalResult(
        official, lenient, predictions_path, scores_json_path, scores_markdown_path, chart_path,
        num_predicted=len(todo), num_resumed=num_resumed, bundle_path=bundle_path, samples_path=samples_path,
        skipped=skipped, references=references,
    )


def split_scored_items(items: Sequence[Item], benchmark: str, source: str = "") -> tuple[list[Item], dict[str, int]]:
    """Keep the items ``benchmark`` scores. Rows of another registered benchmark's question types are
    set aside and counted (a mixed synthetic set holds VSI-Bench and VSTI-Bench rows); a type no
    benchmark knows is refused with a one-line error naming it."""
    spec = get_benchmark(benchmark)
    if spec.question_types is None:
        return list(items), {}
    wanted = set(spec.question_types)
    known = {name for other in BENCHMARK_REGISTRY.values() for name in (other.question_types or ())}
    unknown = Counter(item.question_type for item in items if item.question_type not in known)
    if unknown:
        raise ValueError(
            f"{source or 'the data'}: {sum(unknown.values())} of {len(items)} rows have question types no benchmark "
            f"scores ({dict(unknown)}); {benchmark} scores {sorted(wanted)}; fix or remove those rows"
        )
    skipped = Counter(item.question_type for item in items if item.question_type not in wanted)
    return [item for item in items if item.question_type in wanted], dict(skipped)


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
    questions (file order, N >= 1), for quick runs. Rows of other benchmarks' question types are
    skipped and reported (``EvalResult.skipped``); unknown types are refused.
    """
    spec = get_benchmark(benchmark)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1 (the number of questions to keep), got {limit}")
    split = split or spec.default_split
    items, skipped = split_scored_items(spec.read(Path(data_dir), split), benchmark, f"{data_dir} ({split})")
    if limit is not None:
        items = items[:limit]
    if "fingerprint" not in kwargs:
        prompt_config = kwargs.get("prompt_config")
        if prompt_config is None and spec.modality == "video":
            prompt_config = default_prompt_config("vsibench" if benchmark == "vsibench_debiased" else benchmark)
        kwargs["fingerprint"] = {**_default_fingerprint(benchmark, predictor, prompt_config), "split": split}
    return evaluate(items, predictor, output_dir, benchmark, skipped=skipped, **kwargs)
