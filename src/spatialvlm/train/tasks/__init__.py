"""Training tasks: the model-family-specific pieces (model loading, part maps, data).

Built-in tasks are imported on first use, so ``import spatialvlm.train`` stays light; a user task
registers itself with ``@register_task``.
"""

from __future__ import annotations

import importlib

from .base import TrainingTask

__all__ = ["TrainingTask", "TASKS", "register_task", "get_task"]

TASKS: dict[str, type[TrainingTask]] = {}

# Task name → module whose import registers it.
_BUILTIN_TASKS: dict[str, str] = {"vlm2": "spatialvlm.train.tasks.vlm2", "shirgx": "spatialvlm.train.tasks.shirgx"}


def register_task(task: type[TrainingTask]) -> type[TrainingTask]:
    """Make ``task`` findable by its ``name`` (usable as a class decorator)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> TrainingTask:
    """An instance of the task registered as ``name``."""
    if name not in TASKS and name in _BUILTIN_TASKS:
        importlib.import_module(_BUILTIN_TASKS[name])
    if name not in TASKS:
        raise ValueError(f"unknown training task {name!r}; known: {sorted(set(TASKS) | set(_BUILTIN_TASKS))}")
    return TASKS[name]()
