"""Geometry sources: where per-frame 3D inputs come from, behind one small interface.

- :class:`PrecomputedGeometrySource`: a folder of ``frame_XXXXX.safetensors`` files (the offline
  pipeline for CUT3R, π³, VGGT, or the synthetic scenes); schema in :mod:`spatialvlm.geometry.frames`.
- :class:`RGBDGeometrySource`: depth maps + camera-to-world poses + intrinsics held in memory; point
  maps by unprojection, no geometry tokens.
- :class:`ScanNetFolderSource`: the same from a ScanNet-style export folder (``depth/<i>.png`` in
  millimetres, ``pose/<i>.txt`` 4×4 camera-to-world, ``intrinsic/intrinsic_depth.txt``).
- anything a user writes that has ``__len__`` and ``frame(index)`` (:class:`GeometrySource`), e.g. a
  wrapper that runs their own 3D model online (worked example in docs/geometry.md).

Indices are *video frame indices*: a frame sampler picks frames of the video and asks the source
for the same indices. ``len(source)`` is one past the largest index the source can serve;
sources that store only some frames list them in ``frame_indices``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from .checks import check_shape
from .frames import FrameGeometry, load_frame_geometry, stack_frames
from .vlm3r_features import VLM3RFeatureSource

__all__ = [
    "GeometrySource",
    "PrecomputedGeometrySource",
    "RGBDGeometrySource",
    "ScanNetFolderSource",
    "load_geometry_source",
    "read_frames",
]

_FRAME_FILE = re.compile(r"^frame_(\d+)\.safetensors$")


@runtime_checkable
class GeometrySource(Protocol):
    """What the rest of the library needs from a 3D source.

    ``frame(index)`` returns the :class:`FrameGeometry` of video frame ``index`` (any subset of its
    fields); ``len(source)`` is one past the largest servable index.
    """

    def __len__(self) -> int: ...

    def frame(self, index: int) -> FrameGeometry: ...


def read_frames(source: GeometrySource, indices: Sequence[int] | None = None, *, progress: bool = False) -> FrameGeometry:
    """Read several frames and stack them: a batched :class:`FrameGeometry` with leading axis T.

    Args:
        source: any :class:`GeometrySource`.
        indices: video frame indices; None reads ``range(len(source))``.
        progress: show a tqdm bar (useful for online sources that run a model per frame).
    """
    from tqdm.auto import tqdm  # the algorithm folders import only torch/numpy at module level

    indices = list(range(len(source))) if indices is None else list(indices)
    iterator = tqdm(indices, desc="geometry frames", disable=not progress)
    return stack_frames([source.frame(int(i)) for i in iterator])


def _indexed_files(folder: Path, pattern: re.Pattern[str] | None, suffix: str | None) -> dict[int, Path]:
    """{frame index: path} for the files in ``folder`` matching ``pattern`` or named ``<int><suffix>``."""
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        if pattern is not None:
            match = pattern.match(path.name)
            index = int(match.group(1)) if match else None
        else:
            index = int(path.stem) if path.suffix == suffix and path.stem.isdigit() else None
        if index is not None:
            if index in found:
                raise ValueError(f"{folder}: two files for frame {index}: {found[index].name}, {path.name}")
            found[index] = path
    return found


def _missing_frame(index: int, available: list[int], where: Path | str) -> KeyError:
    near = sorted(available, key=lambda i: abs(i - index))[:3]
    return KeyError(f"{where} has no frame {index} ({len(available)} frames stored; nearest: {sorted(near)})")


class PrecomputedGeometrySource:
    """Frames written by :func:`spatialvlm.geometry.save_frame_geometry` into one folder per video.

    Args:
        directory: folder holding ``frame_XXXXX.safetensors``.
        max_depth: far cut-off used when a file has depth but no points.
        metric_scale: whether the points are in metres (False for 3D models that give points only
            up to scale, e.g. π³); None reads ``"metric_scale"`` from ``geometry.json`` in the folder
            when there is one, else True (the schema's unit is the metre).
    """

    def __init__(self, directory: str | Path, *, max_depth: float | None = None, metric_scale: bool | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"geometry folder {self.directory} does not exist")
        if metric_scale is None:
            info = self.directory / "geometry.json"
            metric_scale = bool(json.loads(info.read_text()).get("metric_scale", True)) if info.is_file() else True
        self.metric_scale = metric_scale
        self._files = _indexed_files(self.directory, _FRAME_FILE, None)
        if not self._files:
            raise FileNotFoundError(f"{self.directory} holds no frame_XXXXX.safetensors file")
        self.frame_indices: list[int] = sorted(self._files)
        self.max_depth = max_depth

    def __len__(self) -> int:
        return self.frame_indices[-1] + 1

    def frame(self, index: int) -> FrameGeometry:
        if index not in self._files:
            raise _missing_frame(index, self.frame_indices, self.directory)
        return load_frame_geometry(self._files[index]).with_points(max_depth=self.max_depth)

    def __repr__(self) -> str:
        return f"PrecomputedGeometrySource({str(self.directory)!r}, frames={len(self.frame_indices)})"


class RGBDGeometrySource:
    """Depth + pose + intrinsics in memory; point maps by unprojection, no geometry tokens.

    Args:
        depth: (T, H, W) z-depth, in metres after multiplying by ``1 / depth_scale``.
        poses: (T, 4, 4) camera-to-world.
        intrinsics: (3, 3) shared or (T, 3, 3) per frame, for the depth pixels.
        depth_scale: stored units per metre (1000 for millimetre maps, 1 for metres).
        max_depth: far cut-off in metres.
        metric_scale: False when the depth is only relative (e.g. a monocular estimate up to scale).
    """

    def __init__(
        self,
        depth: Tensor,
        poses: Tensor,
        intrinsics: Tensor,
        *,
        depth_scale: float = 1.0,
        max_depth: float | None = None,
        metric_scale: bool = True,
    ) -> None:
        self.metric_scale = metric_scale
        check_shape("depth", depth, ("T", "H", "W"))
        frames = depth.shape[0]
        check_shape("poses", poses, (frames, 4, 4))
        if intrinsics.dim() == 2:
            check_shape("intrinsics", intrinsics, (3, 3))
            intrinsics = intrinsics.expand(frames, 3, 3)
        check_shape("intrinsics", intrinsics, (frames, 3, 3))
        self.depth = depth.float() / depth_scale
        self.poses = poses.float()
        self.intrinsics = intrinsics.float()
        self.max_depth = max_depth

    def __len__(self) -> int:
        return self.depth.shape[0]

    def frame(self, index: int) -> FrameGeometry:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for an RGB-D source of {len(self)} frames")
        frame = FrameGeometry(depth=self.depth[index], pose=self.poses[index], intrinsics=self.intrinsics[index])
        return frame.with_points(max_depth=self.max_depth)


class ScanNetFolderSource:
    """A ScanNet-style export folder (what ScanNet's SensReader writes; ARKitScenes converts to it).

    Layout (frame names are plain integers, zero padding allowed)::

        root/depth/<i>.png                   uint16 depth, ``depth_scale`` units per metre (mm: 1000)
        root/pose/<i>.txt                    4×4 camera-to-world, whitespace separated
        root/intrinsic/intrinsic_depth.txt   4×4 (or 3×3) intrinsics of the depth images

    A pose containing ``inf``/``nan`` (ScanNet marks failed tracking so) makes the frame all-invalid.
    Depth sensors measure metres: ``metric_scale`` is True.

    Args:
        root: the scene folder.
        depth_dir, pose_dir, intrinsics_file: paths relative to ``root``.
        depth_scale: stored units per metre.
        max_depth: far cut-off in metres.
    """

    metric_scale = True

    def __init__(
        self,
        root: str | Path,
        *,
        depth_dir: str = "depth",
        pose_dir: str = "pose",
        intrinsics_file: str = "intrinsic/intrinsic_depth.txt",
        depth_scale: float = 1000.0,
        max_depth: float | None = None,
    ) -> None:
        self.root = Path(root)
        for sub in (depth_dir, pose_dir):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(f"{self.root / sub} does not exist (expected a ScanNet-style folder)")
        self._depth = _indexed_files(self.root / depth_dir, None, ".png")
        self._poses = _indexed_files(self.root / pose_dir, None, ".txt")
        if not self._depth:
            raise FileNotFoundError(f"{self.root / depth_dir} holds no <index>.png depth file")
        without_pose = sorted(set(self._depth) - set(self._poses))
        if without_pose:
            raise FileNotFoundError(f"{self.root / pose_dir}: no pose for frames {without_pose[:5]}")
        matrix = self._read_matrix(self.root / intrinsics_file)
        if matrix.shape not in ((3, 3), (4, 4)):
            raise ValueError(f"{intrinsics_file} must hold a 3×3 or 4×4 matrix, got {tuple(matrix.shape)}")
        self.intrinsics = matrix[:3, :3].contiguous()
        self.frame_indices: list[int] = sorted(self._depth)
        self.depth_scale = depth_scale
        self.max_depth = max_depth

    @staticmethod
    def _read_matrix(path: Path) -> Tensor:
        return torch.from_numpy(np.loadtxt(path, dtype=np.float32, ndmin=2))

    def _read_depth(self, path: Path) -> Tensor:
        from PIL import Image  # only this reader needs Pillow

        with Image.open(path) as image:
            depth = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(depth / self.depth_scale)

    def __len__(self) -> int:
        return self.frame_indices[-1] + 1

    def frame(self, index: int) -> FrameGeometry:
        if index not in self._depth:
            raise _missing_frame(index, self.frame_indices, self.root)
        pose = self._read_matrix(self._poses[index])
        check_shape(f"pose file {self._poses[index]}", pose, (4, 4))
        frame = FrameGeometry(depth=self._read_depth(self._depth[index]), pose=pose, intrinsics=self.intrinsics)
        return frame.with_points(max_depth=self.max_depth)

    def __repr__(self) -> str:
        return f"ScanNetFolderSource({str(self.root)!r}, frames={len(self.frame_indices)})"


def load_geometry_source(spec: "str | Path | GeometrySource", **kwargs) -> GeometrySource:
    """A :class:`GeometrySource` from a folder path, or ``spec`` itself when it already is one.

    A folder with ``frame_XXXXX.safetensors`` files opens as :class:`PrecomputedGeometrySource`; a
    folder with ``depth/`` and ``pose/`` subfolders as :class:`ScanNetFolderSource`; a ``.pt`` file
    as :class:`~spatialvlm.geometry.vlm3r_features.VLM3RFeatureSource` (VLM-3R's precomputed CUT3R
    features; ``total_frames=`` matches its rows to video frames). ``kwargs`` go to that class.
    """
    if isinstance(spec, GeometrySource):
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} apply to folders only, not to a source object")
        return spec
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"expected a folder path or an object with __len__ and frame(index), got {type(spec).__name__}")
    path = Path(spec)
    if path.suffix == ".pt" and path.is_file():
        return VLM3RFeatureSource(path, **kwargs)  # VLM-3R's extract_spatial_features.py output
    if not path.is_dir():
        raise FileNotFoundError(f"geometry source {path} is not a folder (or a VLM-3R .pt feature file)")
    if any(_FRAME_FILE.match(p.name) for p in path.iterdir()):
        return PrecomputedGeometrySource(path, **kwargs)
    if (path / "depth").is_dir() and (path / "pose").is_dir():
        return ScanNetFolderSource(path, **kwargs)
    raise ValueError(
        f"{path} is neither a precomputed geometry folder (frame_XXXXX.safetensors files) "
        f"nor a ScanNet-style folder (depth/ and pose/ subfolders)"
    )
