"""Per-stage wall-clock timings, reusable by any component.

    timer = StageTimer()
    with timer.stage("score"):
        ...
    print(timer.table())

Functions that accept ``timer=None`` use :func:`maybe_stage`, which is a no-op without a timer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import ContextManager


@dataclass
class StageTimer:
    """Accumulates seconds and call counts per named stage, in first-seen order."""

    totals: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def mean(self, name: str) -> float:
        """Mean seconds per call of stage ``name``."""
        return self.totals[name] / self.calls[name]

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def table(self) -> str:
        """Stage, calls, mean ms per call, share of the total time."""
        total = sum(self.totals.values()) or 1.0
        lines = [f"{'stage':<12} {'calls':>6} {'mean ms':>10} {'share':>7}"]
        for name, seconds in self.totals.items():
            lines.append(f"{name:<12} {self.calls[name]:>6} {1e3 * self.mean(name):>10.3f} {seconds / total:>7.1%}")
        return "\n".join(lines)


def maybe_stage(timer: StageTimer | None, name: str) -> ContextManager[None]:
    """``timer.stage(name)`` when a timer is given, else a no-op context."""
    return nullcontext() if timer is None else timer.stage(name)
