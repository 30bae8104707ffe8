"""Multi-head cross-attention from a frame's tokens to the entries stored in one memory.

A read attends only to the slots in use (``MemoryBank.used``) plus, where a memory is empty, the
current frame (the empty-memory rule of :class:`~spatialvlm.memory.DualMemory`). A key mask is
built only when videos of the batch hold different numbers of entries; otherwise the keys are a
plain view of the bank and ``scaled_dot_product_attention`` runs unmasked.

Under autograd the bank is written in place after the read, so the read cannot let
``scaled_dot_product_attention`` save the bank's keys and values. :class:`_BankAttention` runs the
forward on the bank as it is, saves only the query, the small slot → log-entry map and references to
the logged entry tensors (which the graph holds anyway), and in backward rebuilds the keys and values
it read from the log and differentiates a recomputed attention. The saved storage of a clip grows by
one entry per memory and frame instead of by one whole bank.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import attention_entropy, merge_heads, split_heads
from .state import GraphLog, MemoryBank


@dataclass
class BankRead:
    """What one read attends to, fixed before the step writes to the bank.

    Attributes:
        keys, values: (B, H, used·n, d) views of the slots in use (None when ``used`` is 0).
        slot_mask: (B, used) bool, True where a video's slot holds an entry; None when every
            video holds exactly ``used`` entries.
        extra: (keys, values, use) of the current frame, keys/values (B, H, m, d), ``use`` (B,)
            bool or None (= every video): videos with an empty memory attend to it instead.
        graph: the bank's graph log at read time (a copy; None when autograd does not record).
        from_graph: compute the forward from the log too (activation checkpointing recomputes the
            forward after the bank has changed).
    """

    keys: Tensor | None
    values: Tensor | None
    slot_mask: Tensor | None
    extra: tuple[Tensor, Tensor, Tensor | None] | None
    graph: GraphLog | None
    tokens_per_entry: int
    from_graph: bool = False

    @classmethod
    def of(
        cls, bank: MemoryBank, extra: tuple[Tensor, Tensor, Tensor | None] | None, uniform: bool,
        record: bool, from_graph: bool = False,
    ) -> "BankRead":
        """The read of ``bank`` as it is now (``uniform``: all videos fill ``bank.used`` slots)."""
        used = bank.used
        keys = values = slot_mask = None
        if used:
            keys, values = bank.used_keys_values()
            if not uniform:
                slot_mask = bank.valid[:, :used]
        graph = None
        if record and used:
            bank.start_graph()
            graph = bank.graph.copy()
        return cls(keys, values, slot_mask, extra, graph, bank.keys.shape[3], from_graph)

    @property
    def used(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2] // self.tokens_per_entry

    def key_mask(self) -> Tensor | None:
        """(B, 1, 1, S) bool over the keys :meth:`constant_keys` returns, or None (attend to all)."""
        parts = []
        if self.slot_mask is not None:
            batch, slots = self.slot_mask.shape
            parts.append(self.slot_mask[:, :, None].expand(batch, slots, self.tokens_per_entry).reshape(batch, -1))
        if self.extra is not None and self.extra[2] is not None:
            if not parts and self.keys is not None:
                parts.append(torch.ones(self.keys.shape[0], self.keys.shape[2], dtype=torch.bool, device=self.keys.device))
            use = self.extra[2]
            parts.append(use[:, None].expand(-1, self.extra[0].shape[2]))
        elif self.extra is not None and parts:
            parts.append(torch.ones(parts[0].shape[0], self.extra[0].shape[2], dtype=torch.bool, device=parts[0].device))
        if not parts:
            return None
        return torch.cat(parts, dim=1)[:, None, None, :]

    def constant_keys(self) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, S, d) as stored now (bank view, then the current frame)."""
        if self.keys is None:
            return self.extra[0], self.extra[1]
        if self.extra is None:
            return self.keys, self.values
        return torch.cat([self.keys, self.extra[0].to(self.keys.dtype)], 2), torch.cat([self.values, self.extra[1].to(self.values.dtype)], 2)


def _keys_from_log(source: Tensor, used: int, log_keys, log_values, extra_keys, extra_values) -> tuple[Tensor, Tensor]:
    """Keys and values (B, H, S, d) of a read, rebuilt from the graph log (differentiable)."""
    graph = GraphLog(list(log_keys), list(log_values), source[:, :used], 0)
    keys, values = graph.gather()
    keys, values = keys.flatten(2, 3), values.flatten(2, 3)
    if extra_keys is not None:
        keys = torch.cat([keys, extra_keys.to(keys.dtype)], 2)
        values = torch.cat([values, extra_values.to(values.dtype)], 2)
    return keys, values


def _sdpa(query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
    # Keys/values are cast to the query's dtype explicitly (bf16 autocast or not), so the forward
    # and the recomputation in backward run the same kernel on the same numbers.
    return F.scaled_dot_product_attention(
        query, keys.to(query.dtype), values.to(query.dtype), attn_mask=mask, dropout_p=dropout_p
    )


class _BankAttention(torch.autograd.Function):
    """Attention over a bank that is written in place later; see the module docstring."""

    @staticmethod
    def forward(ctx, query, keys, values, mask, dropout_p, source, used, num_log, extra_keys, extra_values, *log):
        ctx.dropout_p, ctx.used, ctx.num_log = dropout_p, used, num_log
        ctx.has_mask, ctx.has_extra = mask is not None, extra_keys is not None
        ctx.rng = _RngState.capture(query.device) if dropout_p > 0 else None
        with torch.autocast(query.device.type, enabled=False):
            out = _sdpa(query, keys, values, mask, dropout_p)
        optional = [t for t in (mask, extra_keys, extra_values) if t is not None]
        ctx.save_for_backward(query, source, *optional, *log)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, source, *rest = ctx.saved_tensors
        mask = rest.pop(0) if ctx.has_mask else None
        extra_keys, extra_values = (rest.pop(0), rest.pop(0)) if ctx.has_extra else (None, None)
        log_keys, log_values = rest[: ctx.num_log], rest[ctx.num_log :]
        with torch.enable_grad(), torch.autocast(query.device.type, enabled=False), _RngState.restore(ctx.rng):
            inputs = [t.detach().requires_grad_(t.requires_grad) for t in (query, extra_keys, extra_values, *log_keys, *log_values) if t is not None]
            q, *others = inputs
            if ctx.has_extra:
                extra_k, extra_v, *others = others
            else:
                extra_k = extra_v = None
            keys, values = _keys_from_log(source, ctx.used, others[: ctx.num_log], others[ctx.num_log :], extra_k, extra_v)
            out = _sdpa(q, keys, values, mask, ctx.dropout_p)
            wanted = [t for t in inputs if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True) if wanted else ())
        grads_in = [next(grads) if t.requires_grad else None for t in inputs]
        grad_query, *grad_rest = grads_in
        grad_extra = (grad_rest.pop(0), grad_rest.pop(0)) if ctx.has_extra else (None, None)
        return (grad_query, None, None, None, None, None, None, None, *grad_extra, *grad_rest)


class _RngState:
    """The RNG state a dropout forward used, restored for its recomputation in backward."""

    def __init__(self, device: torch.device, cpu: Tensor, accelerator: Tensor | None) -> None:
        self.device, self.cpu, self.accelerator = device, cpu, accelerator

    @classmethod
    def capture(cls, device: torch.device) -> "_RngState":
        accelerator = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(device, torch.get_rng_state(), accelerator)

    @staticmethod
    def restore(state: "_RngState | None"):
        if state is None:
            return contextlib.nullcontext()
        devices = [state.device] if state.accelerator is not None else []

        @contextlib.contextmanager
        def forked():
            with torch.random.fork_rng(devices=devices, device_type=state.device.type):
                torch.set_rng_state(state.cpu)
                if state.accelerator is not None:
                    torch.cuda.set_rng_state(state.accelerator, state.device)
                yield

        return forked()


def attend_bank(query: Tensor, read: BankRead, dropout_p: float = 0.0) -> Tensor:
    """Multi-head attention of ``query`` (B, H, N, d) to a :class:`BankRead`: (B, H, N, d)."""
    mask = read.key_mask()
    extra_keys, extra_values = (read.extra[0], read.extra[1]) if read.extra is not None else (None, None)
    if read.graph is None or read.used == 0:
        # Nothing recorded, or only the current frame's (fresh) keys: a plain read.
        keys, values = read.constant_keys()
        return _sdpa(query, keys, values, mask, dropout_p)
    graph = read.graph
    if read.from_graph:
        keys, values = _keys_from_log(graph.source, read.used, graph.keys, graph.values, extra_keys, extra_values)
        return _sdpa(query, keys, values, mask, dropout_p)
    keys, values = read.constant_keys()
    return _BankAttention.apply(
        query, keys, values, mask, dropout_p, graph.source, read.used, len(graph.keys),
        extra_keys, extra_values, *graph.keys, *graph.values,
    )


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
        self, tokens: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor | None = None, with_entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``tokens`` (B, N, D) to given keys/values (B, H, S, d) where ``key_mask``
        (B, 1, 1, S) is True (None: all). Returns (B, N, D) and, with ``with_entropy``, the (B,)
        entropy."""
        read = BankRead(None, None, None, (keys, values, None), None, 1)
        return self._attend(tokens, read, with_entropy, key_mask)

    def read(self, tokens: Tensor, read: BankRead, with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``tokens`` (B, N, D) to a memory. Returns (B, N, D) and, with
        ``with_entropy``, the (B,) entropy of the attention (nats, mean over heads and queries)."""
        return self._attend(tokens, read, with_entropy)

    def _attend(
        self, tokens: Tensor, read: BankRead, with_entropy: bool, key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        query = split_heads(self.q_proj(tokens), self.num_heads)
        dropout_p = self.dropout if self.training else 0.0
        if key_mask is None:
            out = attend_bank(query, read, dropout_p)
        else:
            out = _sdpa(query, read.extra[0], read.extra[1], key_mask, dropout_p)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                keys, _ = read.constant_keys()
                mask = read.key_mask() if key_mask is None else key_mask
                entropy = attention_entropy(query.detach(), keys.to(query.dtype), mask)
        return self.out_proj(merge_heads(out)), entropy
