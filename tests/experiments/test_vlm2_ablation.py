"""The VLM² ablation runner: training records, the variant ladder, and a 2-step smoke run whose
saved checkpoint reproduces the recorded answers and whose tables match an independent re-scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval import score_benchmark
from spatialvlm.experiments import BASELINES, VARIANTS, AblationConfig, llava_records, run_ablation


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _item(question_type: str, ground_truth: str, options: list[str]) -> BenchmarkItem:
    return BenchmarkItem(
        id="7", dataset="synthetic", scene_name="train_00003", question_type=question_type,
        question="Q?", ground_truth=ground_truth, options=options, video_path=Path("/x/synthetic/train_00003.mp4"),
    )


def test_llava_records_ask_the_official_prompt_and_answer_the_gold():
    numerical = _item("object_counting", "4", [])
    choice = _item("object_rel_distance", "C", ["A. chair", "B. tv", "C. sofa", "D. bed"])
    with_geometry, without = llava_records([numerical, choice]), llava_records([numerical], geometry=False)
    # Hand-written official prompts (lmms-eval vsibench utils).
    assert with_geometry[0]["conversations"] == [
        {"from": "human", "value": "<video>\nThese are frames of a video.\nQ?\n"
                                   "Please answer the question using a single word or phrase."},
        {"from": "gpt", "value": "4"},
    ]
    assert with_geometry[1]["conversations"][0]["value"] == (
        "<video>\nThese are frames of a video.\nQ?\nOptions:\nA. chair\nB. tv\nC. sofa\nD. bed\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert with_geometry[1]["conversations"][1]["value"] == "C"
    assert with_geometry[0]["video"] == "synthetic/train_00003.mp4"
    assert with_geometry[0]["geometry"] == "synthetic/train_00003_geometry"
    assert "geometry" not in without[0]


def test_variants_form_the_ablation_ladder():
    names = [variant.name for variant in VARIANTS]
    assert names[:6] == ["blind", "vision", "+coords", "+coords-metric", "+viewpoint", "+working"]
    flags = {variant.name: variant.flags for variant in VARIANTS}
    assert not flags["vision"]["use_spatial_fusion"] and not flags["vision"]["use_dual_memory"]
    assert flags["+coords"]["use_coordinate_injection"] and not flags["+coords"]["use_viewpoint_alignment"]
    assert "coordinate_normalization" not in flags["+coords"]
    assert flags["+coords-metric"]["coordinate_normalization"] == "metric"
    assert flags["+viewpoint"]["use_viewpoint_alignment"] and not flags["+viewpoint"]["use_dual_memory"]
    assert (flags["+working"]["memory_L_w"], flags["+working"]["memory_L_e"]) == (8, 1)
    full = {(v.flags["memory_L_w"], v.flags["memory_L_e"]) for v in VARIANTS if v.is_full_vlm2}
    assert full == {(4, 8), (8, 8), (8, 32), (16, 32)}
    assert flags["vlm2-8-32-residual"]["memory_output"] == "residual"
    assert flags["vlm2-8-32-write-first"]["memory_read_order"] == "write_then_read"
    assert [v.name for v in VARIANTS if v.blind] == ["blind"]
    assert BASELINES == ("chance", "most-frequent", "category-prior")
    with pytest.raises(ValueError, match="unknown variants"):
        AblationConfig(variants=("vision", "nope"))


def test_smoke_run_scores_saves_and_reloads(tmp_path):
    import numpy as np

    from spatialvlm.models import ask_video, load_vlm2

    config = AblationConfig(
        out_dir=str(tmp_path / "run"), train_scenes=2, test_scenes=1, num_frames=4, image_size=56,
        vision_hidden_size=32, text_hidden_size=64, max_steps=2, batch_size=2, eval_limit=5, seeds=(0, 1),
        variants=("chance", "category-prior", "blind", "vlm2-4-8"), save_best=str(tmp_path / "ckpt"), progress=False,
    )
    result = run_ablation(config)
    # Row by row, every seed of a row before the next row.
    assert [(r.name, r.seed) for r in result.results] == [
        (name, seed) for name in ("chance", "category-prior", "blind", "vlm2-4-8") for seed in (0, 1)
    ]
    assert result.best_full_vlm2 == "vlm2-4-8" and result.best_checkpoint == tmp_path / "ckpt"
    # The training conversations are exactly the VSI-Bench questions of the training split.
    train_rows = [row for row in read_jsonl(tmp_path / "run/data/train.jsonl") if not row["question_type"].startswith(("camera", "obj_obj"))]
    assert len(json.loads((tmp_path / "run/records/train_seed0_geometry.json").read_text())) == len(train_rows)
    assert result.num_train_questions == len(train_rows)

    stored = json.loads((tmp_path / "run/results.json").read_text())
    for row in stored["results"]:
        predictions = read_jsonl(tmp_path / "run/runs" / row["name"] / f"seed{row['seed']}" / "eval/predictions.jsonl")
        assert len(predictions) == 5
        rescored = score_benchmark(predictions, "vsibench", "official")
        assert row["official"]["overall"] == pytest.approx(rescored.overall)
    # Row summaries: mean and sample std over the two seeds, recomputed by hand.
    for summary in stored["rows"]:
        overall = [r["official"]["overall"] for r in stored["results"] if r["name"] == summary["name"]]
        assert summary["overall_mean"] == pytest.approx(np.mean(overall))
        assert summary["overall_std"] == pytest.approx(np.std(overall, ddof=1))
        low, high = summary["overall_ci"]
        assert 0.0 <= low <= high <= 100.0
    trained = {row["name"]: row for row in stored["results"]}
    assert trained["vlm2-4-8"]["trainable_parameters"] > trained["blind"]["trainable_parameters"] > 0
    assert trained["vlm2-4-8"]["held_out_loss"] > 0
    assert "| vlm2-4-8 |" in (tmp_path / "run/results.md").read_text()
    # A rerun resumes: nothing is trained again, the same rows come back.
    again = run_ablation(config)
    assert [r.official for r in again.results] == [r.official for r in result.results]

    # The saved checkpoint is self-contained and answers exactly as the trained model did.
    model, processor = load_vlm2(tmp_path / "ckpt")
    assert (model.config.memory_L_w, model.config.memory_L_e) == (4, 8) and model.config.use_spatial_fusion
    metadata = json.loads((tmp_path / "ckpt/synthetic_training.json").read_text())
    assert metadata["synth"]["num_frames"] == 4 and metadata["synth"]["image_size"] == 56
    predictions = read_jsonl(tmp_path / "run/runs/vlm2-4-8/seed0/eval/predictions.jsonl")
    data = tmp_path / "run/data/synthetic"
    for record in predictions[:2]:
        answer = ask_video(
            model, processor, data / f"{record['scene_name']}.mp4", record["prompt"],
            geometry=data / f"{record['scene_name']}_geometry", num_frames=4,
        ).text
        assert answer == record["prediction"]


def test_modal_answer_share_counts_constant_answers_per_type():
    from spatialvlm.experiments.vlm2_ablation import modal_answer_share

    rows = [{"question_type": "count", "prediction": p} for p in ("2", "2", "2", "3")]
    rows += [{"question_type": "room", "prediction": p} for p in ("30", " 30", "41", "55", "60")]
    # count: 3 of 4 are the modal "2"; room: 2 of 5 are "30" (whitespace ignored) → mean of 75 % and 40 %.
    assert modal_answer_share(rows) == pytest.approx((75.0 + 40.0) / 2)
    assert modal_answer_share([{"question_type": "a", "prediction": "x"}] * 3) == 100.0


def test_runs_side_by_side_give_the_sequential_results(tmp_path):
    # jobs=2 trains each (variant, seed) in its own spawned process; the scores, losses and
    # predictions must be those of the one-process loop, and the table must hold every row.
    settings = dict(
        train_scenes=2, test_scenes=1, num_frames=4, image_size=56, vision_hidden_size=32, text_hidden_size=64,
        max_steps=2, batch_size=2, eval_limit=5, seeds=(1,), variants=("chance", "blind", "vision"), progress=False,
    )
    sequential = run_ablation(AblationConfig(out_dir=str(tmp_path / "one"), **settings))
    parallel = run_ablation(AblationConfig(out_dir=str(tmp_path / "two"), jobs=2, **settings))
    assert [(r.name, r.seed) for r in parallel.results] == [(r.name, r.seed) for r in sequential.results]
    for one, two in zip(sequential.results, parallel.results):
        assert one.official == two.official and one.train_loss == two.train_loss and one.held_out_loss == two.held_out_loss
        if one.name != "chance":
            for name in ("one", "two"):
                assert (tmp_path / name / "runs" / one.name / f"seed{one.seed}" / "eval/predictions.jsonl").is_file()
            assert (tmp_path / "two/runs" / one.name / f"seed{one.seed}" / "log.txt").is_file()
    assert [row.name for row in parallel.rows] == ["chance", "blind", "vision"]
