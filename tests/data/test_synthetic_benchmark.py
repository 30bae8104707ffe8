"""Properties of generated splits that keep the benchmark free of shortcuts (docs/synthetic.md)."""

from collections import Counter

import numpy as np
import pytest

from spatialvlm.data.synthetic import SynthConfig, category_by_name, make_scene

NUM_SCENES = 12


@pytest.fixture(scope="module")
def scenes():
    config = SynthConfig(num_frames=32, image_size=48, seed=11, split="train")
    return [make_scene(config, index) for index in range(NUM_SCENES)]


def test_sizes_vary_per_instance_beyond_the_category_range(scenes):
    outside, total, spreads = 0, 0, {}
    for item in scenes:
        for obj in item.scene.objects:
            category = category_by_name(obj.category)
            longest = obj.size.max()
            total += 1
            outside += not (max(category.size_min) <= longest <= max(category.size_max))
            spreads.setdefault(obj.category, []).append(longest)
    assert outside / total > 0.4
    # Within one category the longest side spans well over the old ±15 % ranges.
    ratios = [max(v) / min(v) for v in spreads.values() if len(v) >= 5]
    assert ratios and np.median(ratios) > 1.8


def test_counts_reach_eight_and_no_frame_shows_every_counted_instance(scenes):
    placed = Counter()
    asked = []
    for item in scenes:
        counts = item.scene.counts()
        placed.update(counts.values())
        for row in item.questions:
            if row["question_type"] != "object_counting":
                continue
            instances = row["objects"]
            assert int(row["ground_truth"]) == len(instances) == counts[item.scene.objects[instances[0]].category]
            asked.append(len(instances))
            if len(instances) > 1:
                # Independently, from the rendered instance maps.
                in_view = np.stack([(item.frames.instance == i).any(axis=(1, 2)) for i in instances], 1)
                assert not in_view.all(1).any()
    assert max(placed) >= 7
    assert len(asked) >= NUM_SCENES - 1 and np.mean(np.array(asked) >= 2) > 0.8
    assert len(set(asked)) >= 4  # not a handful of values a prior could learn


def test_room_size_and_distance_are_asked_as_often_as_every_other_type(scenes):
    per_type = Counter(row["question_type"] for item in scenes for row in item.questions)
    assert per_type["room_size_estimation"] == NUM_SCENES
    assert per_type["object_abs_distance"] >= NUM_SCENES - 1
    assert max(per_type.values()) == NUM_SCENES  # one question of a type per scene at most


def test_objects_leave_the_view(scenes):
    fractions = []
    for item in scenes:
        visible = item.frames.visible_pixels > 0
        seen = visible.any(0)
        assert (~visible[:, seen]).any(0).all()  # every object seen is out of view in some frame
        fractions.extend(visible.mean(0)[seen])
    assert np.mean(fractions) < 0.45


def test_long_clips_are_written_and_read(tmp_path):
    from spatialvlm.data.synthetic import generate_split
    from spatialvlm.data.video import count_video_frames, read_video

    config = SynthConfig(num_scenes=1, num_frames=40, image_size=32, seed=5)
    generate_split(tmp_path, config, show_progress=False)
    video = tmp_path / "synthetic" / "test_00000.mp4"
    assert count_video_frames(video) == 40
    assert len(list((tmp_path / "synthetic" / "test_00000_geometry").glob("frame_*.safetensors"))) == 40
    clip = read_video(video, num_frames=32)
    assert clip.frames.shape[0] == 32 and clip.indices[0] == 0  # the geometry frame is always sampled
