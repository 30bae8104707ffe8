"""Readers for the local copies of ReVSI and VSI-Bench-Debiased.

**ReVSI** (Hugging Face ``3dlg-hcvc/ReVSI``, lmms-eval ``tasks/revsi``): configs ``16_frame``,
``32_frame``, ``64_frame``, ``all_frame``, each a ``test`` split whose rows carry ``scene_id``,
``num_frames``, ``question_type``, ``question``, ``options`` and ``ground_truth``; the videos are
pre-sampled to that many frames and live at ``<root>/<num_frames>_frame/<scene_id>.mp4``
(lmms-eval's ``revsi_doc_to_visual``). Here ``--data`` is that root and ``--split`` names the rows,
e.g. ``32_frame/test`` (``<root>/32_frame/test.jsonl`` or ``test*.parquet``) or ``test``. Rows
without an ``id`` get ``<num_frames>_frame-<row number>`` (lmms-eval numbers docs by position).

**VSI-Bench-Debiased** (``nyu-visionx/VSI-Bench`` config ``debiased``, lmms-eval
``vsibench_debiased``): ``<split>_debiased.parquet`` / ``.jsonl`` when present, else the
``<split>`` rows whose ``pruned`` column is false (the released ``test.jsonl`` has it). Videos as
VSI-Bench: ``<dataset>/<scene_name>.mp4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spatialvlm.data.readers import BenchmarkItem, _read_rows, find_split_files, read_benchmark

__all__ = ["read_revsi", "read_vsibench_debiased"]

_REVSI_REQUIRED = ("scene_id", "question_type", "question", "ground_truth")
_REVSI_COLUMNS = frozenset(_REVSI_REQUIRED + ("id", "dataset", "options", "video_path"))


def _revsi_item(row: dict[str, Any], position: int, root: Path, source: Path) -> BenchmarkItem:
    missing = [column for column in _REVSI_REQUIRED if column not in row]
    if missing:
        raise ValueError(f"{source}: row {position} lacks ReVSI columns {missing}")
    num_frames = row.get("num_frames")
    if row.get("video_path"):
        video = root / str(row["video_path"])
    elif num_frames is not None:
        video = root / f"{num_frames}_frame" / f"{row['scene_id']}.mp4"
    else:
        video = root / f"{row['scene_id']}.mp4"
    options = row.get("options")
    return BenchmarkItem(
        id=str(row["id"]) if row.get("id") is not None else f"{num_frames}_frame-{position}",
        dataset=str(row.get("dataset") or "revsi"),
        scene_name=str(row["scene_id"]),
        question_type=str(row["question_type"]),
        question=str(row["question"]),
        ground_truth=str(row["ground_truth"]),
        options=[str(option) for option in options] if options is not None else [],
        video_path=video.resolve(),
        extra={key: value for key, value in row.items() if key not in _REVSI_COLUMNS},
    )


def read_revsi(data_dir: str | Path, split: str = "test") -> list[BenchmarkItem]:
    """The ``split`` rows of a local ReVSI copy (see the module docstring), in file order."""
    data_dir = Path(data_dir)
    items: list[BenchmarkItem] = []
    for path in find_split_files(data_dir, split):
        rows = _read_rows(path)
        items += [_revsi_item(row, position, data_dir, path) for position, row in enumerate(rows)]
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(
                f"{data_dir}: id {item.id!r} appears twice; name one ReVSI config in --split (e.g. 32_frame/test)"
            )
        seen.add(item.id)
    return items


def read_vsibench_debiased(data_dir: str | Path, split: str = "test") -> list[BenchmarkItem]:
    """VSI-Bench-Debiased: ``<split>_debiased.*`` if present, else ``<split>`` rows with ``pruned`` false."""
    data_dir = Path(data_dir)
    debiased_split = f"{split}_debiased"
    try:
        find_split_files(data_dir, debiased_split)
    except FileNotFoundError:
        pass
    else:
        return read_benchmark(data_dir, debiased_split)
    items = read_benchmark(data_dir, split)
    if not any("pruned" in item.extra for item in items):
        raise ValueError(
            f"{data_dir}: no {debiased_split}.parquet/.jsonl and the {split} rows have no 'pruned' column; "
            "VSI-Bench-Debiased needs VSI-Bench's test_debiased.parquet or its test.jsonl with the pruned column"
        )
    return [item for item in items if not item.extra.get("pruned")]
