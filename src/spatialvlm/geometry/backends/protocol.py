"""The backend protocol: run a 3D foundation model the user installed on the frames ``ask`` samples.

A backend is any object with a ``name``, an ``install_hint``, ``load(weights, device)`` and
``reconstruct(frames) -> BackendGeometry``. Register a class under a name and
``spatialvlm geometry extract --backend NAME`` can run it::

    from spatialvlm.geometry.backends import BackendGeometry, register_backend

    @register_backend("mydepth")
    class MyDepthBackend:
        name = "mydepth"
        install_hint = "pip install mydepth"

        def load(self, weights, device):
            mydepth = import_backend_module("mydepth", self)   # lazy: a clear error when missing
            self.model = mydepth.Model.from_pretrained(weights).to(device).eval()

        def reconstruct(self, frames):                          # (T, H, W, 3) uint8 RGB
            out = self.model(frames)                            # the model's own call
            return read_mydepth_output(out)                     # -> BackendGeometry

Models are imported inside ``load`` (never at import time), so the library needs none of them.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .common import BackendGeometry

__all__ = [
    "BackendNotInstalledError",
    "GeometryBackend",
    "available_backends",
    "get_backend",
    "import_backend_module",
    "register_backend",
    "saved_frame_images",
]


class BackendNotInstalledError(ImportError):
    """The 3D model's package is not importable here; the message says how to install it."""


@runtime_checkable
class GeometryBackend(Protocol):
    """A 3D foundation model behind one interface.

    Attributes:
        name: the ``--backend`` name.
        install_hint: the command that installs the model's package.
    """

    name: str
    install_hint: str

    def load(self, weights: str | Path, device: str) -> None:
        """Import the package and load the weights (a local file or folder)."""

    def reconstruct(self, frames: np.ndarray) -> BackendGeometry:
        """Geometry of ``frames`` (T, H, W, 3) uint8 RGB, one row per frame, in order."""


_REGISTRY: dict[str, Callable[[], GeometryBackend]] = {}


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator adding a backend under ``name`` (a later registration replaces it)."""

    def add(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return add


def available_backends() -> list[str]:
    """Names ``get_backend`` accepts."""
    return sorted(_REGISTRY)


def get_backend(name: str, **options: object) -> GeometryBackend:
    """A fresh backend object by name (nothing imported or loaded yet); ``options`` go to its
    constructor (e.g. ``points_from="point_head"`` for VGGT, ``variant="pi3"`` for π³)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown geometry backend {name!r}; choose one of {available_backends()}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as error:
        raise ValueError(f"the {name} backend does not take the options {sorted(options)} ({error})") from error


def import_backend_module(module: str, backend: GeometryBackend) -> object:
    """``importlib.import_module(module)``, or an error naming the backend and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BackendNotInstalledError(
            f"the {backend.name} backend needs the Python module {module!r}, which cannot be imported here "
            f"({error}); install it with: {backend.install_hint}"
        ) from error


class saved_frame_images:
    """Context manager: the frames written as ``000000.png``, ``000001.png``, ... in a temporary
    folder, so a backend can hand them to the model project's own image loader (its resizing and
    normalisation, exactly). Yields ``(folder, paths)``."""

    def __init__(self, frames: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        self.frames = frames
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> tuple[Path, list[str]]:
        from PIL import Image

        self._tmp = tempfile.TemporaryDirectory(prefix="spatialvlm_frames_")
        folder = Path(self._tmp.name)
        paths = []
        for row, frame in enumerate(self.frames):
            path = folder / f"{row:06d}.png"
            Image.fromarray(frame).save(path)
            paths.append(str(path))
        return folder, paths

    def __exit__(self, *exc) -> None:
        assert self._tmp is not None
        self._tmp.cleanup()
