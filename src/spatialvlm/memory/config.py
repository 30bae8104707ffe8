"""Configuration of the VLM² dual memory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


MEMORY_OUTPUTS = ("paper", "residual")
MEMORY_READ_ORDERS = ("read_then_write", "write_then_read")


@dataclass
class DualMemoryConfig:
    """Every knob of :class:`~spatialvlm.memory.DualMemory`, with its default and meaning.

    Args:
        dim: Width D of the tokens that enter and leave the memory (1152 for SigLIP so400m).
        num_heads: Attention heads of the working and of the episodic attention; must divide ``dim``.
        working_size: Capacity L_w of the working memory (entries = whole frames), FIFO.
            The paper's ablation picks 8.
        episodic_size: Capacity L_e of the episodic memory; when full, the entry most similar to
            the new one is replaced. The paper's ablation picks 32.
        dropout: Dropout on the attention probabilities of both memories (training only), as in
            ``nn.MultiheadAttention(dropout=...)``.
        gate_hidden_size: Hidden width of the gate MLP ``[M^w; M^e] (2D) -> hidden -> D``;
            ``None`` means ``dim``. The gate is per token and per channel.
        compress_tokens: Store each entry pooled to this many tokens (``None``: store all N
            tokens, exactly as Algorithm 1). Queries always keep all N tokens; only what is stored
            (and so attended to) shrinks. Off by default.
        compress_mode: How an entry is pooled. ``"grid"``: the N tokens are a square patch grid in
            row-major order and ``compress_tokens`` a square number; adaptive 2D average pooling
            (27×27 -> 14×14). ``"sequence"``: adaptive 1D average pooling along token order.
        record_statistics: Also compute the attention entropy over each memory every step. This
            materialises the attention probabilities (an explicit softmax instead of the fused
            kernel), so it costs time; fill levels, replacement counts and gate means are always
            kept, they are cheap.
        check_finite: Reject NaN/inf in the input tokens (one device sync per step).
        output: What a step returns. ``"paper"``: Algorithm 1's ``M_t = γ M^w + (1 − γ) M^e``
            verbatim. ``"residual"``: ``H_t + out(M_t)`` with ``out`` a D -> D linear
            projection initialised at zero, so an untrained memory returns its input unchanged
            (a memory-on model equals the memory-off model at initialisation) and the current
            frame always reaches the output. The episodic memory stores Algorithm 1's ``M_t`` in
            both modes.
        read_order: ``"read_then_write"``: Algorithm 1's order, the working memory is read before
            ``H_t`` is stored, so ``M^w_t`` sees only earlier frames. ``"write_then_read"``:
            ``H_t`` is stored first (FIFO as usual) and the working memory read then holds it.
            The episodic memory is read before ``M_t`` is stored in both (``M_t`` needs the read).
        checkpoint_frames: Under autograd, recompute each frame's attention and gate activations
            in the backward pass instead of keeping them (activation checkpointing per frame):
            less memory, about one more forward pass of the memory in time. No effect without
            autograd.
    """

    dim: int = 1152
    num_heads: int = 8
    working_size: int = 8
    episodic_size: int = 32
    dropout: float = 0.1
    gate_hidden_size: int | None = None
    compress_tokens: int | None = None
    compress_mode: Literal["grid", "sequence"] = "grid"
    record_statistics: bool = False
    check_finite: bool = True
    output: Literal["paper", "residual"] = "paper"
    read_order: Literal["read_then_write", "write_then_read"] = "read_then_write"
    checkpoint_frames: bool = False

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.num_heads <= 0 or self.dim % self.num_heads:
            raise ValueError(
                f"dim ({self.dim}) must be a positive multiple of num_heads ({self.num_heads})"
            )
        if self.working_size < 1 or self.episodic_size < 1:
            raise ValueError(
                f"working_size ({self.working_size}) and episodic_size ({self.episodic_size}) "
                "must be >= 1"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.compress_mode not in ("grid", "sequence"):
            raise ValueError(f"compress_mode must be 'grid' or 'sequence', got {self.compress_mode!r}")
        if self.output not in MEMORY_OUTPUTS:
            raise ValueError(f"output must be one of {MEMORY_OUTPUTS}, got {self.output!r}")
        if self.read_order not in MEMORY_READ_ORDERS:
            raise ValueError(f"read_order must be one of {MEMORY_READ_ORDERS}, got {self.read_order!r}")
        if self.compress_tokens is not None:
            if self.compress_tokens < 1:
                raise ValueError(f"compress_tokens must be >= 1, got {self.compress_tokens}")
            if self.compress_mode == "grid" and math.isqrt(self.compress_tokens) ** 2 != self.compress_tokens:
                raise ValueError(
                    f"compress_tokens={self.compress_tokens} must be a square number with "
                    "compress_mode='grid' (e.g. 196 = 14×14)"
                )

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads
