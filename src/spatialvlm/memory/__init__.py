"""VLM² dual memory: a working memory (sliding window over recent frames) and an episodic memory
(long-term store with similarity-based replacement), fused by a learned gate (Algorithm 1 of
arXiv 2511.20644). Batched over videos; the state lives in tensors.

    memory = DualMemory(dim=1152)
    fused, state = memory.process(frames, frame_mask)      # frames (B, T, N, D)
    fused_t, state = memory(h_t, state)                     # streaming, h_t (B, N, D)
"""

from .attention import MemoryAttention
from .config import DualMemoryConfig
from .dual import DualMemory
from .episodic import EpisodicMemory
from .ops import most_similar_slot, oldest_or_free_slot, pool_tokens
from .state import MemoryBank, MemoryCounters, MemoryState
from .working import WorkingMemory

__all__ = [
    "DualMemory",
    "DualMemoryConfig",
    "EpisodicMemory",
    "MemoryAttention",
    "MemoryBank",
    "MemoryCounters",
    "MemoryState",
    "WorkingMemory",
    "most_similar_slot",
    "oldest_or_free_slot",
    "pool_tokens",
]
