"""Multi-head cross-attention from a frame's tokens to the entries stored in one memory."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .ops import attend, merge_heads, slot_key_mask, split_heads


class MemoryAttention(nn.Module):
    """``Attention(Q = current tokens, KV = stored entries)`` with cached key/value projections.

    Keys and values of an entry are projected once, when the entry is stored
    (:meth:`project_entry`), and kept in the :class:`~spatialvlm.memory.MemoryBank`; a step then
    only projects the queries and the one new entry.

    Args:
        dim: token width D.
        num_heads: heads H (D must be divisible by H).
        dropout: dropout on the attention probabilities while training.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def project_entry(self, entry: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n, D) entry -> keys, values, each (B, H, n, d)."""
        batch, tokens, dim = entry.shape
        kv = self.kv_proj(entry).view(batch, tokens, 2, self.num_heads, dim // self.num_heads)
        kv = kv.permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def forward(
        self, tokens: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor, with_entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``tokens`` (B, N, D) to keys/values (B, H, S, d) where ``key_mask``
        (B, 1, 1, S) is True. Returns (B, N, D) and, with ``with_entropy``, the (B,) entropy."""
        query = split_heads(self.q_proj(tokens), self.num_heads)
        dropout_p = self.dropout if self.training else 0.0
        out, entropy = attend(query, keys, values, key_mask, dropout_p, with_entropy)
        return self.out_proj(merge_heads(out)), entropy

    def read(
        self, tokens: Tensor, bank_keys: Tensor, bank_values: Tensor, valid: Tensor,
        fallback: tuple[Tensor, Tensor, Tensor] | None = None, with_entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Read a memory: ``bank_keys``/``bank_values`` (B, H, L·n, d), ``valid`` (B, L) slots.

        ``fallback = (keys, values, use)`` appends extra keys/values (B, H, m, d) that videos with
        ``use`` (B,) True attend to as well: the empty-memory rule of :class:`DualMemory`.
        """
        key_mask = slot_key_mask(valid, bank_keys.shape[2] // valid.shape[1])
        if fallback is not None:
            extra_keys, extra_values, use = fallback
            bank_keys = torch.cat([bank_keys, extra_keys], dim=2)
            bank_values = torch.cat([bank_values, extra_values], dim=2)
            extra_mask = use[:, None, None, None].expand(-1, 1, 1, extra_keys.shape[2])
            key_mask = torch.cat([key_mask, extra_mask], dim=-1)
        return self(tokens, bank_keys, bank_values, key_mask, with_entropy)
