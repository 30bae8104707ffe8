"""`spatialvlm synth --images` then `spatialvlm eval --benchmark shirgx-images` with a rule-based
predictor (imported by --predictor), the image baselines, resume and the benchmark registry."""

import json
import textwrap
from collections import Counter

import pytest

from spatialvlm.cli import main
from spatialvlm.commands.eval import BENCHMARK_NAMES
from spatialvlm.eval import BENCHMARK_REGISTRY

RULES = '''
calls = []


def answer(item, prompt):
    """Gold answers bent by known amounts, so every task's score is known in advance."""
    calls.append(item.id)
    gold = item.answers[0]
    if item.question_type == "bar_value":
        return f"{int(gold) * 1.04:.2f}"  # 4 % off: relaxed-correct
    if item.question_type == "glyph_code":
        return gold[:2] + ("Y" if gold[2] != "Y" else "Z")  # one of three characters wrong: ANLS 2/3
    if item.question_type == "grid_count":
        return str(int(gold) + 1)  # off by one: wrong under exact match, also leniently
    return f"The answer is {gold}."  # right only once the answer is cut out (lenient)
'''


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    assert main(["synth", "--images", "--out", str(root / "test"), "--count", "8", "--seed", "1"]) == 0
    assert main(["synth", "--images", "--out", str(root / "train"), "--count", "8", "--seed", "1", "--split", "train"]) == 0
    return root


def test_rule_based_predictor_through_the_cli(suite, tmp_path, monkeypatch, capsys):
    (tmp_path / "rules_for_suite.py").write_text(textwrap.dedent(RULES))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = ["eval", "--benchmark", "shirgx-images", "--data", str(suite / "test"), "--predictor", "rules_for_suite:answer",
            "--out", str(out)]
    assert main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    official, lenient = scores["official"], scores["lenient"]
    # 8 images cycle the 4 families, 2 questions each.
    assert official["counts"] == {"grid_color": 2, "grid_count": 2, "glyph_code": 4, "bar_value": 4,
                                  "layout_quadrant": 2, "layout_side": 2}
    assert official["tasks"] == pytest.approx({"grid_color": 0.0, "grid_count": 0.0, "glyph_code": 200 / 3,
                                               "bar_value": 100.0, "layout_quadrant": 0.0, "layout_side": 0.0})
    assert official["overall"] == pytest.approx((200 / 3 + 100) / 6)  # mean of the task scores
    assert lenient["tasks"] == pytest.approx({"grid_color": 100.0, "grid_count": 0.0, "glyph_code": 200 / 3,
                                              "bar_value": 100.0, "layout_quadrant": 100.0, "layout_side": 100.0})
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 16 and all(record["regions"] and record["image"].endswith(".png") for record in records)
    assert records[0]["prompt"].endswith("\nAnswer the question using a single word or phrase.")
    assert "| **overall** | 16 |" in (out / "scores.md").read_text()

    # A rerun into the same --out resumes: nothing is asked again.
    import rules_for_suite

    asked = len(rules_for_suite.calls)
    assert main(args) == 0
    assert len(rules_for_suite.calls) == asked
    assert "0 answered now, 16 resumed" in capsys.readouterr().out


def test_image_baselines_through_the_cli(suite, tmp_path):
    train_rows = [json.loads(line) for line in (suite / "train" / "train.jsonl").read_text().splitlines()]
    test_rows = [json.loads(line) for line in (suite / "test" / "test.jsonl").read_text().splitlines()]
    out = tmp_path / "frequent"
    assert main(["eval", "--benchmark", "shirgx-images", "--data", str(suite / "test"), "--baseline", "most-frequent",
                 "--train-data", str(suite / "train"), "--out", str(out)]) == 0
    by_type = {}
    for row in train_rows:
        by_type.setdefault(row["question_type"], Counter())[row["answers"][0]] += 1
    predictions = {json.loads(line)["id"]: json.loads(line)["prediction"] for line in (out / "predictions.jsonl").open()}
    for row in test_rows:
        counts = by_type[row["question_type"]]
        top = max(counts.values())
        assert counts[predictions[row["id"]]] == top  # a most frequent training answer of the type

    out = tmp_path / "key"
    assert main(["eval", "--benchmark", "shirgx-images", "--data", str(suite / "test"), "--baseline", "answer-key",
                 "--out", str(out)]) == 0
    assert json.loads((out / "scores.json").read_text())["official"]["overall"] == 100.0


def test_cli_errors_and_registry(suite, tmp_path, capsys):
    assert set(BENCHMARK_NAMES) == set(BENCHMARK_REGISTRY)
    data = str(suite / "test")
    assert main(["eval", "--benchmark", "shirgx-images", "--data", data, "--model", str(tmp_path)]) == 2
    assert "--predictor" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "shirgx-images", "--data", data, "--predictor", "no_such_module:x"]) == 2
    assert main(["eval", "--benchmark", "shirgx-images", "--data", data, "--baseline", "chance"]) == 2
    assert "--train-data" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "chartqa", "--data", data, "--baseline", "answer-key"]) == 2  # not ChartQA
