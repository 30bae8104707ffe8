"""The synthetic base's per-patch labels and scene descriptions, against hand computations."""

import numpy as np

from spatialvlm.data.synthetic import CATEGORIES, Scene, SceneObject
from spatialvlm.experiments.vlm2_base import NUM_PATCH_CLASSES, NUM_ROOM_CLASSES, describe_scene, patch_labels


def test_patch_labels_are_pixel_shares_and_means():
    assert NUM_PATCH_CLASSES == NUM_ROOM_CLASSES + len(CATEGORIES)
    # One 4×4 frame, 2×2 patches. Room pixels: floor (z = 0), wall (z = 1), ceiling (z = 2.5).
    instance = np.array([[[-1, -1, 0, 0], [-1, -1, 0, 1], [-1, -1, -1, -1], [-1, -1, -1, -1]]])
    height = np.array([[[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.7], [2.5, 2.5, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    depth = np.full((1, 4, 4), np.e)
    depth[0, 0, 0] = 1.0
    classes, log_depth, mean_height = patch_labels(instance, depth, height, 2.5, 2, categories=[5, 9])
    assert classes.shape == (1, 4, NUM_PATCH_CLASSES)
    np.testing.assert_allclose(classes.sum(-1), 1.0)
    # Patch 0 (top left): 2 floor, 2 wall pixels. Patch 1: 3 of object 0 (class 5), 1 of object 1 (class 9).
    np.testing.assert_allclose(classes[0, 0, :3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(classes[0, 1, [5, 9]], [0.75, 0.25])
    # Patch 2 (bottom left): 2 ceiling, 2 wall pixels; patch 3: all floor.
    np.testing.assert_allclose(classes[0, 2, :3], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(classes[0, 3, 0], 1.0)
    np.testing.assert_allclose(log_depth[0], [0.75, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(mean_height[0], [0.5, 0.55, 1.75, 0.0])


def test_description_lists_categories_in_order_of_first_appearance_with_counts():
    def box(category):
        return SceneObject(category, np.zeros(3), np.ones(3))

    scene = Scene(np.array([5.0, 5.0, 3.0]), [box("chair"), box("sofa"), box("chair"), box("tv"), box("lamp")])
    visible = np.zeros((4, 5), dtype=int)
    visible[2, 0] = 10  # chair 0 first at frame 2
    visible[3, 2] = 10  # chair 1 at frame 3
    visible[0, 1] = 5  # sofa at frame 0
    visible[1, 3] = 1  # tv at frame 1; the lamp is never seen
    assert describe_scene(scene, visible) == "sofa, tv, 2 chair"
