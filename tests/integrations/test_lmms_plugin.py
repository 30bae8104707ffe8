"""The lmms-eval plugin against the real lmms-eval 0.7.3 (installed with --no-deps plus the [lmms]
extra; `make test-lmms`): entry-point registration, one task run end to end with `python -m lmms_eval`
on a local copy in the task's format with the tiny checkpoint, loglikelihood, and our ReVSI / VSI-Bench
scoring against lmms-eval's own task code on unseen records."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lmms

if os.environ.get("SPATIALVLM_REQUIRE_LMMS"):
    import lmms_eval  # noqa: F401  (make test-lmms: a missing lmms-eval is a failure, not a skip)
else:
    pytest.importorskip("lmms_eval")

from spatialvlm.data.readers import write_jsonl  # noqa: E402
from spatialvlm.eval import score_benchmark, score_prediction  # noqa: E402

SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")
CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-tiny-synthetic"
VSI_TYPES = {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
             "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
             "object_rel_direction_hard", "route_planning", "obj_appearance_order"}

# A task in lmms-eval's vsibench format over a local json copy: the official prompt and scoring
# functions from lmms_eval.tasks.vsibench.utils; only doc_to_visual points at the local videos.
TASK_UTILS = '''
import os
from lmms_eval.tasks.vsibench.utils import (
    process_docs, vsibench_aggregate_overall, vsibench_doc_to_text, vsibench_process_results,
)

def doc_to_visual(doc):
    return [os.path.join(os.environ["SPATIALVLM_TEST_VIDEO_ROOT"], doc["dataset"], doc["scene_name"] + ".mp4")]
'''
TASK_YAML = '''
task: spatialvlm_local_vsibench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
process_docs: !function utils.process_docs
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.vsibench_doc_to_text
doc_to_target: "ground_truth"
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.vsibench_process_results
metric_list:
  - metric: vsibench_overall
    aggregation: !function utils.vsibench_aggregate_overall
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    mca_post_prompt: "Answer with the option's letter from the given choices directly."
    na_post_prompt: "Please answer the question using a single word or phrase."
'''


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    result = subprocess.run([SPATIALVLM, "synth", "--out", str(root), "--scenes", "1", "--frames", "12", "--size", "48",
                             "--questions-per-type", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    # lmms-eval's aggregation needs all three rel_direction sub-types (it pops each one).
    wanted = ["object_counting", "object_abs_distance", "room_size_estimation",
              "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard"]
    rows = [{**row, "options": row["options"] or []} for name in wanted
            for row in rows[:] if row["question_type"] == name][: len(wanted)]
    by_type = {}
    for row in rows:
        by_type.setdefault(row["question_type"], row)
    rows = [by_type[name] for name in wanted]
    write_jsonl(root / "test.jsonl", rows)
    return root


def test_entry_point_registers_the_model():
    from lmms_eval.api.model import lmms
    from lmms_eval.models import get_model, list_available_models

    from spatialvlm.integrations.lmms_plugin import SpatialVLMVideo

    assert "spatialvlm_vlm2" in list_available_models()
    assert get_model("spatialvlm_vlm2") is SpatialVLMVideo and issubclass(SpatialVLMVideo, lmms)
    assert get_model("spatialvlm") is SpatialVLMVideo  # the alias


def test_a_task_end_to_end_matches_spatialvlm_eval(bench, tmp_path):
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "utils.py").write_text(TASK_UTILS)
    (task_dir / "spatialvlm_local_vsibench.yaml").write_text(TASK_YAML.format(data=bench / "test.jsonl"))
    env = {**os.environ, "SPATIALVLM_TEST_VIDEO_ROOT": str(bench), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    frame_log = tmp_path / "frames.jsonl"
    command = [sys.executable, "-m", "lmms_eval", "--model", "spatialvlm_vlm2",
               "--model_args", f"pretrained={CHECKPOINT},geometry_root={bench},frames=8,frame_log={frame_log}",
               "--tasks", "spatialvlm_local_vsibench", "--include_path", str(task_dir), "--batch_size", "1",
               "--log_samples", "--output_path", str(tmp_path / "lmms_out")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = sorted((tmp_path / "lmms_out").rglob("*_samples_spatialvlm_local_vsibench.jsonl"))
    assert len(found) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    [samples_path] = found
    samples = sorted((json.loads(line) for line in samples_path.read_text().splitlines()), key=lambda s: s["doc_id"])
    [results_path] = (tmp_path / "lmms_out").rglob("*_results.json")
    lmms_overall = json.loads(results_path.read_text())["results"]["spatialvlm_local_vsibench"]["vsibench_overall,none"]

    ours = subprocess.run([SPATIALVLM, "eval", "--data", str(bench), "--model", str(CHECKPOINT), "--frames", "8",
                           "--out", str(tmp_path / "ours")], capture_output=True, text=True, timeout=600)
    assert ours.returncode == 0, ours.stderr
    predictions = [json.loads(line) for line in (tmp_path / "ours" / "predictions.jsonl").read_text().splitlines()]
    assert len(samples) == len(predictions) == 6
    # Same frames, same prompt, same greedy decoding: the same answers, question by question.
    assert [sample["filtered_resps"] for sample in samples] == [row["prediction"] for row in predictions]
    assert [sample["input"] for sample in samples] == [row["prompt"] for row in predictions]
    logged = [json.loads(line) for line in frame_log.read_text().splitlines()]
    bundle = json.loads((tmp_path / "ours" / "bundle.json").read_text())
    assert {entry["video"]: entry["frame_indices"] for entry in logged} == bundle["frame_indices"]
    # Scores agree wherever lmms-eval 0.7.3's number extraction and the first-word rule read the same number.
    from lmms_eval.tasks.vsibench.utils import extract_number

    from spatialvlm.eval import official_answer_token, official_float

    same_reading = all(
        row["options"] or official_float(official_answer_token(row["prediction"])) == extract_number(row["prediction"])
        for row in predictions
    )
    if same_reading:
        ours_overall = json.loads((tmp_path / "ours" / "scores.json").read_text())["official"]["overall"]
        assert 100 * lmms_overall == pytest.approx(ours_overall, abs=1e-4)


def test_loglikelihood_of_the_greedy_answer(bench):
    from lmms_eval.api.instance import Instance

    from spatialvlm.integrations.lmms_plugin import SpatialVLMVideo

    model = SpatialVLMVideo(pretrained=str(CHECKPOINT), geometry_root=str(bench), frames="4")
    doc = json.loads((bench / "test.jsonl").read_text().splitlines()[0])
    model.task_dict = {"t": {"test": [doc]}}

    def visual(d):
        return [str(bench / d["dataset"] / f"{d['scene_name']}.mp4")]

    context = "How many objects?"
    meta = {"task": "t", "doc_id": 0, "repeats": 1}
    [answer] = model.generate_until(
        [Instance("generate_until", (context, {"max_new_tokens": 4}, visual, 0, "t", "test"), 0, meta)]
    )
    assert answer
    [(greedy_logprob, greedy)], [(other_logprob, other_greedy)] = (
        model.loglikelihood([Instance("loglikelihood", (context, text, visual, 0, "t", "test"), 0, meta)])
        for text in (answer, answer + " zzz qqq")
    )
    assert greedy and not other_greedy
    assert greedy_logprob < 0 and other_logprob < greedy_logprob  # more tokens, each with probability < 1


def _random_revsi_records(rng, count):
    from spatialvlm.eval.metrics import REVSI_MC_TYPES, REVSI_NUMERICAL_TYPES

    records = []
    for index in range(count):
        question_type = rng.choice(REVSI_MC_TYPES + REVSI_NUMERICAL_TYPES)
        if question_type in REVSI_MC_TYPES:
            gold = rng.choice("ABCD")
            prediction = rng.choice([gold, gold.lower() + ".", f" {gold} chair", rng.choice("ABCD"), "\n" + gold, ""])
        else:
            gold = f"{rng.uniform(0.5, 20):.2f}"
            prediction = rng.choice([gold, f"{float(gold) * rng.uniform(0.3, 1.7):.2f}", f" {gold}.", "about 3", "", "0"])
        records.append({"id": index, "question_type": question_type, "ground_truth": gold, "prediction": prediction,
                        "options": [f"{letter}. x" for letter in "ABCD"]})
    return records


def test_revsi_scoring_equals_lmms_eval_revsi_utils():
    import lmms_eval.tasks.revsi.utils as official

    rng = random.Random(7)
    for trial in range(5):
        records = _random_revsi_records(rng, 60)
        docs = []
        for record in records:
            doc = {"question_type": record["question_type"], "ground_truth": record["ground_truth"]}
            official.revsi_process_results(doc, [record["prediction"]])
            docs.append(doc)
            assert score_prediction(record, "revsi") == pytest.approx(doc["acc"])
        expected = official._compute_all_subscores(docs)
        scores = score_benchmark(records, "revsi")
        assert 100 * expected.pop("overall_acc") == pytest.approx(scores.overall)
        assert {name.removesuffix("_acc"): 100 * value for name, value in expected.items()} == pytest.approx(scores.tasks)


def test_vsibench_scoring_against_lmms_eval_vsibench_utils():
    import lmms_eval.tasks.vsibench.utils as official

    # Multiple choice and answers led by the number: identical. "about 3": lmms-eval ≥ 0.7.3 reads the
    # first number anywhere, the first-word rule (thinking-in-space, lmms-eval ≤ 0.7.2) scores 0.
    cases = [("object_rel_distance", "B", "b."), ("route_planning", "A", "(A)"), ("object_counting", "4", "4"),
             ("object_abs_distance", "2.0", "2.3"), ("room_size_estimation", "30", "31.5 m")]
    for question_type, gold, prediction in cases:
        doc = {"question_type": question_type, "ground_truth": gold}
        official.vsibench_process_results(doc, [prediction])
        value = doc.get("accuracy", doc.get("MRA:.5:.95:.05"))
        ours = score_prediction({"question_type": question_type, "ground_truth": gold, "prediction": prediction})
        assert ours == pytest.approx(value)
    doc = {"question_type": "object_counting", "ground_truth": "3"}
    official.vsibench_process_results(doc, ["about 3"])
    assert doc["MRA:.5:.95:.05"] == 1.0
    assert score_prediction({"question_type": "object_counting", "ground_truth": "3", "prediction": "about 3"}) == 0.0


def test_shirgx_image_model_answers_as_spatialvlm_ask(tmp_path):
    import numpy as np
    from lmms_eval.api.instance import Instance
    from lmms_eval.models import get_model
    from PIL import Image

    from spatialvlm.integrations.lmms_plugin import SpatialVLMImage

    assert get_model("spatialvlm_shirgx") is SpatialVLMImage
    image_path = tmp_path / "chart.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, size=(80, 120, 3), dtype=np.uint8)).save(image_path)
    question = "What is the largest value?"
    model = SpatialVLMImage(pretrained=str(CHECKPOINT))
    model.task_dict = {"chart": {"test": [{"image": str(image_path)}]}}
    meta = {"task": "chart", "doc_id": 0, "repeats": 1}
    request = Instance("generate_until", (question, {"max_new_tokens": 3, "until": []},
                                          lambda doc: [Image.open(doc["image"])], 0, "chart", "test"), 0, meta)
    [answer] = model.generate_until([request])
    # The same checkpoint, image and question through the command line.
    ask = subprocess.run([SPATIALVLM, "ask", "--image", str(image_path), "--model", str(CHECKPOINT),
                          "--max-new-tokens", "3", "--no-progress", question], capture_output=True, text=True, timeout=300)
    assert ask.returncode == 0, ask.stderr
    assert answer == ask.stdout.strip()
    with pytest.raises(NotImplementedError):
        model.loglikelihood([request])
