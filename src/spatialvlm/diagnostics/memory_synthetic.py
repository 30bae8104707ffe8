"""A deterministic synthetic token stream with recurring scenes, for memory demos and plots."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SyntheticStream:
    """frames (B, T, N, D) float32, frame_mask (B, T) bool (False = padding), scenes (B, T) int64
    (-1 at padding): the scene each frame shows."""

    frames: Tensor
    frame_mask: Tensor
    scenes: Tensor


def synthetic_scene_stream(
    lengths: tuple[int, ...] = (160, 120, 200),
    num_tokens: int = 49,
    dim: int = 128,
    num_scenes: int = 5,
    segment_frames: tuple[int, int] = (6, 16),
    noise: float = 0.3,
    seed: int = 0,
) -> SyntheticStream:
    """Videos that walk between a few scenes and come back to them.

    Each scene is a fixed token set (a scene-wide direction plus per-token detail, so scenes differ
    in their token means, which is what episodic replacement compares). A video stays in a scene
    for a random number of frames in ``segment_frames``, then moves to another scene; the camera
    "drifts" inside a segment (a slowly changing offset) and every frame gets fresh noise.

    Args:
        lengths: frames per video; shorter videos are padded to the longest.
        num_tokens, dim: N and D of each frame.
        num_scenes: distinct scenes shared by all videos.
        segment_frames: (min, max) frames spent in a scene per visit.
        noise: standard deviation of the per-frame noise (scene tokens have unit scale).
        seed: everything is drawn from this seed.
    """
    generator = torch.Generator().manual_seed(seed)
    scene_mean = torch.randn(num_scenes, 1, dim, generator=generator) * 1.5
    scene_tokens = scene_mean + torch.randn(num_scenes, num_tokens, dim, generator=generator)
    steps = max(lengths)
    frames = torch.zeros(len(lengths), steps, num_tokens, dim)
    scenes = torch.full((len(lengths), steps), -1, dtype=torch.long)
    for video, length in enumerate(lengths):
        t, scene = 0, int(torch.randint(num_scenes, (1,), generator=generator))
        while t < length:
            span = min(int(torch.randint(segment_frames[0], segment_frames[1] + 1, (1,), generator=generator)), length - t)
            drift = torch.randn(1, dim, generator=generator) * 0.05
            position = torch.arange(span, dtype=torch.float32)[:, None, None]
            segment = scene_tokens[scene] + position * drift + noise * torch.randn(span, num_tokens, dim, generator=generator)
            frames[video, t : t + span] = segment
            scenes[video, t : t + span] = scene
            t += span
            step = int(torch.randint(1, num_scenes, (1,), generator=generator))
            scene = (scene + step) % num_scenes  # always a different scene next
    return SyntheticStream(frames=frames, frame_mask=scenes >= 0, scenes=scenes)


def run_synthetic_memory_stream(
    lengths: tuple[int, ...] = (160, 120, 200),
    num_tokens: int = 36,
    dim: int = 64,
    num_heads: int = 4,
    working_size: int = 8,
    episodic_size: int = 32,
    seed: int = 0,
    progress: bool = False,
):
    """Stream :func:`synthetic_scene_stream` through a freshly initialised ``DualMemory`` (seeded,
    untrained, dropout off, entropy recorded).

    Returns:
        (memory, state, trace): the module, its final :class:`~spatialvlm.memory.MemoryState` and a
        :class:`~spatialvlm.diagnostics.MemoryTrace` labelled with each frame's scene.
    """
    from spatialvlm.memory import DualMemory

    from .memory_stats import record_memory_trace

    stream = synthetic_scene_stream(lengths, num_tokens=num_tokens, dim=dim, seed=seed)
    torch.manual_seed(seed)
    memory = DualMemory(dim, num_heads=num_heads, working_size=working_size, episodic_size=episodic_size,
                        dropout=0.0, record_statistics=True).eval()
    _, state, trace = record_memory_trace(
        memory, stream.frames, stream.frame_mask, labels=stream.scenes.numpy(), progress=progress,
    )
    return memory, state, trace
