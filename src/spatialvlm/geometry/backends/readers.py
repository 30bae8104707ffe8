"""One entry point over the readers: ``read_backend_output("vggt", "predictions.npz")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .common import BackendGeometry
from .cut3r import read_cut3r_demo_folder, read_cut3r_output
from .depth_anything3 import read_depth_anything3
from .mapanything import read_mapanything_output
from .pi3 import read_pi3_output
from .vggt import read_vggt_predictions

__all__ = ["OUTPUT_FORMATS", "read_backend_output"]


def _read_cut3r(path: Path, **options: Any) -> BackendGeometry:
    # demo.py writes a folder (depth/, conf/, camera/); a saved `outputs` is one file
    return read_cut3r_demo_folder(path, **options) if path.is_dir() else read_cut3r_output(path, **options)


OUTPUT_FORMATS: dict[str, Callable[..., BackendGeometry]] = {
    "vggt": lambda path, **o: read_vggt_predictions(path, **o),
    "pi3": lambda path, **o: read_pi3_output(path, **o),
    "cut3r": _read_cut3r,
    "depth_anything3": lambda path, **o: read_depth_anything3(path, **o),
    "mapanything": lambda path, **o: read_mapanything_output(path, **o),
}
"""Saved-output formats by backend name, each taking the path and its reader's options."""


def read_backend_output(backend: str, path: str | Path, **options: Any) -> BackendGeometry:
    """Read a 3D model's saved output (file or folder) as a :class:`BackendGeometry`."""
    if backend not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {backend!r}; choose one of {sorted(OUTPUT_FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{backend} output {path} does not exist")
    return OUTPUT_FORMATS[backend](path, **options)
