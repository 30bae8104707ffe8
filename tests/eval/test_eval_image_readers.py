"""ChartQA and DocVQA readers on small files in their released formats, scored through the runner."""

import json

import pytest
from PIL import Image

from spatialvlm.data.image_readers import read_chartqa, read_docvqa
from spatialvlm.eval import build_image_prompt, evaluate_directory


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (255, 255, 255)).save(path)


@pytest.fixture
def chartqa_root(tmp_path):
    root = tmp_path / "ChartQA Dataset"
    split_dir = root / "test"
    human = [
        {"imgname": "41699051005347.png", "query": "What is the value of Brazil?", "label": "20"},
        {"imgname": "multi_col_1.png", "query": "Is the line rising?", "label": "Yes"},
    ]
    augmented = [{"imgname": "two_col_7.png", "query": "What is the peak value?", "label": "3.5"}]
    split_dir.mkdir(parents=True)
    (split_dir / "test_human.json").write_text(json.dumps(human))
    (split_dir / "test_augmented.json").write_text(json.dumps(augmented))
    for row in human + augmented:
        _png(split_dir / "png" / row["imgname"])
    return root


def test_chartqa_reader(chartqa_root):
    items = read_chartqa(chartqa_root)
    assert [item.id for item in items] == ["test_human_0", "test_human_1", "test_augmented_0"]
    assert [item.question_type for item in items] == ["human_test", "human_test", "augmented_test"]
    assert items[0].answers == ["20"] and items[0].metric == "relaxed_accuracy"
    assert items[2].image_path == (chartqa_root / "test" / "png" / "two_col_7.png").resolve()
    assert all(item.image_path.is_file() for item in items)
    assert build_image_prompt(items[0]) == "What is the value of Brazil?\nAnswer the question using a single word or phrase."
    # The split folder itself works too; one subset at a time.
    assert len(read_chartqa(chartqa_root / "test", subsets=("augmented",))) == 1
    with pytest.raises(FileNotFoundError, match="test_human.json"):
        read_chartqa(chartqa_root / "nowhere")
    with pytest.raises(ValueError, match="subsets"):
        read_chartqa(chartqa_root, subsets=("synthetic",))


def test_chartqa_scored_as_lmms_eval(chartqa_root, tmp_path):
    answers = {"test_human_0": "21", "test_human_1": "yes", "test_augmented_0": "3.8"}
    result = evaluate_directory(chartqa_root, lambda item, prompt: answers[item.id], tmp_path / "out", "chartqa", show_progress=False)
    # 21 vs 20 is exactly 5 % off (right); "yes" = "Yes" ignoring case; 3.8 vs 3.5 is 8.6 % off.
    assert result.official.tasks == pytest.approx({"human_test": 100.0, "augmented_test": 0.0})
    assert result.official.overall == pytest.approx(200 / 3)  # mean over questions (relaxed_overall)
    assert "relaxed accuracy" in result.scores_markdown_path.read_text()


def _docvqa_payload(split="val"):
    return {
        "dataset_name": "docvqa",
        "dataset_version": "1.0",
        "dataset_split": split,
        "data": [
            {"questionId": 49153, "question": "What is the 'actual' value per 1000, during the year 1975?",
             "question_types": ["figure/diagram"], "image": "documents/pybv0228_81.png", "docId": 14465,
             "ucsf_document_id": "pybv0228", "ucsf_document_page_no": "81", "answers": ["0.28"], "data_split": split},
            {"questionId": 24580, "question": "Who signed the letter?", "question_types": ["handwritten", "form"],
             "image": "documents/nkbl0226_1.png", "docId": 2, "ucsf_document_id": "nkbl0226",
             "ucsf_document_page_no": "1", "answers": ["Dr. John Smith", "John Smith"], "data_split": split},
            {"questionId": 57349, "question": "What is the code?", "question_types": ["form"],
             "image": "documents/zzzz0000_2.png", "docId": 3, "ucsf_document_id": "zzzz0000",
             "ucsf_document_page_no": "2", "answers": ["abcd"], "data_split": split},
        ],
    }


def test_docvqa_reader_and_anls(tmp_path):
    root = tmp_path / "docvqa" / "val"
    root.mkdir(parents=True)
    payload = _docvqa_payload()
    (root / "val_v1.0_withQT.json").write_text(json.dumps(payload))
    for row in payload["data"]:
        _png(root / row["image"])
    items = read_docvqa(tmp_path / "docvqa")  # finds val/val_v1.0_withQT.json
    assert [item.id for item in items] == ["49153", "24580", "57349"]
    assert items[1].answers == ["Dr. John Smith", "John Smith"] and items[1].metric == "anls"
    assert items[0].image_path == (root / "documents" / "pybv0228_81.png").resolve()
    assert items[1].extra["question_types"] == ["handwritten", "form"]

    answers = {"49153": "0.28", "24580": "john  smith", "57349": "abxy"}
    result = evaluate_directory(tmp_path / "docvqa", lambda item, prompt: answers[item.id], tmp_path / "out", "docvqa",
                                show_progress=False)
    # 1 (exact), 1 (best of the two golds, case and spaces normalised), 0.5 (2 edits in 4: the edge, kept).
    assert result.official.overall == pytest.approx(100 * 2.5 / 3)
    assert result.official.categories == pytest.approx({"figure/diagram": 100.0, "form": 75.0, "handwritten": 100.0})
    assert "Categories:" in result.scores_markdown_path.read_text()


def test_docvqa_released_folders_and_errors(tmp_path):
    qas, images = tmp_path / "spdocvqa_qas", tmp_path / "spdocvqa_images"
    qas.mkdir()
    payload = _docvqa_payload("train")
    (qas / "train_v1.0.json").write_text(json.dumps(payload))
    for row in payload["data"]:
        _png(images / row["image"].split("/")[-1])  # spdocvqa_images keeps file names only
    items = read_docvqa(tmp_path, "train")
    assert items[2].image_path == (images / "zzzz0000_2.png").resolve()
    test_payload = _docvqa_payload("test")
    for row in test_payload["data"]:
        del row["answers"]
    (qas / "test_v1.0.json").write_text(json.dumps(test_payload))
    with pytest.raises(ValueError, match="no answers"):
        read_docvqa(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="val_v1.0"):
        read_docvqa(tmp_path, "val")
    (images / "zzzz0000_2.png").unlink()
    with pytest.raises(FileNotFoundError, match="zzzz0000_2.png"):
        read_docvqa(tmp_path, "train")
