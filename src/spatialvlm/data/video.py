"""Video reading and writing with PyAV (no system ffmpeg, no torchvision).

- ``read_video(path, num_frames=32)``: uniform sampling as LLaVA-Video / lmms-eval evaluate
  VSI-Bench: frame indices ``linspace(0, total - 1, num_frames)`` rounded down.
- ``read_video(path, num_frames=None)`` or ``iter_video_frames(path)``: every frame, for streaming.
- ``write_video(path, frames, fps)``: H.264 mp4 (yuv420p), used by the tests and the synthetic
  scene generator.

Errors are ``FileNotFoundError`` (no such file) or ``ValueError`` naming the file and the problem
(not a video, corrupt, no video stream, fewer frames than requested), never a PyAV traceback. A file
that stops decoding part-way (truncated) is an error, "decoded 69 of 150 frames", unless the caller
allows fewer frames.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from spatialvlm.data.frame_sampling import FrameSampling

__all__ = [
    "VideoClip",
    "read_video",
    "iter_video_frames",
    "count_video_frames",
    "FewerFramesError",
    "uniform_frame_indices",
    "write_video",
]


@dataclass
class VideoClip:
    """Decoded frames of one video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        indices: (T,) int64, each frame's index in the full video (decode order).
        total_frames: number of frames in the video.
        fps: average frame rate from the container (0.0 when unknown).
    """

    frames: np.ndarray
    indices: np.ndarray
    total_frames: int
    fps: float

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def uniform_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread evenly over ``total_frames`` (first and last included).

    Returns:
        (num_frames,) int64, non-decreasing; distinct when ``num_frames <= total_frames``.
    """
    if total_frames < 1 or num_frames < 1:
        raise ValueError(f"need total_frames >= 1 and num_frames >= 1, got {total_frames} and {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames).astype(np.int64)


def _open(path: str | os.PathLike):
    import av

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"video {path} is a folder, not a video file")
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read video {path}: not a readable video file ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"cannot read video {path}: it has no video stream")
    return container


class FewerFramesError(ValueError):
    """A video gives fewer frames than asked for: it is too short, or decoding failed part-way.

    Attributes:
        problem: the message without the fix (callers with other flag names add their own).
        available: frames that decode.
        truncated: True when decoding failed part-way (a truncated or corrupt file).
    """

    def __init__(self, problem: str, available: int, *, truncated: bool) -> None:
        self.problem, self.available, self.truncated = problem, available, truncated
        fix = (
            f"pass allow_fewer=True to use the {available} decodable frames"
            if truncated
            else "ask for fewer frames or pass allow_fewer=True"
        )
        super().__init__(f"{problem}; {fix}")


class _DecodingStopped(Exception):
    """Decoding failed after ``decoded`` frames of the ``declared`` the container lists (0: unknown)."""

    def __init__(self, decoded: int, declared: int, error: Exception) -> None:
        super().__init__(decoded, declared, error)
        self.decoded, self.declared, self.error = decoded, declared, error


def _decode(path: str | os.PathLike) -> Iterator:
    """Yield PyAV frames of the first video stream.

    Raises ``ValueError`` when not even one frame decodes and ``_DecodingStopped`` when decoding
    fails part-way (a truncated or corrupt file).
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        # Frame threading ("AUTO", "FRAME") drops decoder errors: a truncated file then just ends
        # early, without a word. Slice threading reports them (and decodes as fast here).
        stream.thread_type = "SLICE"
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                yield frame
        except av.error.FFmpegError as error:
            if decoded == 0:
                raise ValueError(f"cannot read video {path}: decoding failed ({error})") from error
            raise _DecodingStopped(decoded, stream.frames or 0, error) from error
    finally:
        container.close()


def _truncated(path: str | os.PathLike, stop: _DecodingStopped, allow_fewer: bool) -> int:
    """What a part-way decoding failure means: a warning and the decodable count, or an error."""
    of = f" of {stop.declared}" if stop.declared > stop.decoded else ""
    problem = f"video {path}: decoded {stop.decoded}{of} frames, then decoding failed (truncated or corrupt file)"
    if not allow_fewer:
        raise FewerFramesError(problem, stop.decoded, truncated=True) from stop.error
    warnings.warn(f"{problem}; using the {stop.decoded} decodable frames", stacklevel=3)
    return stop.decoded


def count_video_frames(path: str | os.PathLike, allow_fewer: bool = False) -> int:
    """Number of decodable frames (decodes the video once: container headers are often wrong).

    A file that stops decoding part-way raises :class:`FewerFramesError` ("decoded 69 of 150
    frames"), or with ``allow_fewer`` warns and counts the frames that decode.
    """
    decoded = 0
    try:
        for _ in _decode(path):
            decoded += 1
    except _DecodingStopped as stop:
        return _truncated(path, stop, allow_fewer)
    return decoded


def iter_video_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Every frame in order as (H, W, 3) uint8 RGB, decoded lazily (for streaming)."""
    try:
        for frame in _decode(path):
            yield frame.to_ndarray(format="rgb24")
    except _DecodingStopped as stop:
        _truncated(path, stop, allow_fewer=False)


def read_video(
    path: str | os.PathLike,
    num_frames: int | None = 32,
    allow_fewer: bool = False,
    sampling: FrameSampling | str | None = None,
) -> VideoClip:
    """Decode a video, sampling ``num_frames`` frames uniformly (or every frame when None).

    Args:
        path: video file (mp4, avi, mkv, webm, ...).
        num_frames: frames to sample; None reads every frame.
        allow_fewer: when the video has fewer than ``num_frames`` frames, return all of them instead
            of raising; a file that stops decoding part-way (truncated) gives its decodable frames,
            with a warning, instead of raising.
        sampling: a :class:`spatialvlm.data.frame_sampling.FrameSampling` policy (or its text,
            ``"32"``, ``"all"``, ``"1fps:64"``) used instead of ``num_frames``.

    Returns:
        ``VideoClip``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a video, corrupt, no frames; :class:`FewerFramesError` (a ValueError) for
            fewer frames than ``num_frames`` or a truncated file, unless ``allow_fewer``.
    """
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 or None, got {num_frames}")
    total = count_video_frames(path, allow_fewer=allow_fewer)
    if total == 0:
        raise ValueError(f"cannot read video {path}: it has no decodable frames")
    if sampling is not None:
        from spatialvlm.data.frame_sampling import sample_frame_indices

        wanted = sample_frame_indices(total, sampling, _average_fps(path), allow_fewer=allow_fewer)
    elif num_frames is None or (allow_fewer and total < num_frames):
        wanted = np.arange(total, dtype=np.int64)
    elif total < num_frames:
        raise FewerFramesError(
            f"video {path} has {total} frame{'s' if total != 1 else ''}, fewer than the {num_frames} requested",
            total,
            truncated=False,
        )
    else:
        wanted = uniform_frame_indices(total, num_frames)
    keep = set(wanted.tolist())
    frames: dict[int, np.ndarray] = {}
    for index, frame in enumerate(_decode(path)):
        if index in keep:
            frames[index] = frame.to_ndarray(format="rgb24")
        if index >= wanted[-1]:
            break
    if len(frames) != len(keep):
        raise ValueError(f"cannot read video {path}: it ended early while decoding (corrupt file?)")
    return VideoClip(
        frames=np.stack([frames[i] for i in wanted.tolist()]),
        indices=wanted,
        total_frames=total,
        fps=_average_fps(path),
    )


def _average_fps(path: str | os.PathLike) -> float:
    container = _open(path)
    try:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else 0.0
    finally:
        container.close()


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 10.0,
    crf: int = 18,
) -> Path:
    """Encode RGB frames to an H.264 mp4.

    Args:
        path: output file; parent directories are created.
        frames: (T, H, W, 3) uint8 RGB with even H and W (yuv420p needs even sides).
        fps: frame rate.
        crf: x264 constant rate factor (0 = lossless luma, 18 = visually lossless, 23 = default).

    Returns:
        The written path.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 1:
        raise ValueError(
            f"frames must be uint8 of shape (T, H, W, 3) with T >= 1; got dtype {frames.dtype} and "
            f"shape {tuple(frames.shape)}"
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frames must have even height and width for H.264 yuv420p; got {height}×{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        # With its threads, macroblock-tree rate control and lookahead, this x264 encodes the same
        # frames to different bytes (decoded pixels off by up to ~40 levels) from run to run, even in
        # one process; without them seeded synthetic data is byte-reproducible (tested).
        stream.options = {"crf": str(crf), "x264-params": "threads=1:lookahead-threads=1:no-mbtree=1:rc-lookahead=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
