"""Working memory: a sliding window over the last ``size`` frames (Algorithm 1, lines 1 and 8-14)."""

from __future__ import annotations

import abc

from torch import Tensor, nn

from .attention import BankRead, MemoryAttention
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

    def read(self, tokens: Tensor, read: BankRead, with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``tokens`` (B, N, D) to the stored entries; see :class:`BankRead`."""
        return self.attention.read(tokens, read, with_entropy)

    def store(
        self, bank: MemoryBank, entry: Tensor, mean: Tensor, stamp: Tensor, active: Tensor | None,
        projected: tuple[Tensor, Tensor] | None = None, record: bool = False,
    ) -> Tensor:
        """Store ``entry`` (B, n, D) with token-mean ``mean`` (B, D) and ``stamp`` (B,), in place.

        Videos with ``active`` (B,) False keep their memory unchanged. ``projected`` passes the
        entry's keys/values when the caller already has them; ``record``: autograd records the step
        (see :meth:`MemoryBank.write`). Returns the (B,) slot written.
        """
        slot = self.select_slot(bank, mean)
        keys, values = projected if projected is not None else self.attention.project_entry(entry)
        bank.write(slot, entry, keys, values, mean, stamp, active, record)
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
