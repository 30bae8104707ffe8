"""Dual-memory statistics: per-video summaries of a state and per-step traces of a stream."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spatialvlm.memory import DualMemory, MemoryState


@dataclass
class VideoMemoryStatistics:
    """Summary of one video's memories since its last reset.

    Attributes:
        frames_seen: real frames processed.
        working_fill, working_size: entries held by / capacity of the working memory.
        episodic_fill, episodic_size: the same for the episodic memory.
        replacements: how often each episodic slot was overwritten by similarity replacement.
        mean_gate: mean γ over frames (γ weighs the working memory, 1 − γ the episodic one).
        working_entropy, episodic_entropy: mean attention entropy in nats over the frames run with
            ``record_statistics`` (``None`` when none was).
    """

    frames_seen: int
    working_fill: int
    working_size: int
    episodic_fill: int
    episodic_size: int
    replacements: list[int]
    mean_gate: float
    working_entropy: float | None
    episodic_entropy: float | None


def memory_statistics(state: MemoryState) -> list[VideoMemoryStatistics]:
    """One :class:`VideoMemoryStatistics` per video of ``state`` (reads the state's counters)."""
    counters = state.counters
    frames = counters.frames_seen.cpu()
    gate = (counters.gate_sum.cpu().double() / frames.clamp(min=1)).tolist()
    entropy_frames = counters.entropy_frames.cpu().clamp(min=1)
    working_entropy = (counters.working_entropy_sum.cpu().double() / entropy_frames).tolist()
    episodic_entropy = (counters.episodic_entropy_sum.cpu().double() / entropy_frames).tolist()
    recorded = (counters.entropy_frames.cpu() > 0).tolist()
    working_fill, episodic_fill = state.working_fill.cpu().tolist(), state.episodic_fill.cpu().tolist()
    replacements = counters.replacements.cpu().tolist()
    return [
        VideoMemoryStatistics(
            frames_seen=int(frames[b]), working_fill=working_fill[b], working_size=state.working_size,
            episodic_fill=episodic_fill[b], episodic_size=state.episodic_size, replacements=replacements[b],
            mean_gate=gate[b] if frames[b] > 0 else math.nan,
            working_entropy=working_entropy[b] if recorded[b] else None,
            episodic_entropy=episodic_entropy[b] if recorded[b] else None,
        )
        for b in range(state.batch_size)
    ]


def format_memory_statistics(stats: list[VideoMemoryStatistics]) -> str:
    """A plain-text table, one row per video."""
    def entropy(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.2f}"

    lines = ["video  frames  working  episodic  replaced  busiest slot  mean gate  H(work)  H(epi)"]
    for b, s in enumerate(stats):
        total = sum(s.replacements)
        busiest = int(np.argmax(s.replacements)) if total else -1
        busy = f"{busiest:2d} ({s.replacements[busiest]:3d}x)" if total else "      -    "
        lines.append(
            f"{b:5d}  {s.frames_seen:6d}  {s.working_fill:3d}/{s.working_size:<3d}  "
            f"{s.episodic_fill:4d}/{s.episodic_size:<4d} {total:8d}  {busy:>12s}  {s.mean_gate:9.3f}  "
            f"{entropy(s.working_entropy)}  {entropy(s.episodic_entropy)}"
        )
    return "\n".join(lines)


@dataclass
class MemoryTrace:
    """Per-step statistics of a stream of B videos over T steps (numpy arrays, (T, B) unless noted).

    Attributes:
        working_fill, episodic_fill: entries held after each step.
        replaced_slot: episodic slot replaced at each step, -1 when none was.
        gate: mean γ of the step (NaN where the video had no frame).
        working_entropy, episodic_entropy: attention entropy in nats (NaN when not recorded).
        episodic_stamps: (T, B, L_e) frame index of the entry in each episodic slot after the step
            (-1 empty); tells which frame a replacement deleted.
        working_size, episodic_size: capacities.
        labels: optional (T, B) int labels of the frames (e.g. the scene of a synthetic stream).
    """

    working_fill: np.ndarray
    episodic_fill: np.ndarray
    replaced_slot: np.ndarray
    gate: np.ndarray
    working_entropy: np.ndarray
    episodic_entropy: np.ndarray
    episodic_stamps: np.ndarray
    working_size: int
    episodic_size: int
    labels: np.ndarray | None = None

    @property
    def num_steps(self) -> int:
        return self.gate.shape[0]

    @property
    def num_videos(self) -> int:
        return self.gate.shape[1]

    def save(self, path: str | Path) -> None:
        """Write as JSON (NaN stored as null)."""
        def encode(value):
            if isinstance(value, np.ndarray):
                return np.where(np.isnan(value), None, value).tolist() if value.dtype.kind == "f" else value.tolist()
            return value

        payload = {"format": "spatialvlm.memory_trace/1"}
        payload.update({f.name: encode(getattr(self, f.name)) for f in fields(self)})
        Path(path).write_text(json.dumps(payload))

    @classmethod
    def load(cls, path: str | Path) -> "MemoryTrace":
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != "spatialvlm.memory_trace/1":
            raise ValueError(f"{path} is not a memory trace written by MemoryTrace.save")
        floats = {"gate", "working_entropy", "episodic_entropy"}
        values = {}
        for f in fields(cls):
            value = payload.get(f.name)
            if f.name in ("working_size", "episodic_size") or value is None:
                values[f.name] = value
            elif f.name in floats:
                values[f.name] = np.array(value, dtype=float)  # None -> nan
            else:
                values[f.name] = np.array(value, dtype=np.int64)
        return cls(**values)


class MemoryTraceRecorder:
    """Collects one row of a :class:`MemoryTrace` after each step (small device tensors; a single
    transfer to the host in :meth:`finish`)."""

    def __init__(self) -> None:
        self._rows: list[tuple[Tensor, ...]] = []
        self._sizes: tuple[int, int] | None = None

    def record(self, state: MemoryState) -> None:
        c = state.counters
        stamps = state.episodic.stamps if state.episodic is not None else torch.full(
            (state.batch_size, state.episodic_size), -1, dtype=torch.long, device=state.device
        )
        self._rows.append((
            state.working_fill, state.episodic_fill, c.last_replaced, c.last_gate.float(),
            c.last_working_entropy.float(), c.last_episodic_entropy.float(), stamps.clone(),
        ))
        self._sizes = (state.working_size, state.episodic_size)

    def finish(self, labels: np.ndarray | None = None) -> MemoryTrace:
        if not self._rows:
            raise ValueError("no step was recorded")
        columns = [torch.stack(column).cpu().numpy() for column in zip(*self._rows)]
        return MemoryTrace(*columns, working_size=self._sizes[0], episodic_size=self._sizes[1], labels=labels)


@torch.no_grad()
def record_memory_trace(
    memory: DualMemory, frames: Tensor, frame_mask: Tensor | None = None,
    state: MemoryState | None = None, labels: np.ndarray | None = None, progress: bool = False,
) -> tuple[Tensor, MemoryState, MemoryTrace]:
    """Stream clips through ``memory`` frame by frame, recording a :class:`MemoryTrace`.

    Args:
        frames: (B, T, N, D); frame_mask: (B, T) bool (True = real frame) or ``None``.
        labels: optional (B, T) ints stored in the trace (transposed to (T, B)).

    Returns:
        fused (B, T, N, D), the final state and the trace (entropies need the memory's
        ``record_statistics``).
    """
    if frames.dim() != 4:
        raise ValueError(f"frames must have shape (B, T, N, D), got {tuple(frames.shape)}")
    batch, steps = frames.shape[:2]
    state = state if state is not None else memory.init_state(batch, device=frames.device, dtype=frames.dtype)
    recorder = MemoryTraceRecorder()
    outputs = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="memory stream", unit="frame")
    for t in iterator:
        step_mask = None if frame_mask is None else frame_mask[:, t]
        fused, state = memory(frames[:, t], state, step_mask)
        outputs.append(fused)
        recorder.record(state)
    trace = recorder.finish(None if labels is None else np.asarray(labels).T)
    return torch.stack(outputs, dim=1), state, trace


def replacement_label_agreement(trace: MemoryTrace) -> float:
    """Share of replacements that deleted an entry with the same label as the new frame.

    A memory that consolidates by content replaces an entry of the scene it is looking at; an
    age-driven one replaces whatever is most recent. Needs ``trace.labels``; NaN if no replacement.
    Entry stamps count real frames, so masked frames may only trail (padding at the end).
    """
    if trace.labels is None:
        raise ValueError("the trace has no labels")
    hits = total = 0
    for t in range(1, trace.num_steps):
        for b in np.nonzero(trace.replaced_slot[t] >= 0)[0]:
            deleted_frame = trace.episodic_stamps[t - 1, b, trace.replaced_slot[t, b]]
            hits += int(trace.labels[deleted_frame, b] == trace.labels[t, b])
            total += 1
    return hits / total if total else math.nan


__all__ = [
    "MemoryTrace",
    "MemoryTraceRecorder",
    "VideoMemoryStatistics",
    "format_memory_statistics",
    "memory_statistics",
    "record_memory_trace",
    "replacement_label_agreement",
]
