import numpy as np
import pytest

from spatialvlm.data.video import count_video_frames, iter_video_frames, read_video, uniform_frame_indices, write_video


def _frames(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    # Smooth per-frame colours survive H.264 well, so decoded frames can be identified.
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[..., 0] = (np.arange(count) * 10)[:, None, None]
    frames[..., 1] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :]
    frames[..., 2] = 128
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = _frames(20)
    path = write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=5, crf=0)
    return path, frames


def test_uniform_indices_match_hand_computed_linspace():
    assert uniform_frame_indices(20, 7).tolist() == [0, 3, 6, 9, 12, 15, 19]
    assert uniform_frame_indices(10, 1).tolist() == [0]
    assert uniform_frame_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 3)


def test_round_trip_uniform_sampling(video):
    path, frames = video
    clip = read_video(path, num_frames=7)
    assert clip.total_frames == 20 and clip.fps == pytest.approx(5.0)
    assert clip.indices.tolist() == [0, 3, 6, 9, 12, 15, 19]
    assert clip.frames.shape == (7, 32, 48, 3) and clip.frames.dtype == np.uint8
    error = np.abs(clip.frames.astype(int) - frames[clip.indices].astype(int))
    assert error.mean() < 3
    # Each decoded frame is closest to the source frame of its own index (red channel = 10·index).
    red = clip.frames[..., 0].mean(axis=(1, 2))
    assert np.abs(red - 10 * clip.indices).max() < 3


def test_every_frame_and_iterator_agree(video):
    path, frames = video
    clip = read_video(path, num_frames=None)
    assert len(clip) == 20 == count_video_frames(path)
    streamed = np.stack(list(iter_video_frames(path)))
    np.testing.assert_array_equal(streamed, clip.frames)


def test_too_short_video_is_a_clear_error_unless_allowed(video):
    path, _ = video
    with pytest.raises(ValueError, match="has 20 frames, fewer than the 32 requested"):
        read_video(path, num_frames=32)
    assert len(read_video(path, num_frames=32, allow_fewer=True)) == 20


def test_unreadable_inputs_raise_value_or_file_errors(tmp_path, video):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match="cannot read video"):
        read_video(garbage)
    truncated = tmp_path / "truncated.mp4"
    data = video[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cannot read video"):
        read_video(truncated)


def test_writer_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 of shape"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 32, 48, 3), np.float32))


def test_writer_is_byte_reproducible(tmp_path):
    # Seeded synthetic data must give identical files. A moving pattern at 8 fps encoded with x264's
    # default threads / mbtree / lookahead gave a different file on most of these writes.
    t, y, x = np.meshgrid(np.arange(16), np.arange(56), np.arange(56), indexing="ij")
    frames = np.stack([(x * 4 + t * 3) % 256, (y * 4) % 256, ((x + y) * 2 + t * 5) % 256], -1).astype(np.uint8)
    frames[:, 20:30, 10:25] = (200, 30, 30)
    files = {write_video(tmp_path / f"{i}.mp4", frames, fps=8.0).read_bytes() for i in range(6)}
    assert len(files) == 1
