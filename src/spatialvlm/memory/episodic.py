"""Episodic memory: long-term store with similarity-based replacement (Algorithm 1, lines 2, 15-24)."""

from __future__ import annotations

import torch
from torch import Tensor

from .ops import most_similar_slot, oldest_or_free_slot
from .state import MemoryBank
from .working import MemoryModule


class EpisodicMemory(MemoryModule):
    """Stores the fused memory output M_t. While not full it appends; when full it deletes the
    entry whose token-mean is most cosine-similar to M_t's (ties: the earliest in the list) and
    appends M_t.

    Args:
        dim: token width D. num_heads: attention heads. size: capacity L_e. dropout: attention dropout.
    """

    def __init__(self, dim: int, num_heads: int = 8, size: int = 32, dropout: float = 0.1) -> None:
        super().__init__(dim, num_heads, size, dropout)

    def select_slot(self, bank: MemoryBank, new_mean: Tensor) -> Tensor:
        full = bank.valid.all(dim=-1)
        return torch.where(full, most_similar_slot(new_mean, bank.means, bank.stamps), oldest_or_free_slot(bank.stamps))
