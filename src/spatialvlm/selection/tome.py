"""ToMe (Bolya et al., ICLR 2023) merge math, for merging *inside* the vision transformer.

Written from the paper and facebookresearch/ToMe (``tome/merge.py``, ``tome/patch/timm.py``):

- ``bipartite_soft_matching``: tokens alternate into sets A (even positions) and B (odd); each A
  token's best B match by cosine of the metric (the attention keys averaged over heads); the r most
  similar edges merge. Result order: unmerged A tokens (in the order of their edge ranking, as the
  original), then all B tokens. r is capped at half the tokens.
- ``merge_wavg``: size-weighted averages; sizes add.
- ``merge_source``: the (B, T, N) 0/1 map from each merged token to the original patches.
- ``tome_schedule``: r per layer so that exactly ``count`` tokens leave the last merging layer.
- Proportional attention (in the attention itself, ``models.siglip``): logits + log(size) of the key.

The models side (``models/siglip.py: tome_siglip_forward``) runs SigLIP's layers with these steps
between attention and MLP, as ToMe's ``ToMeBlock`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def bipartite_soft_matching(metric: torch.Tensor, r: int) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """The merge function of one ToMe step (no class token: SigLIP has none).

    Args:
        metric: (B, T, C) similarity metric (keys averaged over heads).
        r: tokens to remove; capped at T // 2.

    Returns:
        ``merge(x, mode)``: (B, T, C') → (B, T − r, C') reducing merged pairs with ``mode``
        ("sum", "mean", "amax").
    """
    tokens = metric.shape[1]
    r = min(r, tokens // 2)
    if r <= 0:
        return lambda x, mode="mean": x
    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True)
        a, b = unit[:, ::2], unit[:, 1::2]
        scores = a @ b.transpose(-1, -2)
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unmerged_idx = edge_idx[:, r:]
        source_idx = edge_idx[:, :r]
        destination_idx = node_idx[..., None].gather(dim=1, index=source_idx)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        source, destination = x[:, ::2], x[:, 1::2]
        batch, a_count, channels = source.shape
        unmerged = source.gather(1, unmerged_idx.expand(batch, a_count - r, channels))
        moved = source.gather(1, source_idx.expand(batch, r, channels))
        destination = destination.scatter_reduce(1, destination_idx.expand(batch, r, channels), moved, reduce=mode)
        return torch.cat([unmerged, destination], dim=1)

    return merge


def merge_wavg(merge: Callable, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge: (B, T, C), (B, T, 1) → (B, T − r, C), (B, T − r, 1)."""
    if size is None:
        size = torch.ones_like(x[..., :1])
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(merge: Callable, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, N) 0/1 map of merged tokens to original patches (identity before the first merge)."""
    if source is None:
        batch, tokens, _ = x.shape
        source = torch.eye(tokens, device=x.device, dtype=x.dtype)[None].expand(batch, tokens, tokens)
    return merge(source, mode="amax")


def tome_schedule(num_tokens: int, count: int, num_layers: int) -> list[int]:
    """r per layer, constant as far as integers allow, so ``num_tokens`` becomes exactly ``count``.

    ToMe's constant schedule removes r tokens in every layer; here r = ⌈(N − count) / L⌉ in the first
    layers and one less in the rest, each capped at half the tokens present (ToMe's limit). Where the
    cap makes that schedule fall short (few layers, a large reduction), each layer instead removes as
    many as the cap allows until ``count`` is reached (front-loaded).

    Raises:
        ValueError: ``count`` cannot be reached in ``num_layers`` layers (each at most halves).
    """
    if not 1 <= count <= num_tokens:
        raise ValueError(f"count {count} must be in [1, {num_tokens}]")
    for constant in (True, False):
        to_remove, tokens, schedule = num_tokens - count, num_tokens, []
        for layer in range(num_layers):
            wanted = -(-to_remove // (num_layers - layer)) if constant else to_remove
            r = min(wanted, tokens // 2)
            schedule.append(r)
            to_remove -= r
            tokens -= r
        if to_remove == 0:
            return schedule
    raise ValueError(
        f"ToMe cannot go from {num_tokens} to {count} tokens in {num_layers} layers (each at most halves the tokens)"
    )
