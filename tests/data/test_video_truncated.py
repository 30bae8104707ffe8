"""A truncated mp4 (index first, data cut) is reported, not sampled silently from what decodes."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest

from spatialvlm.data.video import FewerFramesError, count_video_frames, iter_video_frames, read_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """(whole, truncated, frames): a 40-frame faststart H.264 mp4 and its first 45 % of bytes."""
    import av

    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (40, 32, 48, 3), dtype=np.uint8)
    whole = folder / "whole.mp4"
    with av.open(str(whole), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.45)])
    return whole, cut, frames


def _decodable(path) -> int:
    """Frames a single-threaded decoder gets before the first error (the reference count)."""
    import av

    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(container.streams.video[0]):
                count += 1
        except av.error.FFmpegError:
            pass
    return count


def test_truncated_video_is_an_error_naming_the_counts(videos):
    whole, cut, _ = videos
    assert count_video_frames(whole) == 40
    decodable = _decodable(cut)
    assert 0 < decodable < 40
    for call in (lambda: read_video(cut, 8), lambda: count_video_frames(cut), lambda: list(iter_video_frames(cut))):
        with pytest.raises(FewerFramesError, match=rf"video {re.escape(str(cut))}: decoded {decodable} of 40 frames") as caught:
            call()
        assert caught.value.truncated and caught.value.available == decodable


def test_allow_fewer_samples_the_decodable_frames_with_a_warning(videos):
    whole, cut, _ = videos
    decodable = _decodable(cut)
    with pytest.warns(UserWarning, match=rf"decoded {decodable} of 40 frames"):
        clip = read_video(cut, 8, allow_fewer=True)
    assert clip.total_frames == decodable
    assert clip.indices.tolist() == np.linspace(0, decodable - 1, 8).astype(np.int64).tolist()
    # The decodable frames are the whole file's first ones.
    reference = read_video(whole, None)
    assert np.array_equal(clip.frames, reference.frames[clip.indices])


def test_a_folder_named_like_a_video_is_reported_as_a_folder(tmp_path):
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder, not a video file"):
        read_video(folder)
