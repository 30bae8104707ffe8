"""`spatialvlm eval` as a user runs it (a subprocess): resume refuses a different run, unknown question
types are refused and other benchmarks' rows reported, missing inputs stop the run before the first
answer, --limit < 1 is rejected, and scores.png carries chance / most-frequent reference lines."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialvlm.data.readers import write_jsonl

SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")
CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-tiny-synthetic"


def run_cli(*args, timeout=300):
    return subprocess.run([SPATIALVLM, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def error_lines(result):
    """The CLI's error lines (stderr also carries progress bars)."""
    return [line for line in result.stderr.splitlines() if line.startswith("spatialvlm eval: error")]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """2 synthetic scenes of 16 frames (VSI-Bench and VSTI-Bench rows in one test.jsonl, with geometry)."""
    root = tmp_path_factory.mktemp("bench")
    result = run_cli("synth", "--out", root, "--scenes", 2, "--frames", 16, "--size", 48, "--questions-per-type", 1)
    assert result.returncode == 0, result.stderr
    return root


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def model_run(bench, tmp_path_factory):
    """The tiny checkpoint on the first 4 questions with 8 frames per video."""
    out = tmp_path_factory.mktemp("model_run")
    result = run_cli("eval", "--data", bench, "--model", CHECKPOINT, "--out", out, "--limit", 4, "--frames", 8)
    assert result.returncode == 0, result.stderr
    return out


def test_resume_refuses_predictions_of_a_different_run(bench, model_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(model_run, out)  # 4 answers of the tiny checkpoint with --frames 8
    # The three cases: a baseline, another frame count, another benchmark into the same --out.
    for args, changed in (
        (("--baseline", "answer-key"), "predictor"),
        (("--model", CHECKPOINT), "frames"),  # the default, 32 frames
        (("--benchmark", "vstibench", "--baseline", "answer-key"), "benchmark"),
    ):
        result = run_cli("eval", "--data", bench, "--out", out, "--limit", 4, *args)
        assert result.returncode == 2, (args, result.stdout)
        [message] = error_lines(result)
        assert changed in message and "--no-resume" in message and "--out" in message
        assert "Loading weights" not in result.stderr  # refused before any model loads
    assert len(_rows(out / "predictions.jsonl")) == 4  # untouched

    # A fresh start is one flag away (and then scores the answer key at 100); the same settings resume.
    fresh = run_cli("eval", "--data", bench, "--out", out, "--limit", 4, "--baseline", "answer-key", "--no-resume")
    assert fresh.returncode == 0 and json.loads((out / "scores.json").read_text())["official"]["overall"] == 100.0
    again = run_cli("eval", "--data", bench, "--out", out, "--limit", 6, "--baseline", "answer-key")
    assert again.returncode == 0 and "2 answered now, 4 resumed" in again.stdout

    # Predictions from before fingerprints (no bundle.json) are refused too, not silently mixed.
    (out / "bundle.json").unlink()
    legacy = run_cli("eval", "--data", bench, "--out", out, "--limit", 3, "--baseline", "answer-key")
    assert legacy.returncode == 2 and "bundle.json" in legacy.stderr


def test_bundle_records_frames_model_hash_and_lmms_samples(bench, model_run, tmp_path):
    out = model_run
    bundle = json.loads((out / "bundle.json").read_text())
    video = str((bench / "synthetic" / "test_00000.mp4").resolve())
    # 16 frames, 8 uniform: linspace(0, 15, 8) floored, as lmms-eval's vsibench sampling.
    assert bundle["frame_indices"] == {video: [0, 2, 4, 6, 8, 10, 12, 15]}
    assert bundle["fingerprint"]["frames"]["policy"] == "8"
    assert bundle["fingerprint"]["decoding"]["max_new_tokens"] == 16
    assert bundle["environment"]["packages"]["torch"].startswith("2.13")
    assert bundle["environment"]["git"] is None or len(bundle["environment"]["git"]["revision"]) == 40
    # The content hash follows the bytes, not the location.
    copy = tmp_path / "copy"
    shutil.copytree(CHECKPOINT, copy)
    from spatialvlm.eval.bundle import directory_content_hash

    assert directory_content_hash(copy) == bundle["model"]["content_sha256"]
    with (copy / "config.json").open("a") as handle:
        handle.write(" ")
    assert directory_content_hash(copy) != bundle["model"]["content_sha256"]

    predictions = _rows(out / "predictions.jsonl")
    samples = _rows(out / "samples_vsibench.jsonl")
    assert [sample["doc_id"] for sample in samples] == [0, 1, 2, 3]
    for prediction, sample in zip(predictions, samples):
        assert sample["filtered_resps"] == prediction["prediction"] and sample["input"] == prediction["prompt"]
        assert sample["target"] == prediction["ground_truth"]
        scored = sample["vsibench_overall"]
        assert scored["MRA:.5:.95:.05"] == prediction["score_official"]  # the first four rows are numerical


def test_compare_prints_a_per_task_and_per_question_diff(bench, model_run, tmp_path):
    a, b = model_run, tmp_path / "b"
    assert run_cli("eval", "--data", bench, "--baseline", "answer-key", "--out", b, "--limit", 4).returncode == 0
    result = run_cli("eval", "--compare", a, b)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "predictor.kind 'model' → 'baseline'" in text
    model_scores = json.loads((a / "scores.json").read_text())["official"]["tasks"]
    for name, score in model_scores.items():
        assert f"{score:.1f}" in next(line for line in text.splitlines() if line.startswith(name))
    wrong = [row for row in _rows(a / "predictions.jsonl") if row["score_official"] < 1]
    assert f"{len(wrong)} with a different answer ({len(wrong)} scored higher in B, 0 lower)" in text
    for row in wrong:
        assert f"id {row['id']} [" in text


def test_unknown_question_types_are_refused_and_other_benchmarks_rows_reported(bench, tmp_path):
    rows = _rows(bench / "test.jsonl")
    vsi_rows = [row for row in rows if not row["question_type"].startswith(("camera", "obj_obj"))]
    data = tmp_path / "typo"
    data.mkdir()
    write_jsonl(data / "test.jsonl", vsi_rows[:4] + [{**vsi_rows[0], "id": 999, "question_type": "object_count"}])
    result = run_cli("eval", "--data", data, "--baseline", "answer-key", "--out", tmp_path / "o1")
    assert result.returncode == 2
    assert "object_count" in result.stderr and "1 of 5 rows" in result.stderr and "Traceback" not in result.stderr

    mixed = run_cli("eval", "--data", bench, "--baseline", "answer-key", "--out", tmp_path / "o2")
    assert mixed.returncode == 0
    vsti = sum(1 for row in rows if row["question_type"].startswith(("camera", "obj_obj")))
    assert f"skipped {vsti} rows" in mixed.stdout
    scores = json.loads((tmp_path / "o2" / "scores.json").read_text())
    assert sum(scores["skipped"].values()) == vsti and scores["num_questions"] == len(rows) - vsti


def test_missing_geometry_folder_stops_before_the_first_answer(bench, tmp_path):
    data = tmp_path / "bench"
    shutil.copytree(bench, data)
    shutil.rmtree(data / "synthetic" / "test_00001_geometry")
    out = tmp_path / "out"
    result = run_cli("eval", "--data", data, "--model", CHECKPOINT, "--out", out)
    assert result.returncode == 2
    [message] = error_lines(result)
    assert "Traceback" not in result.stderr and "Loading weights" not in result.stderr  # before the model loads
    assert "scene test_00001" in message and str(data / "synthetic" / "test_00001_geometry") in message
    assert not (out / "predictions.jsonl").exists() or not _rows(out / "predictions.jsonl")


def test_limit_below_one_is_rejected(bench, tmp_path):
    for limit in ("-3", "0"):
        result = run_cli("eval", "--data", bench, "--baseline", "answer-key", "--out", tmp_path / "o", "--limit", limit)
        assert result.returncode == 2 and "--limit" in result.stderr and ">= 1" in result.stderr
    assert not (tmp_path / "o").exists()


def test_scores_chart_has_chance_and_most_frequent_reference_lines(tmp_path):
    options = ["A. left", "B. right", "C. back", "D. front"]
    rows = [
        {"id": i, "dataset": "d", "scene_name": "s", "question_type": "route_planning", "question": "q",
         "ground_truth": gold, "options": options[:n]}
        for i, (gold, n) in enumerate([("A", 2), ("A", 4), ("B", 4), ("A", 4)])
    ] + [
        {"id": 10 + i, "dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "How many?",
         "ground_truth": gold, "options": None}
        for i, gold in enumerate(["2", "4", "9"])
    ]
    write_jsonl(tmp_path / "test.jsonl", rows)
    out = tmp_path / "out"
    assert run_cli("eval", "--data", tmp_path, "--baseline", "answer-key", "--out", out).returncode == 0
    references = json.loads((out / "scores.json").read_text())["references"]
    # chance: mean of 1/len(options) = (1/2 + 3 × 1/4) / 4; no chance level for numbers.
    assert references["chance"] == pytest.approx({"route_planning": 100 * (0.5 + 0.75) / 4})
    # frequency: "left" is the most frequent answer text (A of 3 rows) → 3 of 4 right; counting: median 4
    # → MRA(4 vs 2) = 0, (4 vs 4) = 1, (4 vs 9) = 0 (|4 − 9| / 9 = 0.56 > 0.5).
    assert references["frequency"] == pytest.approx({"object_counting": 100 / 3, "route_planning": 75.0})
    pixels = np.asarray(Image.open(out / "scores.png").convert("RGB")).reshape(-1, 3).astype(int)
    red = (np.abs(pixels - [214, 39, 40]).sum(1) < 30).sum()  # the most-frequent line's colour
    grey = (np.abs(pixels - [127, 127, 127]).sum(1) < 10).sum()  # the chance line's colour
    assert red > 50 and grey > 50


def test_a_training_output_is_fingerprinted_with_its_base_weights(tmp_path):
    from spatialvlm.eval.bundle import directory_content_hash, model_record

    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"base weights")
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "trained_parameters.safetensors").write_bytes(b"adapters")
    (trained / "spatialvlm_training.json").write_text(json.dumps({"task": "vlm2", "base_model": str(base)}))
    record = model_record(trained)
    assert record["base_model"] == {"path": str(base), "content_sha256": directory_content_hash(base)}
    (base / "model.safetensors").write_bytes(b"other weights")
    assert model_record(trained)["base_model"]["content_sha256"] != record["base_model"]["content_sha256"]
    assert model_record(trained)["content_sha256"] == record["content_sha256"]
