"""Streaming VLM²: feed frames one at a time, ask questions at any moment, save and resume.

Each ``add_frame`` runs one frame through SigLIP → fusion → dual memory → projector → pooling and
keeps the memory state, so a frame streamed alone gives exactly the tokens it gets inside a whole
clip (same memory, same order). The language model sees the pooled memory outputs ``M_t`` of the
last ``context_frames`` frames; what came before reaches it through the memory, whose working and
episodic entries were written by every frame.

Coordinate normalisation needs one frame of reference per video: the statistics come from the first
frame that has points (or are given up front) and stay fixed for the rest of the stream.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..geometry import CoordinateStats, FrameGeometry, stack_frames
from ..memory import MemoryState
from .inference import generate_answer
from .processing import VLM2Processor
from .vlm2 import VLM2ForConditionalGeneration

__all__ = ["VLM2StreamingSession"]

_SESSION_FILE = "session.json"
_CONTEXT_FILE = "context.safetensors"
_MEMORY_FILE = "memory.safetensors"


class VLM2StreamingSession:
    """A live video stream with memory.

    Args:
        model: a VLM² model (put in eval mode).
        processor: its processor.
        context_frames: how many of the latest frames' tokens the language model reads when asked.
        coordinate_stats: fixed normalisation statistics (center (1, 3), scale (1,)); None takes
            them from the first frame with points.

    Attributes:
        frames_seen: frames added since the start (or the last ``reset``).
        memory_state: the dual memory after the latest frame (None without memory or before any).
    """

    def __init__(
        self,
        model: VLM2ForConditionalGeneration,
        processor: VLM2Processor,
        context_frames: int = 32,
        coordinate_stats: CoordinateStats | None = None,
    ) -> None:
        if context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {context_frames}")
        self.model = model.eval()
        self.processor = processor
        self.context_frames = context_frames
        self.coordinate_stats = coordinate_stats
        self.frames_seen = 0
        self.memory_state: MemoryState | None = None
        self._context: deque[torch.Tensor] = deque(maxlen=context_frames)

    def reset(self) -> None:
        """Forget everything: a new video starts."""
        self.frames_seen = 0
        self.memory_state = None
        self.coordinate_stats = None
        self._context.clear()

    @torch.no_grad()
    def add_frame(self, frame: Any, geometry: FrameGeometry | None = None) -> torch.Tensor:
        """Encode one frame into the stream.

        Args:
            frame: (H, W, 3) uint8 RGB, a PIL image, or a preprocessed (3, S, S) tensor.
            geometry: this frame's (unbatched) FrameGeometry; required when the config needs it.
        Returns:
            (P, Dt) the frame's language-model tokens.
        """
        model, processor = self.model, self.processor
        if geometry is None and model.config.needs_geometry:
            raise ValueError(
                f"frame {self.frames_seen} has no geometry but the model needs it (use_spatial_fusion=True)"
            )
        if isinstance(frame, torch.Tensor) and frame.is_floating_point():
            pixels = processor.preprocess_frames(frame[None])
        elif isinstance(frame, np.ndarray):
            pixels = processor.preprocess_frames(frame[None])
        else:
            pixels = processor.preprocess_frames([frame])
        inputs: dict[str, torch.Tensor] = {}
        if geometry is not None:
            inputs, stats = processor.prepare_geometry(stack_frames([geometry]), self.coordinate_stats)
            self.coordinate_stats = stats
        device, dtype = model.device, model.dtype
        video_inputs = {
            name: value[None].to(device=device, dtype=dtype if value.is_floating_point() else None)
            for name, value in inputs.items()
        }
        encoded = model.model.get_video_features(
            pixels[None].to(device=device, dtype=dtype),
            memory_state=self.memory_state,
            return_dict=True,
            **video_inputs,
        )
        self.memory_state = encoded.memory_state
        features = encoded.frame_features[0]
        self._context.append(features)
        self.frames_seen += 1
        return features

    def add_frames(
        self,
        frames: Iterable[Any],
        geometry: Iterable[FrameGeometry] | None = None,
        progress: bool = False,
    ) -> None:
        """``add_frame`` for each frame (and its geometry), with an optional tqdm bar."""
        from tqdm.auto import tqdm

        frames = tqdm(frames, desc="streaming", unit="frame", disable=not progress)
        if geometry is None:
            for frame in frames:
                self.add_frame(frame)
            return
        for frame, frame_geometry in zip(frames, geometry, strict=True):
            self.add_frame(frame, frame_geometry)

    def context_features(self) -> torch.Tensor:
        """(n · P + 1, Dt) what the language model reads: the latest n frames' tokens and a newline."""
        if not self._context:
            raise ValueError("the stream has no frame yet; add frames before asking")
        stacked = torch.stack(list(self._context))
        counts = torch.tensor([stacked.shape[0]], device=stacked.device)
        return self.model.model.pack_video_tokens(stacked, counts)

    def ask(self, question: str, max_new_tokens: int = 16, progress: bool = False) -> str:
        """Answer a question about what the stream has shown so far (greedy decoding)."""
        if not question.strip():
            raise ValueError("the question is empty; ask something about the stream, e.g. 'Where is the door?'")
        text, _ = generate_answer(
            self.model,
            self.processor,
            self.processor.video_prompt(question),
            self.context_features(),
            max_new_tokens=max_new_tokens,
            progress=progress,
        )
        return text

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the stream's state (memory, context tokens, counters, normalisation) to a folder."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "frames_seen": self.frames_seen,
            "context_frames": self.context_frames,
            "coordinate_stats": None if self.coordinate_stats is None else self.coordinate_stats.to_dict(),
            "has_memory": self.memory_state is not None,
        }
        (path / _SESSION_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if self._context:
            save_file({"context": torch.stack(list(self._context)).contiguous().cpu()}, str(path / _CONTEXT_FILE))
        if self.memory_state is not None:
            self.memory_state.save(path / _MEMORY_FILE)
        return path

    def load(self, directory: str | os.PathLike) -> None:
        """Resume from a folder written by ``save`` (with the same model)."""
        from safetensors.torch import load_file

        path = Path(directory)
        if not (path / _SESSION_FILE).is_file():
            raise FileNotFoundError(f"{path} holds no streaming session ({_SESSION_FILE} missing)")
        meta = json.loads((path / _SESSION_FILE).read_text())
        device, dtype = self.model.device, self.model.dtype
        self.frames_seen = int(meta["frames_seen"])
        self.context_frames = int(meta["context_frames"])
        stats = meta["coordinate_stats"]
        self.coordinate_stats = None if stats is None else CoordinateStats.from_dict(stats)
        self._context = deque(maxlen=self.context_frames)
        if (path / _CONTEXT_FILE).is_file():
            context = load_file(str(path / _CONTEXT_FILE))["context"].to(device=device, dtype=dtype)
            self._context.extend(context.unbind(0))
        self.memory_state = MemoryState.load(path / _MEMORY_FILE, device=device) if meta["has_memory"] else None
