"""Working memory: a sliding window over the last ``size`` frames (Algorithm 1, lines 1 and 8-14)."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from .attention import MemoryAttention
from .ops import oldest_or_free_slot
from .state import MemoryBank


class MemoryModule(nn.Module, abc.ABC):
    """What both memories share: an attention to read them and a masked store.

    Subclasses choose the slot a new entry goes to (:meth:`select_slot`).
    """

    def __init__(self, dim: int, num_heads: int = 8, size: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.size = size
        self.attention = MemoryAttention(dim, num_heads, dropout)

    @abc.abstractmethod
    def select_slot(self, bank: MemoryBank, new_mean: Tensor) -> Tensor:
        """(B,) slot the new entry (token-mean ``new_mean`` (B, D)) is written to."""

    def read(
        self, tokens: Tensor, bank: MemoryBank, fallback: tuple[Tensor, Tensor, Tensor] | None = None,
        with_entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``tokens`` (B, N, D) to the stored entries; see :meth:`MemoryAttention.read`."""
        keys, values = bank.flat_keys_values()
        return self.attention.read(tokens, keys, values, bank.valid, fallback, with_entropy)

    def store(
        self, bank: MemoryBank, entry: Tensor, mean: Tensor, stamp: Tensor, active: Tensor | None,
        projected: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Store ``entry`` (B, n, D) with token-mean ``mean`` (B, D) and ``stamp`` (B,).

        Videos with ``active`` (B,) False keep their memory unchanged. ``projected`` passes the
        entry's keys/values when the caller already has them. Returns the (B,) slot written.
        """
        slot = self.select_slot(bank, mean)
        keys, values = projected if projected is not None else self.attention.project_entry(entry)
        new = (entry, keys, values, mean, stamp)
        if active is not None:
            # Inactive videos write their slot's current contents back: one batched write, no branch.
            old = bank.read_slot(slot)
            new = tuple(
                torch.where(active.view(-1, *([1] * (n.dim() - 1))), n, o.to(n.dtype)) for n, o in zip(new, old)
            )
        bank.write(slot, *new)
        return slot


class WorkingMemory(MemoryModule):
    """Stores the frame tokens H_t; when full, drops the oldest entry (FIFO).

    Args:
        dim: token width D. num_heads: attention heads. size: capacity L_w. dropout: attention dropout.
    """

    def __init__(self, dim: int, num_heads: int = 8, size: int = 8, dropout: float = 0.1) -> None:
        super().__init__(dim, num_heads, size, dropout)

    def select_slot(self, bank: MemoryBank, new_mean: Tensor) -> Tensor:
        return oldest_or_free_slot(bank.stamps)
