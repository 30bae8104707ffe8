"""Readers for local copies of VSI-Bench-format benchmarks (VSI-Bench, VSTI-Bench, our synthetic set).

A benchmark directory holds ``<split>.jsonl`` or ``<split>.parquet`` (or any ``*.parquet`` whose
name starts with the split, as Hugging Face shards are named) with the columns ``id, dataset,
scene_name, question_type, question, ground_truth, options``; videos live at
``<dataset>/<scene_name>.mp4`` (or at a ``video_path`` column, as VSTI-Bench has). Nothing is
downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchmarkItem", "find_split_files", "read_benchmark", "write_jsonl"]

_REQUIRED_COLUMNS = ("id", "dataset", "scene_name", "question_type", "question", "ground_truth")
_KNOWN_COLUMNS = frozenset(_REQUIRED_COLUMNS + ("options", "video_path"))


@dataclass
class BenchmarkItem:
    """One benchmark question.

    Attributes:
        id: the row id, as a string (VSI-Bench ids are integers; strings keep every source alike).
        dataset: source dataset of the video (e.g. "scannet", "synthetic").
        scene_name: the video's scene name.
        question_type: e.g. "object_counting".
        question: the question text, without the benchmark's pre/post prompts.
        ground_truth: the answer as a string (an option letter for multiple choice).
        options: the options as written in the data ("A. chair", ...); empty for numerical questions.
        video_path: absolute path of the video.
        extra: every other column of the row (e.g. VSTI-Bench's ``mc_answer``).
    """

    id: str
    dataset: str
    scene_name: str
    question_type: str
    question: str
    ground_truth: str
    options: list[str]
    video_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The row in the dataset's columns plus ``extra`` (video path made relative to nothing)."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "scene_name": self.scene_name,
            "question_type": self.question_type,
            "question": self.question,
            "ground_truth": self.ground_truth,
            "options": list(self.options),
            **self.extra,
        }


def find_split_files(data_dir: str | Path, split: str = "test") -> list[Path]:
    """The files holding ``split`` in ``data_dir``: ``<split>.jsonl``, else parquet shards."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"benchmark directory {data_dir} does not exist")
    jsonl = data_dir / f"{split}.jsonl"
    if jsonl.is_file():
        return [jsonl]
    shards = sorted(data_dir.glob(f"{split}*.parquet")) or sorted(data_dir.glob(f"*/{split}*.parquet"))
    if shards:
        return shards
    raise FileNotFoundError(
        f"no {split}.jsonl or {split}*.parquet in {data_dir}; expected a local copy of the benchmark"
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as parquet

        return parquet.read_table(path).to_pylist()
    rows = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from error
    return rows


def _to_item(row: dict[str, Any], data_dir: Path, source: Path) -> BenchmarkItem:
    missing = [column for column in _REQUIRED_COLUMNS if column not in row]
    if missing:
        raise ValueError(f"{source}: row {row.get('id', '?')} lacks columns {missing}")
    options = row.get("options")
    video = row.get("video_path") or f"{row['dataset']}/{row['scene_name']}.mp4"
    return BenchmarkItem(
        id=str(row["id"]),
        dataset=str(row["dataset"]),
        scene_name=str(row["scene_name"]),
        question_type=str(row["question_type"]),
        question=str(row["question"]),
        ground_truth=str(row["ground_truth"]),
        options=[str(option) for option in options] if options is not None else [],
        video_path=(data_dir / video).resolve(),
        extra={key: value for key, value in row.items() if key not in _KNOWN_COLUMNS},
    )


def read_benchmark(
    data_dir: str | Path,
    split: str = "test",
    question_types: Iterable[str] | None = None,
) -> list[BenchmarkItem]:
    """Read the ``split`` rows of a local benchmark copy, in file order.

    Args:
        data_dir: the benchmark directory (see the module docstring).
        split: file name stem, "test" by default.
        question_types: keep only these types (e.g. a benchmark's types); None keeps all.

    Raises:
        FileNotFoundError: no split file in ``data_dir``.
        ValueError: a row lacks a required column, or two rows share an id.
    """
    data_dir = Path(data_dir)
    wanted = None if question_types is None else set(question_types)
    items: list[BenchmarkItem] = []
    for path in find_split_files(data_dir, split):
        for row in _read_rows(path):
            item = _to_item(row, data_dir, path)
            if wanted is None or item.question_type in wanted:
                items.append(item)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{data_dir}: id {item.id!r} appears twice; ids must be unique")
        seen.add(item.id)
    return items


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON lines (UTF-8, one object per line)."""
    with Path(path).open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
