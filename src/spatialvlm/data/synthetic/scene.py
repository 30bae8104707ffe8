"""Procedural indoor scenes: a box room holding axis-aligned box objects of known categories.

World frame: metres, z up, floor at z = 0, the room spans ``[0, width] × [0, depth] × [0, height]``.
This frame is the answer side only: the geometry a model reads is written in the first camera's
frame (``spatialvlm.data.synthetic.dataset``), so no corner of the room sits at a known place.
Every object is an axis-aligned box standing on the floor (or raised, for a TV), with a category
colour distinct from every other category and from the room surfaces, so a tiny model can learn
categories from colour alone. The middle of the room is kept free: the camera walks there.

What makes a question need the video rather than a category prior: every instance's size is its
category's size times a per-instance factor (log-uniform, ``SceneConfig.size_scale``), so the same
category spans about a factor 3; every category may repeat (up to ``Category.max_count``, 8 for
small things), and the instances of one category are placed in different angular sectors around
the room centre, so the camera, which looks outward from the middle, never sees them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Category",
    "CATEGORIES",
    "SceneConfig",
    "SceneObject",
    "Scene",
    "category_by_name",
    "sample_scene",
    "box_distance",
    "point_box_distance",
]


@dataclass(frozen=True)
class Category:
    """An object category: its name, RGB colour and size ranges.

    Attributes:
        name: the category as questions name it.
        color: RGB in 0..255.
        size_min, size_max: (width, depth, height) bounds in metres of the typical instance (width
            along x before a random quarter turn swaps width and depth); each instance is then scaled
            by its own factor (``SceneConfig.size_scale``).
        elevation: (low, high) height of the box bottom above the floor, metres.
        max_count: most instances one room may hold.
    """

    name: str
    color: tuple[int, int, int]
    size_min: tuple[float, float, float]
    size_max: tuple[float, float, float]
    elevation: tuple[float, float] = (0.0, 0.0)
    max_count: int = 1


CATEGORIES: tuple[Category, ...] = (
    Category("chair", (220, 40, 40), (0.42, 0.42, 0.80), (0.55, 0.55, 1.00), max_count=8),
    Category("table", (240, 140, 20), (1.00, 0.70, 0.70), (1.60, 1.00, 0.78), max_count=6),
    Category("sofa", (40, 80, 220), (1.60, 0.80, 0.75), (2.20, 1.00, 0.90), max_count=6),
    Category("bed", (150, 50, 200), (1.40, 1.90, 0.45), (1.80, 2.10, 0.60), max_count=4),
    Category("cabinet", (20, 110, 60), (0.60, 0.40, 0.90), (1.00, 0.60, 1.80), max_count=8),
    Category("tv", (25, 25, 25), (0.90, 0.10, 0.55), (1.30, 0.15, 0.80), elevation=(0.6, 1.0), max_count=6),
    Category("lamp", (250, 230, 30), (0.30, 0.30, 1.40), (0.40, 0.40, 1.80), max_count=8),
    Category("plant", (90, 210, 60), (0.30, 0.30, 0.50), (0.50, 0.50, 1.20), max_count=8),
    Category("refrigerator", (60, 220, 230), (0.70, 0.70, 1.70), (0.90, 0.80, 1.90), max_count=4),
    Category("bookshelf", (150, 100, 50), (0.80, 0.30, 1.60), (1.20, 0.40, 2.00), max_count=6),
    Category("trash can", (230, 60, 200), (0.25, 0.25, 0.30), (0.35, 0.35, 0.50), max_count=8),
)


@dataclass
class SceneConfig:
    """Knobs of the scene sampler (defaults give 4–8 m rooms with 5–8 categories, 1–3 of them repeated).

    Attributes:
        room_width, room_depth: (min, max) room extent along x and y, metres (sampled on a 0.1 m grid).
        room_height: (min, max) ceiling height, metres.
        num_categories: (min, max) distinct categories per room.
        repeated_categories: (min, max) of those categories that get several instances
            (2..``Category.max_count``, uniformly); the others get one.
        size_scale: (min, max) per-instance size factor, log-uniform, applied to a size drawn from the
            category's range (capped so the box fits under the ceiling), so an object's size is not
            its category's.
        instance_spread: instance k of n of a category sits at angle ``θ0 + 2πk/n`` around the room
            centre, ± this fraction of half a sector (0: exactly evenly spread; 1: anywhere in its
            sector).
        free_radius_fraction: the central free ellipse's radii as a fraction of the room's sides
            (the camera path lives inside it).
        wall_margin: closest an object may be to a wall, metres.
        object_gap: closest two object footprints may be, metres.
        max_tries: placement attempts per object before it is dropped.
    """

    room_width: tuple[float, float] = (4.0, 8.0)
    room_depth: tuple[float, float] = (4.0, 8.0)
    room_height: tuple[float, float] = (2.6, 3.0)
    num_categories: tuple[int, int] = (5, 8)
    repeated_categories: tuple[int, int] = (1, 3)
    size_scale: tuple[float, float] = (0.6, 1.7)
    instance_spread: float = 0.5
    free_radius_fraction: float = 0.22
    wall_margin: float = 0.1
    object_gap: float = 0.25
    max_tries: int = 300


@dataclass
class SceneObject:
    """One box. ``center`` and ``size`` are (3,) arrays (x, y, z) in metres."""

    category: str
    center: np.ndarray
    size: np.ndarray

    @property
    def lower(self) -> np.ndarray:
        return self.center - self.size / 2

    @property
    def upper(self) -> np.ndarray:
        return self.center + self.size / 2


@dataclass
class Scene:
    """A room (``room_size`` = (width, depth, height)) and its objects."""

    room_size: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def floor_area(self) -> float:
        return float(self.room_size[0] * self.room_size[1])

    def counts(self) -> dict[str, int]:
        """Instances per category."""
        counts: dict[str, int] = {}
        for item in self.objects:
            counts[item.category] = counts.get(item.category, 0) + 1
        return counts

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of all objects: two (N, 3) arrays."""
        if not self.objects:
            return np.zeros((0, 3)), np.zeros((0, 3))
        return np.stack([o.lower for o in self.objects]), np.stack([o.upper for o in self.objects])

    def to_dict(self) -> dict:
        return {
            "room_size": self.room_size.tolist(),
            "objects": [
                {"category": o.category, "center": o.center.tolist(), "size": o.size.tolist()} for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        objects = [
            SceneObject(o["category"], np.asarray(o["center"], float), np.asarray(o["size"], float))
            for o in data["objects"]
        ]
        return cls(np.asarray(data["room_size"], float), objects)


def category_by_name(name: str) -> Category:
    for category in CATEGORIES:
        if category.name == name:
            return category
    raise ValueError(f"unknown category {name!r}; expected one of {[c.name for c in CATEGORIES]}")


def box_distance(lower_a: np.ndarray, upper_a: np.ndarray, lower_b: np.ndarray, upper_b: np.ndarray) -> np.ndarray:
    """Distance between the closest points of axis-aligned boxes (0 when they touch or overlap).

    Shapes broadcast: (..., 3) corners → (...,) distances.
    """
    gap = np.maximum(0.0, np.maximum(lower_a - upper_b, lower_b - upper_a))
    return np.linalg.norm(gap, axis=-1)


def point_box_distance(point: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Distance from points (..., 3) to the closest point of boxes (..., 3 corners)."""
    return box_distance(point, point, lower, upper)


def _grid(rng: np.random.Generator, low: float, high: float, step: float) -> float:
    return float(np.round(rng.uniform(low, high) / step) * step)


def _instance_size(rng: np.random.Generator, category: Category, room_height: float, config: SceneConfig) -> tuple[np.ndarray, float]:
    """(size (3,), bottom height) of one instance: category range × a log-uniform factor, on a 1 cm grid."""
    bottom = _grid(rng, *category.elevation, 0.01)
    size = np.array([rng.uniform(a, b) for a, b in zip(category.size_min, category.size_max)])
    low, high = config.size_scale
    # Keep 15 cm below the ceiling; a box that cannot fit even at the smallest factor keeps that.
    high = max(low, min(high, (room_height - 0.15 - bottom) / size[2]))
    scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    size = np.maximum(np.round(size * scale / 0.01) * 0.01, 0.05)
    if rng.random() < 0.5:
        size[[0, 1]] = size[[1, 0]]
    return size, bottom


def _place(
    rng: np.random.Generator,
    room: np.ndarray,
    size: np.ndarray,
    angle_range: tuple[float, float],
    objects: list[SceneObject],
    config: SceneConfig,
) -> np.ndarray | None:
    """A footprint centre (2,) in the angular window ``angle_range`` around the room centre, outside
    the free ellipse, clear of the walls and of every placed object; None after ``max_tries``."""
    centre = room[:2] / 2
    free_radii = config.free_radius_fraction * room[:2]
    half = size[:2] / 2 + config.wall_margin
    if np.any(room[:2] - 2 * half <= 0):
        return None
    for _ in range(config.max_tries):
        angle = rng.uniform(*angle_range)
        direction = np.array([np.cos(angle), np.sin(angle)])
        # Farthest centre along this ray that keeps the box inside the walls.
        safe = np.where(np.abs(direction) < 1e-9, 1e-9, direction)
        limits = np.where(direction > 0, room[:2] - half - centre, half - centre) / safe
        reach = float(limits.min())
        if reach <= 0:
            continue
        xy = np.round((centre + reach * np.sqrt(rng.uniform(0.2, 1.0)) * direction) / 0.01) * 0.01
        xy = np.clip(xy, half, room[:2] - half)
        # The footprint's nearest point to the room centre must lie outside the free ellipse.
        nearest = np.clip(centre, xy - size[:2] / 2, xy + size[:2] / 2)
        if np.sum(((nearest - centre) / free_radii) ** 2) <= 1.0:
            continue
        overlaps = any(
            np.all(np.abs(xy - other.center[:2]) < (size[:2] + other.size[:2]) / 2 + config.object_gap)
            for other in objects
        )
        if not overlaps:
            return xy
    return None


def sample_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> Scene:
    """Sample a room and place objects without overlap, outside the central free ellipse.

    Sizes are drawn on a 1 cm grid and the room on a 10 cm grid, so sizes and floor areas are exact
    decimals. Instances of a repeated category go to evenly spread angular sectors around the room
    centre (``SceneConfig.instance_spread``). Objects that find no free spot in ``max_tries``
    attempts are dropped, so a category may end up with fewer instances than drawn.
    """
    config = config or SceneConfig()
    room = np.array(
        [
            _grid(rng, *config.room_width, 0.1),
            _grid(rng, *config.room_depth, 0.1),
            _grid(rng, *config.room_height, 0.1),
        ]
    )
    low, high = config.num_categories
    chosen = rng.choice(len(CATEGORIES), size=int(rng.integers(low, high + 1)), replace=False)
    repeat_low, repeat_high = config.repeated_categories
    repeated = set(rng.permutation(chosen)[: int(rng.integers(repeat_low, repeat_high + 1))].tolist())
    objects: list[SceneObject] = []
    for category_index in chosen:
        category = CATEGORIES[int(category_index)]
        count = 1
        if int(category_index) in repeated and category.max_count > 1:
            count = int(rng.integers(2, category.max_count + 1))
        start = rng.uniform(0, 2 * np.pi)
        sector = 2 * np.pi / count
        for k in range(count):
            size, bottom = _instance_size(rng, category, float(room[2]), config)
            if count == 1:
                window = (0.0, 2 * np.pi)
            else:
                middle, spread = start + k * sector, config.instance_spread * sector / 2
                window = (middle - spread, middle + spread)
            xy = _place(rng, room, size, window, objects, config)
            if xy is not None:
                objects.append(SceneObject(category.name, np.array([xy[0], xy[1], bottom + size[2] / 2]), size))
    return Scene(room, objects)
