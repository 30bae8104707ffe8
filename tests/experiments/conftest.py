"""Fixtures shared by the experiment tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory):
    """A 2-train / 1-test-scene benchmark (seed 5, 8 frames, 112 px), rendered once for the oracle and lookup tests."""
    from spatialvlm.data.synthetic import SynthConfig, generate_split

    root = tmp_path_factory.mktemp("tiny_bench")
    for split, scenes in (("train", 2), ("test", 1)):
        generate_split(root, SynthConfig(num_scenes=scenes, num_frames=8, image_size=112, seed=5, split=split), show_progress=False)
    return root
