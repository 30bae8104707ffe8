"""Questions with exact answers: all eight VSI-Bench types and the VSTI-Bench camera tasks.

Question wording follows the VSI-Bench / VSTI-Bench templates (as published in VLM-3R's data
pipeline); answers are computed from the scene's boxes and the camera poses, never from pixels,
except *visibility*: an object is "seen" in a frame when it covers at least
``min_visible_fraction`` of the frame's pixels there. Only seen objects are asked about; objects
named by category alone ("the sofa") are the single instance of their category in the room.

Conventions (documented in docs/synthetic.md):

- Distances between objects and from the camera are between closest points of the boxes.
- Directions are judged on the floor plane from box centres; left is counter-clockwise (z up).
- Candidates too close to a decision boundary are skipped (``QuestionConfig`` margins), so every
  multiple-choice answer is unambiguous.
- Numbers are written with at most two decimals (sizes as whole centimetres, counts as integers).

Every row carries ``objects`` (object indices) and, for VSTI tasks, ``frame_indices``, so tests
and analyses can recompute the answer independently.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spatialvlm.data.synthetic.scene import Scene, box_distance, point_box_distance

__all__ = ["QuestionConfig", "SceneView", "generate_questions", "QUESTION_GENERATORS", "format_number"]

LETTERS = "ABCD"


@dataclass
class QuestionConfig:
    """Knobs of question generation.

    Attributes:
        questions_per_type: most questions of each type per scene. The default 1 gives room size
            (one room per scene) the same weight as every other type; grow a split by scenes.
        counting_needs_several_views: ask to count a category with several instances only when no
            single frame shows a pixel of every instance (the answer needs memory across frames).
        min_visible_fraction: share of a frame's pixels an object needs there to count as seen
            (0.002 is 18 pixels at 96 px).
        direction_margin_deg: closest a direction may be to a decision boundary, degrees.
        distance_margin: closest-vs-runner-up gap for "which is closest" questions, metres.
        min_distance: smallest distance / displacement asked about, metres.
        position_margin: smallest near/far, left/right, up/down separation in the camera frame, m.
        appearance_gap: frames between consecutive first appearances in an order question.
        displacement_frames: (min, max) frame gap of camera displacement questions (VLM-3R: 5, 30).
        movement_frames: (min, max) frame gap of camera movement direction questions.
        movement_dominance: the main horizontal motion component must exceed the other by this factor.
    """

    questions_per_type: int = 1
    counting_needs_several_views: bool = True
    min_visible_fraction: float = 0.002
    direction_margin_deg: float = 15.0
    distance_margin: float = 0.15
    min_distance: float = 0.2
    position_margin: float = 0.2
    appearance_gap: int = 2
    displacement_frames: tuple[int, int] = (5, 30)
    movement_frames: tuple[int, int] = (3, 12)
    movement_dominance: float = 2.0


def format_number(value: float) -> str:
    """At most two decimals, no trailing zeros: 2.5 → "2.5", 6.0 → "6", 1.234 → "1.23"."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass
class SceneView:
    """A scene as filmed: what question generators read.

    Attributes:
        scene: the room and objects.
        poses: (T, 4, 4) camera-to-world (OpenCV axes).
        visible_pixels: (T, N) rendered pixels of each object per frame.
        image_pixels: pixels per frame (H·W).
    """

    scene: Scene
    poses: np.ndarray
    visible_pixels: np.ndarray
    image_pixels: int

    @property
    def num_frames(self) -> int:
        return len(self.poses)

    def seen(self, min_fraction: float) -> np.ndarray:
        """(T, N) bool: the object covers at least ``min_fraction`` of the frame."""
        return self.visible_pixels >= max(1.0, min_fraction * self.image_pixels)

    def camera_positions(self) -> np.ndarray:
        """(T, 3) camera centres in the world."""
        return self.poses[:, :3, 3]

    def camera_frame_points(self, frame: int, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) in the camera frame of ``frame`` (x right, y down, z forward)."""
        rotation, position = self.poses[frame, :3, :3], self.poses[frame, :3, 3]
        return (points - position) @ rotation


def _frame(index: int, total: int, with_total: bool = True) -> str:
    return f"frame {index + 1} of {total}" if with_total else f"frame {index + 1}"


def _multiple_choice(rng: np.random.Generator, answer: str, distractors: Sequence[str]) -> tuple[list[str], str]:
    """Shuffled options "A. text" and the gold letter."""
    texts = [answer, *distractors]
    order = rng.permutation(len(texts))
    options = [f"{LETTERS[i]}. {texts[j]}" for i, j in enumerate(order)]
    return options, LETTERS[int(np.argmax(order == 0))]


def _signed_angle(heading: np.ndarray, direction: np.ndarray) -> float:
    """Counter-clockwise angle from ``heading`` to ``direction`` on the floor plane, degrees in (-180, 180]."""
    cross = heading[0] * direction[1] - heading[1] * direction[0]
    dot = heading[0] * direction[0] + heading[1] * direction[1]
    return float(np.degrees(np.arctan2(cross, dot)))


class _Context:
    """Facts about a filmed scene shared by the generators."""

    def __init__(self, view: SceneView, config: QuestionConfig) -> None:
        self.view, self.config = view, config
        self.scene = view.scene
        self.frames = view.num_frames
        self.seen = view.seen(config.min_visible_fraction)
        self.lower, self.upper = self.scene.boxes()
        self.centres = np.array([o.center for o in self.scene.objects]).reshape(-1, 3)
        counts = self.scene.counts()
        seen_any = self.seen.any(0)
        self.seen_objects = [i for i in range(len(self.scene.objects)) if seen_any[i]]
        # Named by category alone: the only instance of its category, and seen.
        self.unique = [i for i in self.seen_objects if counts[self.scene.objects[i].category] == 1]
        self.categories = sorted({self.scene.objects[i].category for i in self.seen_objects})
        self.instances = {c: [i for i, o in enumerate(self.scene.objects) if o.category == c] for c in counts}

    def name(self, index: int) -> str:
        return self.scene.objects[index].category

    def unique_in_frame(self, frame: int) -> list[int]:
        return [i for i in self.unique if self.seen[frame, i]]


Row = dict[str, Any]


def _row(question_type: str, question: str, ground_truth: str, options: list[str] | None = None, **extra: Any) -> Row:
    return {"question_type": question_type, "question": question, "ground_truth": ground_truth, "options": options or [], **extra}


def _object_counting(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    # Categories with several instances first: they are what makes counting need memory.
    categories = sorted(rng.permutation(ctx.categories), key=lambda c: len(ctx.instances[str(c)]) < 2)
    for category in categories:
        instances = ctx.instances[str(category)]
        if not all(ctx.seen[:, i].any() for i in instances):
            continue
        in_one_frame = bool((ctx.view.visible_pixels[:, instances] > 0).all(1).any())
        if len(instances) == 1 or not (ctx.config.counting_needs_several_views and in_one_frame):
            yield _row("object_counting", f"How many {category}(s) are in this room?", str(len(instances)), objects=instances)


def _object_abs_distance(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    for a, b in rng.permutation(list(itertools.combinations(ctx.unique, 2)) or np.zeros((0, 2), int)):
        distance = float(box_distance(ctx.lower[a], ctx.upper[a], ctx.lower[b], ctx.upper[b]))
        if distance >= ctx.config.min_distance:
            question = (
                "Measuring from the closest point of each object, what is the direct distance between the "
                f"{ctx.name(a)} and the {ctx.name(b)} (in meters)?"
            )
            yield (_row("object_abs_distance", question, format_number(distance), objects=[int(a), int(b)]))


def _object_size_estimation(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    for index in rng.permutation(ctx.unique):
        index = int(index)
        longest = float(ctx.scene.objects[index].size.max())
        question = (
            "What is the length of the longest dimension (length, width, or height) of the "
            f"{ctx.name(index)}, measured in centimeters?"
        )
        yield (_row("object_size_estimation", question, str(int(round(longest * 100))), objects=[int(index)]))


def _room_size_estimation(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    question = (
        "What is the size of this room (in square meters)? \n"
        "If multiple rooms are shown, estimate the size of the combined space."
    )
    yield _row("room_size_estimation", question, format_number(ctx.scene.floor_area), objects=[])


def _object_rel_distance(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    for target in rng.permutation(ctx.unique):
        others = [c for c in ctx.categories if c != ctx.name(target)]
        if len(others) < 4:
            continue
        choices = [str(c) for c in rng.choice(others, size=4, replace=False)]
        distances = [
            min(float(box_distance(ctx.lower[target], ctx.upper[target], ctx.lower[i], ctx.upper[i])) for i in ctx.instances[c])
            for c in choices
        ]
        order = np.argsort(distances)
        if distances[order[1]] - distances[order[0]] < ctx.config.distance_margin:
            continue
        answer = choices[order[0]]
        options, letter = _multiple_choice(rng, answer, [c for c in choices if c != answer])
        listed = ", ".join(option[3:] for option in options)
        question = (
            f"Measuring from the closest point of each object, which of these objects ({listed}) is the closest to the "
            f"{ctx.name(target)}?\nIf there are multiple instances of an object category, measure to the closest."
        )
        yield (_row("object_rel_distance", question, letter, options, objects=[int(target)], answer_text=answer))


def _direction_candidates(ctx: _Context, rng: np.random.Generator) -> list[tuple[int, int, int, float]]:
    """(standing, facing, query, signed angle from facing to query in degrees) for distinct unique objects."""
    triples = list(itertools.permutations(ctx.unique, 3))
    candidates = []
    for index in rng.permutation(len(triples)) if triples else []:
        stand, face, query = triples[index]
        heading = ctx.centres[face, :2] - ctx.centres[stand, :2]
        towards = ctx.centres[query, :2] - ctx.centres[stand, :2]
        if min(np.linalg.norm(heading), np.linalg.norm(towards)) < 0.5:
            continue
        candidates.append((stand, face, query, _signed_angle(heading, towards)))
    return candidates


def _direction_question(ctx: _Context, stand: int, face: int, query: int, tail: str) -> str:
    return f"If I am standing by the {ctx.name(stand)} and facing the {ctx.name(face)}, is the {ctx.name(query)} {tail}"


def _object_rel_direction(level: str) -> Callable[[_Context, np.random.Generator], Iterator[Row]]:
    def generate(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
        margin = ctx.config.direction_margin_deg
        for stand, face, query, angle in _direction_candidates(ctx, rng):
            size = abs(angle)
            if level == "hard":
                # Quadrant boundaries at 0, ±90, 180 degrees.
                if min(size, abs(size - 90), 180 - size) < margin:
                    continue
                answer = ("front-" if size < 90 else "back-") + ("left" if angle > 0 else "right")
                labels = ["front-left", "front-right", "back-left", "back-right"]
                tail = (
                    "to my front-left, front-right, back-left, or back-right?\nThe directions refer to the quadrants "
                    "of a Cartesian plane (if I am standing at the origin and facing along the positive y-axis)."
                )
            elif level == "medium":
                # Back from 135 degrees on; left/right need to be clear of straight ahead.
                if size < margin or abs(size - 135) < margin:
                    continue
                answer = "back" if size >= 135 else ("left" if angle > 0 else "right")
                labels = ["left", "right", "back"]
                tail = (
                    "to my left, right, or back?\nAn object is to my back if I would have to turn at least 135 degrees "
                    "in order to face it."
                )
            else:
                if size < margin or 180 - size < margin:
                    continue
                answer = "left" if angle > 0 else "right"
                labels = ["left", "right"]
                tail = f"to the left or the right of the {ctx.name(face)}?"
            options, letter = _multiple_choice(rng, answer, [label for label in labels if label != answer])
            question = _direction_question(ctx, stand, face, query, tail)
            yield (
                _row(f"object_rel_direction_{level}", question, letter, options, objects=[int(stand), int(face), int(query)], answer_text=answer)
            )

    return generate


def _turn(angle: float) -> str | None:
    """The turn that faces a direction ``angle`` degrees counter-clockwise away; None when unclear."""
    size = abs(angle)
    if size >= 150:
        return "Turn Back"
    if 45 <= size <= 120:
        return "Turn Left" if angle > 0 else "Turn Right"
    return None


def _route_planning(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    quadruples = list(itertools.permutations(ctx.unique, 4))
    turns_all = ["Turn Left", "Turn Right", "Turn Back"]
    for index in rng.permutation(len(quadruples)) if quadruples else []:
        start, facing, waypoint, destination = quadruples[index]
        legs = [ctx.centres[i, :2] for i in (start, facing, waypoint, destination)]
        heading0, leg1, leg2 = legs[1] - legs[0], legs[2] - legs[0], legs[3] - legs[2]
        if min(np.linalg.norm(heading0), np.linalg.norm(leg1), np.linalg.norm(leg2)) < 0.5:
            continue
        turns = [_turn(_signed_angle(heading0, leg1)), _turn(_signed_angle(leg1, leg2))]
        if None in turns:
            continue
        answer = ", ".join(turns)
        others = [", ".join(pair) for pair in itertools.product(turns_all, repeat=2) if ", ".join(pair) != answer]
        distractors = [others[i] for i in rng.choice(len(others), size=3, replace=False)]
        options, letter = _multiple_choice(rng, answer, distractors)
        question = (
            f"You are a robot beginning at the {ctx.name(start)} facing the {ctx.name(facing)}. You want to navigate to "
            f"the {ctx.name(destination)}. You will perform the following actions (Note: for each [please fill in], "
            "choose either 'turn back,' 'turn left,' or 'turn right.'): 1. [please fill in] 2. Go forward until the "
            f"{ctx.name(waypoint)} 3. [please fill in] 4. Go forward until the {ctx.name(destination)}. "
            "You have reached the final destination."
        )
        yield (
            _row("route_planning", question, letter, options, objects=[int(start), int(facing), int(waypoint), int(destination)], answer_text=answer)
        )


def _obj_appearance_order(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    first = {c: min(int(np.argmax(ctx.seen[:, i])) for i in ctx.instances[c] if ctx.seen[:, i].any()) for c in ctx.categories}
    combos = list(itertools.combinations(ctx.categories, 4))
    for index in rng.permutation(len(combos)) if combos else []:
        chosen = sorted(combos[index], key=lambda c: first[c])
        times = [first[c] for c in chosen]
        if min(np.diff(times)) < ctx.config.appearance_gap:
            continue
        answer = ", ".join(chosen)
        others = [", ".join(p) for p in itertools.permutations(chosen) if ", ".join(p) != answer]
        distractors = [others[i] for i in rng.choice(len(others), size=3, replace=False)]
        options, letter = _multiple_choice(rng, answer, distractors)
        listed = ", ".join(chosen[i] for i in rng.permutation(4))
        question = f"What will be the first-time appearance order of the following categories in the video: {listed}?"
        objects = [i for c in chosen for i in ctx.instances[c]]
        yield (_row("obj_appearance_order", question, letter, options, objects=objects, answer_text=answer))


# --- VSTI-Bench camera tasks --------------------------------------------------------------------


def _camera_obj_abs_dist(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    cameras = ctx.view.camera_positions()
    for frame in rng.permutation(ctx.frames):
        visible = ctx.unique_in_frame(int(frame))
        if not visible:
            continue
        index = int(rng.choice(visible))
        distance = float(point_box_distance(cameras[frame], ctx.lower[index], ctx.upper[index]))
        if distance < ctx.config.min_distance:
            continue
        question = (
            "What is the approximate distance (in meters) between the camera (or the person filming) and the nearest "
            f"point of the {ctx.name(index)} in {_frame(int(frame), ctx.frames)}?"
        )
        yield (_row("camera_obj_abs_dist", question, format_number(distance), objects=[index], frame_indices=[int(frame)]))


def _frame_pairs(ctx: _Context, rng: np.random.Generator, gap: tuple[int, int]) -> list[tuple[int, int]]:
    pairs = [(i, j) for i in range(ctx.frames) for j in range(i + gap[0], min(ctx.frames, i + gap[1] + 1))]
    return [pairs[k] for k in rng.permutation(len(pairs))] if pairs else []


def _camera_displacement(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    cameras = ctx.view.camera_positions()
    for start, end in _frame_pairs(ctx, rng, ctx.config.displacement_frames):
        distance = float(np.linalg.norm(cameras[end] - cameras[start]))
        if distance < ctx.config.min_distance:
            continue
        question = (
            f"Approximately how far (in meters) did the camera move between {_frame(start, ctx.frames, False)} and "
            f"{_frame(end, ctx.frames)}?"
        )
        yield (_row("camera_displacement", question, format_number(distance), objects=[], frame_indices=[start, end]))


def _camera_obj_dist_change(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    cameras = ctx.view.camera_positions()
    for start, end in _frame_pairs(ctx, rng, ctx.config.displacement_frames):
        visible = [i for i in ctx.unique if ctx.seen[start, i] and ctx.seen[end, i]]
        if not visible:
            continue
        index = int(rng.choice(visible))
        before, after = (float(point_box_distance(cameras[f], ctx.lower[index], ctx.upper[index])) for f in (start, end))
        change = abs(after - before)
        if change < ctx.config.min_distance:
            continue
        question = (
            "By how much (in meters) did the distance between the camera and the nearest point of the "
            f"{ctx.name(index)} change between {_frame(start, ctx.frames, False)} and {_frame(end, ctx.frames)}?"
        )
        yield (_row("camera_obj_dist_change", question, format_number(change), objects=[index], frame_indices=[start, end]))


def _obj_obj_relative_pos(axis: str) -> Callable[[_Context, np.random.Generator], Iterator[Row]]:
    # nf: camera z (depth), lr: camera x (right), ud: camera y (down).
    column = {"nf": 2, "lr": 0, "ud": 1}[axis]
    labels = {"nf": ("Near", "Far"), "lr": ("Left", "Right"), "ud": ("Up", "Down")}[axis]

    def generate(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
        for frame in rng.permutation(ctx.frames):
            frame = int(frame)
            visible = ctx.unique_in_frame(frame)
            if len(visible) < 2:
                continue
            a, b = (int(i) for i in rng.choice(visible, size=2, replace=False))
            local = ctx.view.camera_frame_points(frame, ctx.centres[[a, b]])
            difference = local[0, column] - local[1, column]
            if abs(difference) < ctx.config.position_margin:
                continue
            answer = labels[0] if difference < 0 else labels[1]
            options = [f"A. {labels[0]}", f"B. {labels[1]}"]
            where = _frame(frame, ctx.frames)
            if axis == "nf":
                question = f"In {where}, relative to the camera, is the {ctx.name(a)} [Near/Far] compared to the {ctx.name(b)}?"
            else:
                question = f"In {where}, relative to the {ctx.name(b)}, is the {ctx.name(a)} to the [{labels[0]}/{labels[1]}]?"
            letter = "A" if answer == labels[0] else "B"
            yield (
                _row(f"obj_obj_relative_pos_{axis}", question, letter, options, mc_answer=letter, objects=[a, b], frame_indices=[frame], answer_text=answer)
            )

    return generate


def _camera_obj_rel_dist(version: int) -> Callable[[_Context, np.random.Generator], Iterator[Row]]:
    num_choices = {1: 4, 2: 3, 3: 2}[version]

    def generate(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
        cameras = ctx.view.camera_positions()
        for frame in rng.permutation(ctx.frames):
            frame = int(frame)
            # Categories with an instance in view; each is measured to its closest instance.
            visible = sorted({ctx.name(i) for i in ctx.seen_objects if ctx.seen[frame, i]})
            if len(visible) < num_choices:
                continue
            chosen = [str(c) for c in rng.choice(visible, size=num_choices, replace=False)]
            distances = [
                min(float(point_box_distance(cameras[frame], ctx.lower[i], ctx.upper[i])) for i in ctx.instances[c])
                for c in chosen
            ]
            order = np.argsort(distances)
            if distances[order[1]] - distances[order[0]] < ctx.config.distance_margin:
                continue
            answer = chosen[order[0]]
            options, letter = _multiple_choice(rng, answer, [c for c in chosen if c != answer])
            listed = ", ".join(option[3:] for option in options)
            question = (
                f"Measuring from the closest point of each object, which of these objects ({listed}) is the closest to "
                f"the camera in {_frame(frame, ctx.frames)}?"
            )
            objects = [i for c in chosen for i in ctx.instances[c]]
            yield _row(
                f"camera_obj_rel_dist_v{version}", question, letter, options, mc_answer=letter, objects=objects,
                frame_indices=[frame], answer_text=answer,
            )

    return generate


def _camera_movement_direction(ctx: _Context, rng: np.random.Generator) -> Iterator[Row]:
    cameras = ctx.view.camera_positions()
    for start, end in _frame_pairs(ctx, rng, ctx.config.movement_frames):
        # Displacement in the start camera's frame: x right, z forward.
        local = ctx.view.camera_frame_points(start, cameras[end])
        sideways, forward = float(local[0]), float(local[2])
        if np.hypot(sideways, forward) < ctx.config.min_distance:
            continue
        big, small = sorted((abs(sideways), abs(forward)), reverse=True)
        if big < ctx.config.movement_dominance * small:
            continue
        if abs(forward) > abs(sideways):
            answer = "forward" if forward > 0 else "backward"
        else:
            answer = "right" if sideways > 0 else "left"
        options, letter = _multiple_choice(rng, answer, [d for d in ("forward", "backward", "left", "right") if d != answer])
        listed = [option[3:] for option in options]
        question = (
            f"During the sequence between {_frame(start, ctx.frames, False)} and {_frame(end, ctx.frames)}, what was the "
            "primary consistent direction of the camera's movement relative to its orientation at the start? "
            f"The options are {listed[0]}, {listed[1]}, {listed[2]}, and {listed[3]}."
        )
        yield (
            _row("camera_movement_direction", question, letter, options, mc_answer=letter, objects=[], frame_indices=[start, end], answer_text=answer)
        )


QUESTION_GENERATORS: dict[str, Callable[[_Context, np.random.Generator], Iterator[Row]]] = {
    "object_counting": _object_counting,
    "object_abs_distance": _object_abs_distance,
    "object_size_estimation": _object_size_estimation,
    "room_size_estimation": _room_size_estimation,
    "object_rel_distance": _object_rel_distance,
    "object_rel_direction_easy": _object_rel_direction("easy"),
    "object_rel_direction_medium": _object_rel_direction("medium"),
    "object_rel_direction_hard": _object_rel_direction("hard"),
    "route_planning": _route_planning,
    "obj_appearance_order": _obj_appearance_order,
    "camera_obj_abs_dist": _camera_obj_abs_dist,
    "camera_displacement": _camera_displacement,
    "camera_obj_dist_change": _camera_obj_dist_change,
    "obj_obj_relative_pos_nf": _obj_obj_relative_pos("nf"),
    "obj_obj_relative_pos_lr": _obj_obj_relative_pos("lr"),
    "obj_obj_relative_pos_ud": _obj_obj_relative_pos("ud"),
    "camera_obj_rel_dist_v1": _camera_obj_rel_dist(1),
    "camera_obj_rel_dist_v2": _camera_obj_rel_dist(2),
    "camera_obj_rel_dist_v3": _camera_obj_rel_dist(3),
    "camera_movement_direction": _camera_movement_direction,
}


def generate_questions(
    view: SceneView,
    rng: np.random.Generator,
    config: QuestionConfig | None = None,
    question_types: Sequence[str] | None = None,
) -> Iterator[Row]:
    """Up to ``questions_per_type`` questions of each type (all types by default) for one scene.

    Rows have the VSI-Bench columns ``question_type, question, ground_truth, options`` (``id``,
    ``dataset`` and ``scene_name`` are added by the dataset writer) plus ``objects``,
    ``answer_text`` (multiple choice), ``frame_indices`` and ``mc_answer`` (VSTI tasks).
    """
    config = config or QuestionConfig()
    context = _Context(view, config)
    names = list(QUESTION_GENERATORS) if question_types is None else list(question_types)
    base_seed = int(rng.integers(2**63))
    rows: list[Row] = []
    for name in names:
        if name not in QUESTION_GENERATORS:
            raise ValueError(f"unknown question type {name!r}; expected one of {list(QUESTION_GENERATORS)}")
        # Each type draws from its own stream, so adding or dropping a type never changes another
        # type's questions; generators are lazy, so only the questions kept are built.
        child = np.random.default_rng([base_seed, zlib.crc32(name.encode())])
        rows.extend(itertools.islice(QUESTION_GENERATORS[name](context, child), config.questions_per_type))
    return rows
