"""Pure tensor functions behind the dual memory (no module state, no Python loops over videos).

Shapes: B videos, L slots of a memory, N tokens of a frame, n tokens of a stored entry (n = N
unless entries are compressed), D channels, H heads of width d = D / H.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, n, D) -> (B, H, n, d), a view."""
    batch, tokens, dim = x.shape
    return x.view(batch, tokens, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, n, d) -> (B, n, H·d)."""
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def pool_tokens(x: Tensor, num_tokens: int | None, mode: str = "grid") -> Tensor:
    """Average-pool each token set to ``num_tokens`` tokens (``None`` or ``>= N``: unchanged).

    Args:
        x: (B, N, D) token sets. With ``mode="grid"`` the N tokens are a square patch grid in
            row-major order.
        num_tokens: target count; a square number with ``mode="grid"``.
        mode: ``"grid"`` (adaptive 2D average pooling) or ``"sequence"`` (adaptive 1D pooling).

    Returns:
        (B, num_tokens, D). Average pooling commutes with the key/value projections (their
        weights sum to one), so pooling entries is the same as pooling their keys and values.
    """
    batch, tokens, dim = x.shape
    if num_tokens is None or num_tokens >= tokens:
        return x
    if mode == "sequence":
        return F.adaptive_avg_pool1d(x.transpose(1, 2), num_tokens).transpose(1, 2)
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(
            f"grid compression needs a square patch grid, got N={tokens} tokens per frame; "
            "use compress_mode='sequence' for token sets that are not square grids"
        )
    target = math.isqrt(num_tokens)
    grid = x.transpose(1, 2).reshape(batch, dim, side, side)
    return F.adaptive_avg_pool2d(grid, target).flatten(2).transpose(1, 2)


def oldest_or_free_slot(stamps: Tensor) -> Tensor:
    """FIFO write position: the first free slot, else the oldest entry.

    Args:
        stamps: (B, L) int64 insertion times, -1 for a free slot.

    Returns:
        (B,) slot index. Free slots hold -1, below every real stamp, and argmin returns the first
        minimum, so a filling memory appends in slot order and a full one overwrites the oldest.
    """
    return stamps.argmin(dim=-1)


def most_similar_slot(new_mean: Tensor, means: Tensor, stamps: Tensor) -> Tensor:
    """The stored entry whose token-mean is most cosine-similar to the new entry's.

    Args:
        new_mean: (B, D) token-mean of the new entry.
        means: (B, L, D) token-means of the stored entries.
        stamps: (B, L) insertion times, -1 for a free slot (never chosen).

    Returns:
        (B,) slot index. Ties go to the entry that comes first in Algorithm 1's list, i.e. the
        one inserted earliest (the list keeps insertion order: deleted entries leave it and new
        ones are appended at its end), whatever physical slot it sits in.
    """
    cosine = torch.einsum("bd,bld->bl", F.normalize(new_mean, dim=-1), F.normalize(means, dim=-1))
    cosine = cosine.masked_fill(stamps < 0, -math.inf)
    is_best = cosine == cosine.amax(dim=-1, keepdim=True)
    # Among the tied best slots pick the smallest stamp; non-best slots get a stamp no tie can beat.
    never = torch.iinfo(stamps.dtype).max
    return torch.where(is_best, stamps, never).argmin(dim=-1)


def attention_entropy(query: Tensor, keys: Tensor, key_mask: Tensor | None) -> Tensor:
    """Entropy of the attention distribution (a statistic; computed explicitly, no dropout).

    Args:
        query: (B, H, N, d).
        keys: (B, H, S, d).
        key_mask: (B, 1, 1, S) bool, True where a key may be attended to, or None (all keys).

    Returns:
        (B,) entropy in nats of each query's distribution over the S keys, averaged over heads and
        queries.
    """
    scores = (query @ keys.transpose(-2, -1)) / math.sqrt(query.shape[-1])
    if key_mask is not None:
        # The most negative finite value (not -inf) keeps p·log p at masked keys 0 instead of NaN.
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    log_probs = scores.float().log_softmax(dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1).mean(dim=(1, 2)).to(query.dtype)
