"""The reproducibility bundle of an evaluation run, the resume fingerprint, and run comparison.

Every run writes ``bundle.json`` into its output directory:

- ``fingerprint``: what decides the answers — benchmark, split, predictor (model directory content
  hash, baseline name and its settings, or the predictor's import path), prompt templates, frame
  sampling, decoding settings, package version. A rerun into the same directory resumes only when
  its fingerprint is identical (:func:`check_resume`); otherwise it stops with a one-line error.
- ``model``: the model directory, its content hash and file list with sizes, and the converter
  record (``conversion.json`` beside the weights, or ``config.json`` keys naming a converter).
- ``frame_indices``: video → the frame indices the model saw.
- ``environment``: package versions (python, torch, transformers, peft, numpy, av, spatialvlm),
  the git revision of the source tree (with a dirty flag), the seed, the command line.

Predictions are also written in lmms-eval's samples format (``samples_<benchmark>.jsonl``, one
line per question as lmms-eval 0.7's ``EvaluationTracker.save_results_samples`` writes them), so
lmms-eval tooling reads our runs. :func:`compare_runs` diffs two run directories per task and per
question (``spatialvlm eval --compare RUN_A RUN_B``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BUNDLE_FILE",
    "directory_content_hash",
    "model_record",
    "environment_record",
    "run_fingerprint",
    "check_resume",
    "write_bundle",
    "read_bundle",
    "lmms_eval_samples",
    "write_lmms_eval_samples",
    "compare_runs",
]

BUNDLE_FILE = "bundle.json"
_TRAINING_MANIFEST = "spatialvlm_training.json"  # spatialvlm.train.checkpoint.MANIFEST_NAME
_PACKAGES = ("spatialvlm", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "av", "lmms_eval")


def directory_content_hash(directory: str | Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted path order.

    Two directories hash alike exactly when they hold the same files with the same contents
    (timestamps and the directory's own location do not count).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def model_record(directory: str | Path) -> dict[str, Any]:
    """The model directory, its content hash, its files with sizes and its converter record."""
    directory = Path(directory)
    converter: dict[str, Any] = {}
    conversion = directory / "conversion.json"
    if conversion.is_file():
        converter = json.loads(conversion.read_text())
    config_path = directory / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path} is not valid JSON: {error}") from error
        converter.update({key: value for key, value in config.items() if "convert" in key.lower()})
    record = {
        "path": str(directory.resolve()),
        "content_sha256": directory_content_hash(directory),
        "files": {p.relative_to(directory).as_posix(): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()},
        "converter": converter or None,
    }
    manifest = directory / _TRAINING_MANIFEST
    if manifest.is_file():
        # A `spatialvlm train` output holds adapters and trained parts only; the weights it builds on
        # live in the base directory it names, so that directory's bytes decide the answers too.
        base = Path(json.loads(manifest.read_text()).get("base_model", ""))
        record["base_model"] = {
            "path": str(base),
            "content_sha256": directory_content_hash(base) if base.is_dir() else None,
        }
    return record


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> dict[str, Any] | None:
    source = Path(__file__).resolve().parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=source, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # an installed wheel has no git tree
    return {"revision": revision, "dirty": bool(status.strip())}


def environment_record(seed: int | None = None) -> dict[str, Any]:
    """Package versions, python and platform, git revision of the source tree, seed, command line."""
    return {
        "packages": {name: _package_version(name) for name in _PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": _git_revision(),
        "seed": seed,
        "argv": list(sys.argv),
    }


def run_fingerprint(
    benchmark: str,
    split: str | None,
    predictor: Mapping[str, Any],
    prompts: Mapping[str, Any] | None,
    frames: Mapping[str, Any] | None = None,
    decoding: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What decides a run's answers; two runs may share a predictions file only when these match.

    Args:
        predictor: e.g. ``{"kind": "model", "content_sha256": ...}``, ``{"kind": "baseline",
            "name": "chance", "seed": 0, "train_data": ...}``, ``{"kind": "predictor", "name": "pkg:fn"}``.
        prompts: the prompt pieces (``dataclasses.asdict(PromptConfig)``).
        frames: the frame sampling policy (``FrameSampling.to_dict()``); None for image benchmarks
            and model-free predictors.
        decoding: e.g. ``{"max_new_tokens": 16, "do_sample": False}``.
    """
    return {
        "benchmark": benchmark,
        "split": split,
        "predictor": dict(predictor),
        "prompts": dict(prompts) if prompts is not None else None,
        "frames": dict(frames) if frames is not None else None,
        "decoding": dict(decoding) if decoding is not None else None,
        "spatialvlm": _package_version("spatialvlm"),
    }


# The order settings are named in a mismatch message: what a user most likely changed first.
_FINGERPRINT_ORDER = ("benchmark", "split", "predictor", "kind", "name", "frames", "decoding", "prompts", "spatialvlm")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "…"


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"path old → new"`` for every leaf that differs (a missing mapping counts as empty)."""
    if isinstance(old, Mapping) or isinstance(new, Mapping):
        old_map = old if isinstance(old, Mapping) else {}
        new_map = new if isinstance(new, Mapping) else {}
        if old_map or new_map or old == new:
            rank = {name: index for index, name in enumerate(_FINGERPRINT_ORDER)}
            found = []
            for key in sorted(set(old_map) | set(new_map), key=lambda k: (rank.get(k, len(rank)), str(k))):
                found += _differences(old_map.get(key), new_map.get(key), f"{prefix}{key}.")
            return found
    return [] if old == new else [f"{prefix.rstrip('.')} {_short(old)} → {_short(new)}"]


def read_bundle(output_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``bundle.json``, or None when it has none."""
    path = Path(output_dir) / BUNDLE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); pass --no-resume to start afresh") from error


def check_resume(output_dir: str | Path, fingerprint: Mapping[str, Any], has_predictions: bool) -> None:
    """Refuse to resume into ``output_dir`` when its predictions came from a different run."""
    if not has_predictions:
        return
    output_dir = Path(output_dir)
    hint = f"pass --no-resume to start afresh in {output_dir}, or choose another --out"
    bundle = read_bundle(output_dir)
    if bundle is None or "fingerprint" not in bundle:
        raise ValueError(
            f"{output_dir} holds predictions with no {BUNDLE_FILE} saying what produced them; {hint}"
        )
    changes = _differences(bundle["fingerprint"], dict(fingerprint))
    if changes:
        shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise ValueError(f"{output_dir} holds predictions of a different run ({shown}); {hint}")


def write_bundle(output_dir: str | Path, bundle: Mapping[str, Any]) -> Path:
    """Write ``bundle.json`` (atomically: a killed run never leaves half a file)."""
    path = Path(output_dir) / BUNDLE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(bundle, indent=2, ensure_ascii=False, default=str) + "\n")
    temporary.replace(path)
    return path


def _doc_hash(doc: Mapping[str, Any]) -> str:
    # lmms-eval: hash_string(json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False))
    return hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


# lmms-eval's metric names per task (process_results returns each metric mapped to the scored doc).
_LMMS_METRICS: dict[str, tuple[str, ...]] = {
    "vsibench": (
        "vsibench_overall", "obj_appearance_order_accuracy", "object_abs_distance_mra", "object_counting_mra",
        "object_rel_distance_accuracy", "object_size_estimation_mra", "room_size_estimation_mra",
        "route_planning_accuracy", "object_rel_direction_accuracy",
    ),
    "revsi": (
        "overall_acc", "object_abs_distance_acc", "object_counting_acc", "object_rel_direction_acc",
        "object_rel_distance_acc", "object_size_estimation_acc", "room_size_estimation_acc", "route_planning_acc",
    ),
}
_LMMS_METRICS["vsibench_debiased"] = _LMMS_METRICS["vsibench"]


def _scored_doc(benchmark: str, record: Mapping[str, Any], numerical: bool | None) -> dict[str, Any]:
    doc = _lmms_doc(record)
    doc["prediction"] = record["prediction"]
    score = record.get("score_official")
    if benchmark == "revsi":
        doc["acc"] = score
    elif benchmark in ("vsibench", "vsibench_debiased", "vstibench"):
        doc["MRA:.5:.95:.05" if numerical else "accuracy"] = score
    else:
        doc["score"] = score
    return doc


_RUN_KEYS = ("prompt", "prediction", "score_official", "score_lenient", "frame_indices", "video", "num_new_tokens")


def _lmms_doc(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in _RUN_KEYS}


def lmms_eval_samples(
    benchmark: str, records: Sequence[Mapping[str, Any]], is_numerical: Any = None
) -> list[dict[str, Any]]:
    """``records`` (prediction rows, benchmark order) as lmms-eval 0.7 sample lines.

    Each line: ``doc_id`` (position), ``target``, ``input`` (the prompt), ``filtered_resps`` (the
    answer), ``doc_hash``, and every task metric mapped to the scored doc (the prediction and its
    score under lmms-eval's key: ``accuracy`` / ``MRA:.5:.95:.05`` for VSI-Bench, ``acc`` for ReVSI).
    """
    metrics = _LMMS_METRICS.get(benchmark, (f"{benchmark}_score",))
    samples = []
    for doc_id, record in enumerate(records):
        numerical = is_numerical(record) if is_numerical is not None else None
        target = record.get("ground_truth", record.get("answers"))
        scored = _scored_doc(benchmark, record, numerical)
        sample = {
            "doc_id": doc_id,
            "target": str(target),
            "filtered_resps": record["prediction"],
            "token_counts": [None],
            "doc_hash": _doc_hash(_lmms_doc(record)),
            "input": record.get("prompt", ""),
        }
        sample.update({name: scored for name in metrics})
        samples.append(sample)
    return samples


def write_lmms_eval_samples(
    output_dir: str | Path, benchmark: str, records: Sequence[Mapping[str, Any]], is_numerical: Any = None
) -> Path:
    """Write ``samples_<benchmark>.jsonl`` (see :func:`lmms_eval_samples`)."""
    path = Path(output_dir) / f"samples_{benchmark}.jsonl"
    with path.open("w") as handle:
        for sample in lmms_eval_samples(benchmark, records, is_numerical):
            handle.write(json.dumps(sample, ensure_ascii=False, default=str) + "\n")
    return path


def _load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from spatialvlm.eval.runner import PREDICTIONS_FILE

    scores_path = run_dir / "scores.json"
    if not scores_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no scores.json; is it a finished `spatialvlm eval` --out directory?")
    predictions: dict[str, dict[str, Any]] = {}
    path = run_dir / PREDICTIONS_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                predictions[str(record["id"])] = record
    return json.loads(scores_path.read_text()), predictions


def compare_runs(run_a: str | Path, run_b: str | Path, max_questions: int = 20) -> str:
    """A per-task and per-question diff of two run directories, as text.

    Per task: both official scores and B − A. Per question: the questions whose official score
    differs (A's and B's answers and scores), at most ``max_questions`` of them, then counts of
    questions only one run answered. Fingerprint differences come first.
    """
    run_a, run_b = Path(run_a), Path(run_b)
    scores_a, predictions_a = _load_run(run_a)
    scores_b, predictions_b = _load_run(run_b)
    lines = [f"A = {run_a}", f"B = {run_b}"]
    bundle_a, bundle_b = read_bundle(run_a), read_bundle(run_b)
    if bundle_a and bundle_b:
        changes = _differences(bundle_a.get("fingerprint", {}), bundle_b.get("fingerprint", {}))
        if changes:
            lines += ["", "settings that differ (A → B):"] + [f"  {change}" for change in changes]
        else:
            lines += ["", "settings: identical fingerprints"]
    official_a, official_b = scores_a["official"], scores_b["official"]
    lines += ["", f"{'task':<34}{'n A':>6}{'n B':>6}{'A':>8}{'B':>8}{'B − A':>8}"]
    tasks = list(official_a["tasks"]) + [name for name in official_b["tasks"] if name not in official_a["tasks"]]
    counts_a, counts_b = official_a.get("task_counts", {}), official_b.get("task_counts", {})

    def row(name: str, a: float | None, b: float | None, n_a: Any, n_b: Any) -> str:
        text = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        delta = "—" if a is None or b is None else f"{b - a:+.1f}"
        return f"{name:<34}{str(n_a):>6}{str(n_b):>6}{text(a):>8}{text(b):>8}{delta:>8}"

    for name in tasks:
        lines.append(row(name, official_a["tasks"].get(name), official_b["tasks"].get(name),
                         counts_a.get(name, "—"), counts_b.get(name, "—")))
    for key, label in (("overall", "overall (official)"), ("macro", "macro (mean of tasks)"), ("micro", "micro (mean of questions)")):
        if key in official_a and key in official_b:
            lines.append(row(label, official_a[key], official_b[key], scores_a.get("num_questions", "—"),
                             scores_b.get("num_questions", "—")))
    shared = [key for key in predictions_a if key in predictions_b]
    changed = [
        key for key in shared
        if predictions_a[key].get("score_official") != predictions_b[key].get("score_official")
        or predictions_a[key].get("prediction") != predictions_b[key].get("prediction")
    ]
    better = sum(1 for key in changed if (predictions_b[key].get("score_official") or 0) > (predictions_a[key].get("score_official") or 0))
    worse = sum(1 for key in changed if (predictions_b[key].get("score_official") or 0) < (predictions_a[key].get("score_official") or 0))
    lines += ["", f"questions: {len(shared)} in both, {len(changed)} with a different answer "
                  f"({better} scored higher in B, {worse} lower)"]
    for key in changed[:max_questions]:
        a, b = predictions_a[key], predictions_b[key]
        lines.append(
            f"  id {key} [{a.get('question_type', '?')}] gold {a.get('ground_truth', a.get('answers'))!r}: "
            f"A {a.get('prediction')!r} ({a.get('score_official', 0):.2f}) → B {b.get('prediction')!r} "
            f"({b.get('score_official', 0):.2f})"
        )
    if len(changed) > max_questions:
        lines.append(f"  … and {len(changed) - max_questions} more")
    only_a, only_b = len(set(predictions_a) - set(predictions_b)), len(set(predictions_b) - set(predictions_a))
    if only_a or only_b:
        lines.append(f"questions only in A: {only_a}; only in B: {only_b}")
    return "\n".join(lines) + "\n"
