"""Procedural 3D indoor scenes with exact geometry and VSI-Bench-format questions.

``sample_scene`` → ``sample_camera_path`` → ``render_scene`` (RGB, depth, world points, instance
ids) → ``generate_questions`` (all 8 VSI-Bench types and the VSTI-Bench camera tasks);
``generate_split`` writes a directory that ``spatialvlm eval`` reads.
"""

from spatialvlm.data.synthetic.camera import CameraConfig, look_at, make_intrinsics, sample_camera_path
from spatialvlm.data.synthetic.dataset import (
    DATASET_NAME,
    SynthConfig,
    SyntheticScene,
    first_camera_geometry,
    generate_split,
    make_scene,
    write_scene_files,
)
from spatialvlm.data.synthetic.questions import QUESTION_GENERATORS, QuestionConfig, SceneView, format_number, generate_questions
from spatialvlm.data.synthetic.render import ROOM_ID, RenderedFrames, render_scene
from spatialvlm.data.synthetic.scene import (
    CATEGORIES,
    Category,
    Scene,
    SceneConfig,
    SceneObject,
    box_distance,
    category_by_name,
    point_box_distance,
    sample_scene,
)

__all__ = [
    "CATEGORIES",
    "CameraConfig",
    "Category",
    "DATASET_NAME",
    "QUESTION_GENERATORS",
    "QuestionConfig",
    "ROOM_ID",
    "RenderedFrames",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "SceneView",
    "SynthConfig",
    "SyntheticScene",
    "box_distance",
    "category_by_name",
    "first_camera_geometry",
    "format_number",
    "generate_questions",
    "generate_split",
    "look_at",
    "make_intrinsics",
    "make_scene",
    "point_box_distance",
    "render_scene",
    "sample_camera_path",
    "sample_scene",
    "write_scene_files",
]
