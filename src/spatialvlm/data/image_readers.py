"""Readers for image question-answering benchmarks: our synthetic suite, ChartQA and DocVQA.

All return :class:`ImageQAItem` lists from local copies; nothing is downloaded.

- **Synthetic suite** (``spatialvlm synth --images``): ``<dir>/<split>.jsonl``, rows ``id, dataset,
  image, question_type, question, answers, metric, regions`` (see
  :mod:`spatialvlm.data.synthetic_images.dataset`).
- **ChartQA** (released "ChartQA Dataset" folder, github.com/vis-nlp/ChartQA):
  ``<root>/<split>/<split>_human.json`` and ``<split>_augmented.json``, each a JSON list of
  ``{"imgname": "41699051005347.png", "query": "...", "label": "..."}``, images in
  ``<root>/<split>/png/<imgname>``. Ids are ``<split>_<subset>_<index>`` as pix2struct numbers them;
  ``question_type`` is ``<subset>_<split>`` ("human_test", "augmented_test") as lmms-eval reports.
- **DocVQA** (single-page task, rrc.cvc.uab.es ch=17): ``<split>_v1.0_withQT.json`` or
  ``<split>_v1.0.json``, a JSON object ``{"dataset_name": "docvqa", "dataset_version": "1.0",
  "dataset_split": "val", "data": [{"questionId", "question", "question_types", "image":
  "documents/xxxx_1.png", "docId", "ucsf_document_id", "ucsf_document_page_no", "answers": [...],
  "data_split"}]}``. The image path is relative to the json's folder (the released layout) or to
  ``image_root``; the file name alone is tried too (``spdocvqa_images/`` keeps only names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ImageQAItem",
    "read_image_suite",
    "read_chartqa",
    "read_docvqa",
    "CHARTQA_SUBSETS",
]

CHARTQA_SUBSETS: tuple[str, ...] = ("human", "augmented")
_SUITE_COLUMNS = ("id", "image", "question_type", "question", "answers", "metric")
_SUITE_KNOWN = frozenset(_SUITE_COLUMNS + ("dataset", "regions"))


@dataclass
class ImageQAItem:
    """One image question.

    Attributes:
        id: unique id within the benchmark, as a string.
        dataset: "shirgx-images", "chartqa" or "docvqa".
        question_type: the task the score table groups by.
        question: the question text, without pre/post prompts.
        answers: every accepted answer (the metric takes the best match).
        metric: "exact_match", "relaxed_accuracy" or "anls"
            (:data:`spatialvlm.eval.image_metrics.IMAGE_METRICS`).
        image_path: absolute path of the image.
        regions: pixel boxes ``[x0, y0, x1, y1]`` (exclusive ends) the answer depends on; empty
            when unknown (ChartQA, DocVQA).
        extra: every other field of the source row (e.g. DocVQA ``question_types``).
    """

    id: str
    dataset: str
    question_type: str
    question: str
    answers: list[str]
    metric: str
    image_path: Path
    regions: list[list[int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ground_truth(self) -> str:
        """The first accepted answer (what an answer key says)."""
        return self.answers[0]

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready row: the item's fields (image as a string path) plus ``extra``."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "question_type": self.question_type,
            "question": self.question,
            "answers": list(self.answers),
            "metric": self.metric,
            "image": str(self.image_path),
            "regions": [list(box) for box in self.regions],
            **self.extra,
        }


def _check_unique(items: list[ImageQAItem], source: Path) -> list[ImageQAItem]:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{source}: id {item.id!r} appears twice; ids must be unique")
        seen.add(item.id)
    return items


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def read_image_suite(data_dir: str | Path, split: str = "test") -> list[ImageQAItem]:
    """Read ``data_dir/<split>.jsonl`` of the synthetic image suite, in file order.

    Raises:
        FileNotFoundError: no such directory or split file.
        ValueError: a row lacks a column, has no answers, or repeats an id.
    """
    data_dir = Path(data_dir)
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no {split}.jsonl in {data_dir}; write one with `spatialvlm synth --images`")
    items = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from error
            missing = [column for column in _SUITE_COLUMNS if column not in row]
            if missing:
                raise ValueError(f"{path}:{line_number} lacks columns {missing}")
            if not row["answers"]:
                raise ValueError(f"{path}:{line_number} has an empty answers list")
            items.append(ImageQAItem(
                id=str(row["id"]),
                dataset=str(row.get("dataset", "shirgx-images")),
                question_type=str(row["question_type"]),
                question=str(row["question"]),
                answers=[str(answer) for answer in row["answers"]],
                metric=str(row["metric"]),
                image_path=(data_dir / row["image"]).resolve(),
                regions=[[int(value) for value in box] for box in row.get("regions") or []],
                extra={key: value for key, value in row.items() if key not in _SUITE_KNOWN},
            ))
    return _check_unique(items, path)


def read_chartqa(
    data_dir: str | Path, split: str = "test", subsets: tuple[str, ...] = CHARTQA_SUBSETS
) -> list[ImageQAItem]:
    """Read a local copy of ChartQA in its released layout (module docstring), subset by subset.

    ``data_dir`` is the dataset root (holding ``<split>/``) or the split folder itself. Every
    question is scored by relaxed accuracy (:func:`spatialvlm.eval.image_metrics.relaxed_accuracy`).

    Raises:
        FileNotFoundError: a subset's json is missing.
        ValueError: a row lacks ``imgname``, ``query`` or ``label``; unknown subset.
    """
    data_dir = Path(data_dir)
    split_dir = data_dir / split if (data_dir / split).is_dir() else data_dir
    unknown = sorted(set(subsets) - set(CHARTQA_SUBSETS))
    if unknown:
        raise ValueError(f"unknown ChartQA subsets {unknown}; expected some of {CHARTQA_SUBSETS}")
    items = []
    for subset in subsets:
        path = split_dir / f"{split}_{subset}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {split_dir}; expected the released ChartQA layout")
        rows = _load_json(path)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
        for index, row in enumerate(rows):
            missing = [key for key in ("imgname", "query", "label") if key not in row]
            if missing:
                raise ValueError(f"{path}: question {index} lacks {missing}")
            label = row["label"]
            items.append(ImageQAItem(
                id=f"{split}_{subset}_{index}",
                dataset="chartqa",
                question_type=f"{subset}_{split}",
                question=str(row["query"]),
                answers=[str(answer) for answer in label] if isinstance(label, list) else [str(label)],
                metric="relaxed_accuracy",
                image_path=(split_dir / "png" / row["imgname"]).resolve(),
                extra={key: value for key, value in row.items() if key not in ("imgname", "query", "label")},
            ))
    return _check_unique(items, split_dir)


def _find_docvqa_json(data_dir: Path, split: str) -> Path:
    names = (f"{split}_v1.0_withQT.json", f"{split}_v1.0.json")
    folders = (data_dir, data_dir / split, data_dir / "spdocvqa_qas")
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"no {' or '.join(names)} in {data_dir} (or its {split}/ or spdocvqa_qas/ folder); "
        "expected the released DocVQA annotations"
    )


def _resolve_image(name: str, roots: list[Path]) -> Path:
    candidates = [root / name for root in roots] + [root / Path(name).name for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"image {name!r} not found; looked at {[str(path) for path in candidates[:4]]} …")


def read_docvqa(data_dir: str | Path, split: str = "val", image_root: str | Path | None = None) -> list[ImageQAItem]:
    """Read a local copy of DocVQA (single page) in its released format (module docstring).

    Every question is scored by ANLS over its ``answers``
    (:func:`spatialvlm.eval.image_metrics.anls`). The test split ships without answers and cannot
    be scored locally (the RRC server scores it).

    Args:
        data_dir: folder holding the annotations json (or its ``<split>/`` or ``spdocvqa_qas/``).
        split: "train" or "val" (or "test", which raises for lack of answers).
        image_root: where images live, if not beside the json (``image`` is tried as given and
            by file name alone under it); default: the json's folder, ``data_dir``,
            ``data_dir/spdocvqa_images``.

    Raises:
        FileNotFoundError: no annotations json, or an image is missing.
        ValueError: the json is not a DocVQA annotation file, or a question has no answers.
    """
    data_dir = Path(data_dir)
    path = _find_docvqa_json(data_dir, split)
    payload = _load_json(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError(f"{path}: expected a DocVQA object with a 'data' list")
    roots = [Path(image_root)] if image_root is not None else [path.parent, data_dir, data_dir / "spdocvqa_images"]
    items = []
    for row in payload["data"]:
        missing = [key for key in ("questionId", "question", "image") if key not in row]
        if missing:
            raise ValueError(f"{path}: question {row.get('questionId', '?')} lacks {missing}")
        if not row.get("answers"):
            raise ValueError(
                f"{path}: question {row['questionId']} has no answers (the test split is scored by the RRC server)"
            )
        items.append(ImageQAItem(
            id=str(row["questionId"]),
            dataset="docvqa",
            question_type="docvqa",
            question=str(row["question"]),
            answers=[str(answer) for answer in row["answers"]],
            metric="anls",
            image_path=_resolve_image(str(row["image"]), roots),
            extra={key: value for key, value in row.items() if key not in ("questionId", "question", "image", "answers")},
        ))
    return _check_unique(items, path)
