"""The frame sampling policies (uniform N, fps with a cap, all), against the field's formulas written
out here, and through read_video on a real mp4."""

import numpy as np
import pytest

from spatialvlm.data.frame_sampling import FrameSampling, sample_frame_indices
from spatialvlm.data.video import read_video, write_video


def lmms_eval_uniform(total, num_frames):
    # lmms-eval vsibench: num_frames = min(num_frames, total); np.linspace(0, total - 1, num_frames, dtype=int)
    num_frames = min(num_frames, total)
    return np.linspace(0, total - 1, num_frames, dtype=int)


def llava_video_fps(total, video_fps, fps, max_frames):
    # lmms-eval models/simple/llava_vid.py load_video, written out as a loop
    step = round(video_fps / fps)
    indices = list(range(0, total, step))
    if len(indices) > max_frames:
        indices = np.linspace(0, total - 1, max_frames, dtype=int).tolist()
    return indices


@pytest.mark.parametrize("total", [1, 7, 16, 100, 1001])
@pytest.mark.parametrize("num_frames", [8, 16, 32, 64])
def test_uniform_matches_lmms_eval(total, num_frames):
    assert sample_frame_indices(total, num_frames).tolist() == lmms_eval_uniform(total, num_frames).tolist()
    if total < num_frames:
        with pytest.raises(ValueError, match="fewer than"):
            sample_frame_indices(total, num_frames, allow_fewer=False)


@pytest.mark.parametrize("total,video_fps", [(300, 30.0), (3000, 30.0), (250, 25.0), (90, 29.97), (40, 10.0)])
def test_fps_with_cap_matches_llava_video(total, video_fps):
    got = sample_frame_indices(total, "1fps:64", video_fps)
    assert got.tolist() == llava_video_fps(total, video_fps, 1.0, 64)
    assert len(got) <= 64
    # 10 s at 30 fps, 1 fps: one frame a second.
    assert sample_frame_indices(300, "1fps:64", 30.0).tolist() == list(range(0, 300, 30))
    # 100 s: 100 frames > cap 64 → 64 uniform over the whole video.
    assert len(sample_frame_indices(3000, "1fps:64", 30.0)) == 64


def test_parse_describe_and_errors():
    assert FrameSampling.parse("32") == FrameSampling(num_frames=32)
    assert FrameSampling.parse("all") == FrameSampling(num_frames=None)
    assert FrameSampling.parse("0.5fps:32") == FrameSampling(num_frames=None, fps=0.5, max_frames=32)
    for text in ("32", "all", "1fps:64", "0.5fps:32"):
        assert FrameSampling.parse(text).describe() == text
    assert FrameSampling.parse("2fps").max_frames == 64
    assert sample_frame_indices(5, "all").tolist() == [0, 1, 2, 3, 4]
    # A video faster than twice the target rate still advances (step ≥ 1).
    assert sample_frame_indices(4, "10fps", 5.0).tolist() == [0, 1, 2, 3]
    for bad in ("-1", "0", "fps", "1fps:0", "abc"):
        with pytest.raises(ValueError, match="frame sampling"):
            FrameSampling.parse(bad)
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(100, "1fps", 0.0)


def test_read_video_applies_the_policy(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=10.0, crf=0)
    uniform = read_video(path, sampling="8")
    assert uniform.indices.tolist() == lmms_eval_uniform(40, 8).tolist()
    every = read_video(path, num_frames=None)
    assert np.array_equal(uniform.frames, every.frames[uniform.indices])
    by_fps = read_video(path, sampling="2fps:64")  # 4 s at 10 fps: every 5th frame
    assert by_fps.indices.tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    assert np.array_equal(by_fps.frames, every.frames[by_fps.indices])


def test_training_arguments_take_the_same_policies():
    from spatialvlm.train.arguments import DataArguments

    assert DataArguments(frame_sampling="1fps:16").frame_sampling == "1fps:16"
    with pytest.raises(ValueError, match="frame sampling"):
        DataArguments(frame_sampling="sometimes")
    with pytest.raises(ValueError, match="varying frame count"):
        DataArguments(frame_sampling="all", memory_mode="stream")
    with pytest.raises(ValueError, match="must divide"):
        DataArguments(frame_sampling="12", memory_mode="stream", stream_chunk_frames=8)
