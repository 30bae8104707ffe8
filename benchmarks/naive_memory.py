"""Naive reference of the VLM² dual memory: the obvious implementation, kept for comparison.

Python lists of tensors per video, a loop over videos, and the keys and values of the whole memory
recomputed from the stored entries at every step. It borrows the weights of a
:class:`spatialvlm.memory.DualMemory`, so both compute the same function; the tests use it as the
independent reference and ``bench_memory.py`` as the speed baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class NaiveVideoMemory:
    working: list[Tensor] = field(default_factory=list)   # oldest first
    episodic: list[Tensor] = field(default_factory=list)  # Algorithm 1's list order
    episodic_means: list[Tensor] = field(default_factory=list)


def _attention(attn, query_tokens: Tensor, memory_tokens: Tensor) -> Tensor:
    """One video: query (N, D) attends to memory (S, D); keys/values projected here, every time."""
    heads = attn.num_heads
    dim = query_tokens.shape[-1]
    q = F.linear(query_tokens, attn.q_proj.weight, attn.q_proj.bias)
    kv = F.linear(memory_tokens, attn.kv_proj.weight, attn.kv_proj.bias)
    k, v = kv[:, :dim], kv[:, dim:]

    def heads_first(x: Tensor) -> Tensor:
        return x.view(x.shape[0], heads, dim // heads).transpose(0, 1)

    out = F.scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v))
    return F.linear(out.transpose(0, 1).reshape(-1, dim), attn.out_proj.weight, attn.out_proj.bias)


def _pool(x: Tensor, num_tokens: int | None) -> Tensor:
    """(N, D) -> (num_tokens, D) by 2D average pooling of the square token grid."""
    if num_tokens is None or num_tokens >= x.shape[0]:
        return x
    side = math.isqrt(x.shape[0])
    grid = x.T.reshape(1, -1, side, side)
    return F.adaptive_avg_pool2d(grid, math.isqrt(num_tokens)).flatten(2)[0].T


class NaiveDualMemory:
    """Algorithm 1, one video at a time, with the same weights (and empty-memory rule) as ``memory``."""

    def __init__(self, memory) -> None:
        self.memory = memory
        self.config = memory.config

    def init_state(self, batch_size: int) -> list[NaiveVideoMemory]:
        return [NaiveVideoMemory() for _ in range(batch_size)]

    def step_video(self, h: Tensor, video: NaiveVideoMemory) -> tuple[Tensor, int]:
        """h (N, D) -> output (N, D) and the episodic slot index (list position) replaced, or -1.

        The output is M_t (``output="paper"``) or h + out(M_t) ("residual"); the episodic list
        stores M_t. With ``read_order="write_then_read"`` h joins the working list before it is read.
        """
        cfg, memory = self.config, self.memory
        stored_h = _pool(h, cfg.compress_tokens)
        write_first = getattr(cfg, "read_order", "read_then_write") == "write_then_read"
        if write_first:
            self._append_working(video, stored_h)
        # Empty memory: attend to the current frame itself (see DualMemory's docstring).
        working_tokens = torch.cat(video.working) if video.working else stored_h
        episodic_tokens = torch.cat(video.episodic) if video.episodic else stored_h
        memory_w = _attention(memory.working.attention, h, working_tokens)
        memory_e = _attention(memory.episodic.attention, h, episodic_tokens)
        gate = torch.sigmoid(memory.gate(torch.cat([memory_w, memory_e], dim=-1)))
        fused = gate * memory_w + (1 - gate) * memory_e

        if not write_first:
            self._append_working(video, stored_h)
        replaced = -1
        mean = fused.mean(dim=0)
        if len(video.episodic) == cfg.episodic_size:
            similarity = [F.cosine_similarity(mean, other, dim=0).item() for other in video.episodic_means]
            replaced = similarity.index(max(similarity))  # first maximum: ties go to the lowest index
            del video.episodic[replaced]
            del video.episodic_means[replaced]
        video.episodic.append(_pool(fused, cfg.compress_tokens))
        video.episodic_means.append(mean)
        if getattr(cfg, "output", "paper") == "residual":
            out = memory.output_proj
            return h + F.linear(fused, out.weight, out.bias), replaced
        return fused, replaced

    def _append_working(self, video: NaiveVideoMemory, entry: Tensor) -> None:
        """FIFO: append, then drop the oldest beyond the capacity."""
        video.working.append(entry)
        if len(video.working) > self.config.working_size:
            video.working.pop(0)

    def step(self, h: Tensor, videos: list[NaiveVideoMemory]) -> Tensor:
        """h (B, N, D) -> fused (B, N, D), looping over the videos."""
        return torch.stack([self.step_video(h[b], video)[0] for b, video in enumerate(videos)])
