"""Frozen copy of the dual memory as it was before issue 14 (commit 281ff13), for benchmarks only.

``bench_memory.py`` measures "before" and "after" in one script, so the implementation that issue
14 replaced is kept here verbatim (its modules concatenated, relative imports removed): banks
allocated at capacity, every read over all slots with a mask, and a clone of every written bank
under autograd. Class names are unchanged (import them as ``legacy_memory.DualMemory``); nothing
in the library imports this file. Its parameters have the same names and shapes as the library's
``DualMemory(output="paper", read_order="read_then_write")``, so one state dict loads into both.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---- memory/config.py: Configuration of the VLM² dual memory.
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


# ---- memory/ops.py: Pure tensor functions behind the dual memory (no module state, no Python loops over videos
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


def slot_key_mask(valid: Tensor, tokens_per_entry: int) -> Tensor:
    """(B, L) bool slot validity -> (B, 1, 1, L·n) key mask for attention (True = attend)."""
    batch, slots = valid.shape
    return valid[:, :, None].expand(batch, slots, tokens_per_entry).reshape(batch, 1, 1, -1)


def attend(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    key_mask: Tensor,
    dropout_p: float = 0.0,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Masked multi-head attention; optionally also the entropy of the attention distribution.

    Args:
        query: (B, H, N, d).
        keys, values: (B, H, S, d).
        key_mask: (B, 1, 1, S) bool, True where a key may be attended to; every video needs at
            least one True.
        dropout_p: dropout on the attention probabilities.
        with_entropy: compute the attention explicitly and return its entropy.

    Returns:
        (B, H, N, d) output and, with ``with_entropy``, (B,) entropy in nats of each query's
        distribution over the S keys, averaged over heads and queries (else ``None``).
    """
    if not with_entropy:
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=key_mask, dropout_p=dropout_p)
        return out, None
    scores = (query @ keys.transpose(-2, -1)) / math.sqrt(query.shape[-1])
    # The most negative finite value (not -inf) keeps p·log p at masked keys 0 instead of NaN.
    log_probs = scores.masked_fill_(~key_mask, torch.finfo(scores.dtype).min).log_softmax(dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(dim=-1).mean(dim=(1, 2))
    out = F.dropout(probs, p=dropout_p, training=dropout_p > 0) @ values
    return out, entropy.detach()


# ---- memory/state.py: The memories of a batch of videos, held in tensors: :class:`MemoryBank` and :class:`Memory
def _write(target: Tensor, index: tuple, value: Tensor) -> Tensor:
    """``target[index] = value``; in place unless autograd must see the write as a new tensor."""
    if torch.is_grad_enabled() and (target.requires_grad or value.requires_grad):
        target = target.clone()
    target[index] = value
    return target


def _zero_videos(target: Tensor, videos: Tensor) -> Tensor:
    """Zero the rows (dim 0) of ``target`` selected by the (B,) bool ``videos``."""
    mask = videos.view(-1, *([1] * (target.dim() - 1)))
    if torch.is_grad_enabled() and target.requires_grad:
        return target.masked_fill(mask, 0)
    return target.masked_fill_(mask, 0)


@dataclass
class MemoryBank:
    """One fixed-capacity memory (working or episodic) for B videos.

    Entries are whole token sets. Slots are physical positions; the logical order of the entries
    (oldest first for the working memory, Algorithm 1's list order for the episodic memory) is the
    order of their insertion stamps, because both memories only ever append at the end of their
    list and delete from inside it.

    Attributes:
        entries: (B, L, n, D) stored token sets, detached (for inspection, similarity and saving;
            gradients flow through ``keys`` and ``values``).
        keys, values: (B, H, L, n, d) the stored entries projected by this memory's attention,
            cached so a step only projects the new entry.
        means: (B, L, D) token-mean of each stored entry before compression (what the episodic
            replacement compares).
        stamps: (B, L) int64 frame index at which the entry was written; -1 marks a free slot.
    """

    entries: Tensor
    keys: Tensor
    values: Tensor
    means: Tensor
    stamps: Tensor

    @classmethod
    def empty(
        cls, batch_size: int, slots: int, tokens: int, dim: int, num_heads: int,
        device: torch.device | str | None, dtype: torch.dtype,
    ) -> "MemoryBank":
        head_dim = dim // num_heads
        zeros = dict(device=device, dtype=dtype)
        return cls(
            entries=torch.zeros(batch_size, slots, tokens, dim, **zeros),
            keys=torch.zeros(batch_size, num_heads, slots, tokens, head_dim, **zeros),
            values=torch.zeros(batch_size, num_heads, slots, tokens, head_dim, **zeros),
            means=torch.zeros(batch_size, slots, dim, **zeros),
            stamps=torch.full((batch_size, slots), -1, dtype=torch.long, device=device),
        )

    @property
    def valid(self) -> Tensor:
        """(B, L) bool: which slots hold an entry."""
        return self.stamps >= 0

    @property
    def fill(self) -> Tensor:
        """(B,) int64 number of stored entries."""
        return self.valid.sum(dim=-1)

    def flat_keys_values(self) -> tuple[Tensor, Tensor]:
        """Keys and values as (B, H, L·n, d) views, the layout attention reads."""
        batch, heads, slots, tokens, head_dim = self.keys.shape
        shape = (batch, heads, slots * tokens, head_dim)
        return self.keys.view(shape), self.values.view(shape)

    def write(
        self, slot: Tensor, entry: Tensor, keys: Tensor, values: Tensor, mean: Tensor, stamp: Tensor,
    ) -> None:
        """Store one entry per video at ``slot`` (B,): entry (B, n, D), keys/values (B, H, n, d),
        mean (B, D), stamp (B,)."""
        videos = torch.arange(slot.shape[0], device=slot.device)
        self.entries = _write(self.entries, (videos, slot), entry.detach())
        self.keys = _write(self.keys, (videos, slice(None), slot), keys)
        self.values = _write(self.values, (videos, slice(None), slot), values)
        self.means = _write(self.means, (videos, slot), mean.detach())
        self.stamps = _write(self.stamps, (videos, slot), stamp)

    def read_slot(self, slot: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The current contents of ``slot`` (B,), in :meth:`write`'s argument order."""
        videos = torch.arange(slot.shape[0], device=slot.device)
        return (
            self.entries[videos, slot], self.keys[videos, :, slot], self.values[videos, :, slot],
            self.means[videos, slot], self.stamps[videos, slot],
        )

    def ordered_entries(self, video: int) -> Tensor:
        """(n_stored, n, D) the entries of one video in list order (by insertion stamp)."""
        stamps = self.stamps[video]
        order = stamps.argsort()
        return self.entries[video, order[stamps[order] >= 0]]

    def reset(self, videos: Tensor) -> None:
        for name in ("entries", "keys", "values", "means"):
            setattr(self, name, _zero_videos(getattr(self, name), videos))
        self.stamps = self.stamps.masked_fill(videos[:, None], -1)

    def apply(self, fn) -> "MemoryBank":
        return MemoryBank(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclass
class MemoryCounters:
    """Cheap running statistics per video, updated every step (all (B,) unless stated).

    Attributes:
        frames_seen: int64 real frames processed since the last reset (also the insertion clock).
        replacements: (B, L_e) int64 how often each episodic slot was overwritten by replacement.
        gate_sum: sum over frames of the mean gate value γ (mean over tokens and channels).
        working_entropy_sum, episodic_entropy_sum: sums of the per-frame attention entropy (nats),
            only over frames processed with ``record_statistics``.
        entropy_frames: int64 number of frames that contributed to the entropy sums.
        last_gate: mean γ of the last step (NaN where the video had no frame in it).
        last_replaced: int64 episodic slot replaced at the last step, -1 when none was.
        last_working_entropy, last_episodic_entropy: the last step's entropies (NaN if not recorded).
    """

    frames_seen: Tensor
    replacements: Tensor
    gate_sum: Tensor
    working_entropy_sum: Tensor
    episodic_entropy_sum: Tensor
    entropy_frames: Tensor
    last_gate: Tensor
    last_replaced: Tensor
    last_working_entropy: Tensor
    last_episodic_entropy: Tensor

    @classmethod
    def zeros(cls, batch_size: int, episodic_size: int, device, dtype: torch.dtype) -> "MemoryCounters":
        def count(*shape):
            return torch.zeros(*shape, dtype=torch.long, device=device)

        def real(fill=0.0):
            return torch.full((batch_size,), fill, dtype=dtype, device=device)

        return cls(
            frames_seen=count(batch_size), replacements=count(batch_size, episodic_size),
            gate_sum=real(), working_entropy_sum=real(), episodic_entropy_sum=real(),
            entropy_frames=count(batch_size), last_gate=real(float("nan")),
            last_replaced=torch.full((batch_size,), -1, dtype=torch.long, device=device),
            last_working_entropy=real(float("nan")), last_episodic_entropy=real(float("nan")),
        )

    def reset(self, videos: Tensor) -> None:
        for f in dataclasses.fields(self):
            tensor = getattr(self, f.name)
            fill = -1 if f.name == "last_replaced" else (float("nan") if f.name.startswith("last_") else 0)
            mask = videos.view(-1, *([1] * (tensor.dim() - 1)))
            setattr(self, f.name, tensor.masked_fill(mask, fill))

    def apply(self, fn) -> "MemoryCounters":
        return MemoryCounters(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclass
class MemoryState:
    """Working and episodic memories of B videos, plus their running statistics.

    Create with :meth:`DualMemory.init_state`. The banks are allocated on the first step, when the
    number of tokens per frame is known (or at once when ``init_state`` is given ``num_tokens``).

    Attributes:
        batch_size, dim, num_heads, working_size, episodic_size: fixed at creation.
        num_tokens: N tokens per input frame (``None`` until the first step).
        working, episodic: the two :class:`MemoryBank` (``None`` until allocated).
        counters: :class:`MemoryCounters`.
        may_have_empty: host-side flag, False once every video is known to hold an entry; lets a
            step skip the empty-memory fallback without a device sync.
    """

    batch_size: int
    dim: int
    num_heads: int
    working_size: int
    episodic_size: int
    counters: MemoryCounters
    num_tokens: int | None = None
    working: MemoryBank | None = None
    episodic: MemoryBank | None = None
    may_have_empty: bool = field(default=True)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    # -- inspection ------------------------------------------------------------------------------
    def working_entries(self, video: int) -> Tensor:
        """(n_stored, n, D) working-memory entries of one video, oldest first."""
        return self._entries(self.working, video)

    def episodic_entries(self, video: int) -> Tensor:
        """(n_stored, n, D) episodic entries of one video in Algorithm 1's list order."""
        return self._entries(self.episodic, video)

    def _entries(self, bank: MemoryBank | None, video: int) -> Tensor:
        if not -self.batch_size <= video < self.batch_size:
            raise IndexError(f"video index {video} out of range for a state of {self.batch_size} videos")
        if bank is None:
            return torch.zeros(0, self.num_tokens or 0, self.dim, device=self.device, dtype=self.dtype)
        return bank.ordered_entries(video)

    @property
    def working_fill(self) -> Tensor:
        """(B,) int64 entries held by each working memory."""
        return self._fill(self.working)

    @property
    def episodic_fill(self) -> Tensor:
        """(B,) int64 entries held by each episodic memory."""
        return self._fill(self.episodic)

    def _fill(self, bank: MemoryBank | None) -> Tensor:
        if bank is None:
            return torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        return bank.fill

    # -- lifecycle -------------------------------------------------------------------------------
    def reset(self, mask: Tensor | None = None) -> "MemoryState":
        """Empty the memories and statistics of the videos where ``mask`` (B,) bool is True (all
        videos when ``None``), e.g. at a video boundary. In place; returns ``self``."""
        if mask is None:
            mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        if mask.shape != (self.batch_size,) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape ({self.batch_size},), got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        mask = mask.to(self.device)
        for bank in (self.working, self.episodic):
            if bank is not None:
                bank.reset(mask)
        self.counters.reset(mask)
        self.may_have_empty = True
        return self

    def _apply(self, fn, **changes) -> "MemoryState":
        return dataclasses.replace(
            self,
            counters=self.counters.apply(fn),
            working=None if self.working is None else self.working.apply(fn),
            episodic=None if self.episodic is None else self.episodic.apply(fn),
            **changes,
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MemoryState":
        """A copy on ``device`` with floating tensors cast to ``dtype`` (counts stay int64)."""
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if (dtype is not None and t.is_floating_point()) else None)

        probe = move(torch.zeros((), dtype=self.dtype, device=self.device))
        return self._apply(move, device=probe.device, dtype=probe.dtype)

    def detach(self) -> "MemoryState":
        """A state sharing storage but cut from the autograd graph (truncated backpropagation)."""
        return self._apply(Tensor.detach)

    def clone(self) -> "MemoryState":
        """An independent copy (steps on either leave the other unchanged)."""
        return self._apply(Tensor.clone)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the state to a safetensors file (resume a stream later with :meth:`load`)."""
        from safetensors.torch import save_file

        tensors = {f"counters.{f.name}": getattr(self.counters, f.name) for f in dataclasses.fields(self.counters)}
        for name, bank in (("working", self.working), ("episodic", self.episodic)):
            if bank is not None:
                tensors.update({f"{name}.{f.name}": getattr(bank, f.name) for f in dataclasses.fields(bank)})
        metadata = {
            "batch_size": self.batch_size, "dim": self.dim, "num_heads": self.num_heads,
            "working_size": self.working_size, "episodic_size": self.episodic_size,
            "num_tokens": -1 if self.num_tokens is None else self.num_tokens,
            "may_have_empty": int(self.may_have_empty), "dtype": str(self.dtype).removeprefix("torch."),
        }
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            str(path), metadata={k: str(v) for k, v in metadata.items()},
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "MemoryState":
        """Read a state written by :meth:`save`."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if "batch_size" not in meta:
            raise ValueError(f"{path} is not a MemoryState file (no memory metadata)")
        tensors = load_file(str(path), device=str(device))

        def group(prefix: str) -> dict[str, Tensor]:
            return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

        num_tokens = int(meta["num_tokens"])
        working, episodic = group("working"), group("episodic")
        return cls(
            batch_size=int(meta["batch_size"]), dim=int(meta["dim"]), num_heads=int(meta["num_heads"]),
            working_size=int(meta["working_size"]), episodic_size=int(meta["episodic_size"]),
            counters=MemoryCounters(**group("counters")),
            num_tokens=None if num_tokens < 0 else num_tokens,
            working=MemoryBank(**working) if working else None,
            episodic=MemoryBank(**episodic) if episodic else None,
            may_have_empty=bool(int(meta["may_have_empty"])),
            device=torch.device(device), dtype=getattr(torch, meta["dtype"]),
        )


# ---- memory/attention.py: Multi-head cross-attention from a frame's tokens to the entries stored in one memory.
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


# ---- memory/working.py: Working memory: a sliding window over the last ``size`` frames (Algorithm 1, lines 1 and 8
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


# ---- memory/episodic.py: Episodic memory: long-term store with similarity-based replacement (Algorithm 1, lines 2, 
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


# ---- memory/dual.py: VLM² dual memory (Algorithm 1), batched over videos, one frame per step.
class DualMemory(nn.Module):
    """Working + episodic memory with a learned gate (VLM², Algorithm 1).

    Per frame t and video::

        M^w = WorkingAttention(Q = H_t, KV = W_t)
        M^e = EpisodicAttention(Q = H_t, KV = E_t)
        γ   = σ(MLP([M^w ; M^e]))                 per token and channel
        M_t = γ ⊙ M^w + (1 − γ) ⊙ M^e             (returned)
        W  <- H_t   FIFO: append, or drop the oldest then append
        E  <- M_t   append, or delete argmax_i cos(mean M_t, mean E_i) then append

    Empty memory (the first frame after a reset): a memory with no entry is read as if it held the
    current frame, i.e. each attention attends to H_t's own tokens through its own key/value
    projections. So M_0 is a learned function of H_0 (not zeros), both attentions and the gate get
    gradients from the first frame on (single-frame videos train every part), and the entry E
    stores at t = 0 is a meaningful one. From t = 1 on both memories hold entries and the rule no
    longer applies.

    Args:
        dim: token width D.
        num_heads, working_size, episodic_size, dropout, and keyword-only knobs: see
            :class:`DualMemoryConfig`. ``config`` may be given instead of the individual knobs.
    """

    def __init__(
        self,
        dim: int | None = None,
        num_heads: int = 8,
        working_size: int = 8,
        episodic_size: int = 32,
        dropout: float = 0.1,
        *,
        gate_hidden_size: int | None = None,
        compress_tokens: int | None = None,
        compress_mode: str = "grid",
        record_statistics: bool = False,
        check_finite: bool = True,
        config: DualMemoryConfig | None = None,
    ) -> None:
        super().__init__()
        if config is None:
            if dim is None:
                raise ValueError("DualMemory needs `dim` (or a `config`)")
            config = DualMemoryConfig(
                dim=dim, num_heads=num_heads, working_size=working_size, episodic_size=episodic_size,
                dropout=dropout, gate_hidden_size=gate_hidden_size, compress_tokens=compress_tokens,
                compress_mode=compress_mode, record_statistics=record_statistics, check_finite=check_finite,
            )
        self.config = config
        dim = config.dim
        hidden = config.gate_hidden_size or dim
        self.working = WorkingMemory(dim, config.num_heads, config.working_size, config.dropout)
        self.episodic = EpisodicMemory(dim, config.num_heads, config.episodic_size, config.dropout)
        self.gate = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    @classmethod
    def from_config(cls, config: DualMemoryConfig) -> "DualMemory":
        return cls(config=config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())

    # -- state -----------------------------------------------------------------------------------
    def init_state(
        self, batch_size: int, *, num_tokens: int | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> MemoryState:
        """Empty memories for ``batch_size`` videos.

        Device and dtype default to the module's parameters. The banks are allocated on the first
        step (when N is known) unless ``num_tokens`` (N per frame) is given.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        reference = next(self.parameters())
        device = torch.device(device) if device is not None else reference.device
        dtype = dtype or reference.dtype
        cfg = self.config
        state = MemoryState(
            batch_size=batch_size, dim=cfg.dim, num_heads=cfg.num_heads,
            working_size=cfg.working_size, episodic_size=cfg.episodic_size,
            counters=MemoryCounters.zeros(batch_size, cfg.episodic_size, device, dtype),
            device=device, dtype=dtype,
        )
        if num_tokens is not None:
            self._allocate(state, num_tokens)
        return state

    def stored_tokens(self, num_tokens: int) -> int:
        """Tokens per stored entry for frames of ``num_tokens`` tokens."""
        target = self.config.compress_tokens
        return num_tokens if target is None else min(target, num_tokens)

    def _allocate(self, state: MemoryState, num_tokens: int) -> None:
        cfg = self.config
        tokens = self.stored_tokens(num_tokens)
        if cfg.compress_tokens is not None and cfg.compress_mode == "grid" and math.isqrt(num_tokens) ** 2 != num_tokens:
            raise ValueError(
                f"grid compression needs a square patch grid, got N={num_tokens} tokens per frame; "
                "use compress_mode='sequence'"
            )
        bank = dict(tokens=tokens, dim=cfg.dim, num_heads=cfg.num_heads, device=state.device, dtype=state.dtype)
        state.num_tokens = num_tokens
        state.working = MemoryBank.empty(state.batch_size, cfg.working_size, **bank)
        state.episodic = MemoryBank.empty(state.batch_size, cfg.episodic_size, **bank)

    # -- one frame -------------------------------------------------------------------------------
    def forward(
        self, h: Tensor, state: MemoryState | None = None, frame_mask: Tensor | None = None,
    ) -> tuple[Tensor, MemoryState]:
        """One step of Algorithm 1 for every video of the batch.

        Args:
            h: (B, N, D) tokens of the current frame of each video (H_t).
            state: the videos' memories (``None``: fresh memories). Updated and returned.
            frame_mask: optional (B,) bool, False for videos that have no frame at this step: their
                memory is left unchanged and their output is zeros.

        Returns:
            fused: (B, N, D) memory output M_t.
            state: the same state object, advanced by one frame.
        """
        if state is None:
            state = self.init_state(h.shape[0] if h.dim() == 3 else 1, device=h.device, dtype=h.dtype)
        self._check_step(h, state, frame_mask)
        if state.working is None:
            self._allocate(state, h.shape[1])
        cfg = self.config
        working, episodic = state.working, state.episodic
        record = cfg.record_statistics

        stored_h = pool_tokens(h, cfg.compress_tokens, cfg.compress_mode)
        working_kv = self.working.attention.project_entry(stored_h)
        fallback_w = fallback_e = None
        if state.may_have_empty:
            fallback_w = (*working_kv, ~working.valid.any(dim=-1))
            fallback_e = (*self.episodic.attention.project_entry(stored_h), ~episodic.valid.any(dim=-1))

        memory_w, entropy_w = self.working.read(h, working, fallback_w, record)
        memory_e, entropy_e = self.episodic.read(h, episodic, fallback_e, record)
        gate = torch.sigmoid(self.gate(torch.cat([memory_w, memory_e], dim=-1)))
        fused = memory_e + gate * (memory_w - memory_e)

        stamp = state.counters.frames_seen
        self.working.store(working, stored_h, h.mean(dim=1), stamp, frame_mask, projected=working_kv)
        was_full = episodic.valid.all(dim=-1)
        stored_m = pool_tokens(fused, cfg.compress_tokens, cfg.compress_mode)
        slot = self.episodic.store(episodic, stored_m, fused.mean(dim=1), stamp, frame_mask)

        self._count(state, frame_mask, gate, slot, was_full, entropy_w, entropy_e)
        if frame_mask is None:
            state.may_have_empty = False
        else:
            fused = fused.masked_fill(~frame_mask[:, None, None], 0.0)
            if state.may_have_empty:
                state.may_have_empty = bool((~working.valid.any(dim=-1)).any())
        return fused, state

    @torch.no_grad()
    def _count(
        self, state: MemoryState, active: Tensor | None, gate: Tensor, slot: Tensor, was_full: Tensor,
        entropy_w: Tensor | None, entropy_e: Tensor | None,
    ) -> None:
        counters = state.counters
        if active is None:
            active = torch.ones_like(was_full)
        gate_mean = gate.mean(dim=(1, 2)).to(counters.gate_sum.dtype)
        replaced = was_full & active
        counters.frames_seen = counters.frames_seen + active
        counters.gate_sum = counters.gate_sum + gate_mean.masked_fill(~active, 0.0)
        counters.last_gate = gate_mean.masked_fill(~active, math.nan)
        counters.last_replaced = slot.masked_fill(~replaced, -1)
        counters.replacements = counters.replacements + F.one_hot(slot, state.episodic_size) * replaced[:, None]
        if entropy_w is not None:
            entropy_w = entropy_w.to(counters.gate_sum.dtype).masked_fill(~active, math.nan)
            entropy_e = entropy_e.to(counters.gate_sum.dtype).masked_fill(~active, math.nan)
            counters.working_entropy_sum = counters.working_entropy_sum + entropy_w.nan_to_num(0.0)
            counters.episodic_entropy_sum = counters.episodic_entropy_sum + entropy_e.nan_to_num(0.0)
            counters.entropy_frames = counters.entropy_frames + active
            counters.last_working_entropy, counters.last_episodic_entropy = entropy_w, entropy_e
        else:
            counters.last_working_entropy = torch.full_like(counters.last_gate, math.nan)
            counters.last_episodic_entropy = torch.full_like(counters.last_gate, math.nan)

    def _check_step(self, h: Tensor, state: MemoryState, frame_mask: Tensor | None) -> None:
        batch, dim = state.batch_size, self.config.dim
        tokens = "N" if state.num_tokens is None else state.num_tokens
        expected = f"(B, N, D) = ({batch}, {tokens}, {dim})"
        if h.dim() != 3:
            raise ValueError(f"h must have shape {expected}, got {tuple(h.shape)} (rank {h.dim()})")
        if h.shape[2] != dim:
            raise ValueError(f"h must have shape {expected}; its width D is {h.shape[2]}, expected {dim}")
        if h.shape[0] != batch:
            raise ValueError(
                f"h must have shape {expected}; it holds {h.shape[0]} videos but the state holds {batch}"
            )
        if state.num_tokens is not None and h.shape[1] != state.num_tokens:
            raise ValueError(
                f"h must have shape {expected}; it has {h.shape[1]} tokens per frame, the state "
                f"was built for {state.num_tokens}"
            )
        if h.shape[1] == 0:
            raise ValueError(f"h must have shape {expected} with N >= 1, got N = 0")
        if h.dtype != state.dtype or h.device != state.device:
            raise ValueError(
                f"h is {h.dtype} on {h.device} but the state is {state.dtype} on {state.device}; "
                "use state.to(...) or init_state(dtype=..., device=...)"
            )
        if frame_mask is not None and (frame_mask.shape != (batch,) or frame_mask.dtype != torch.bool):
            raise ValueError(
                f"frame_mask must be a bool tensor of shape (B,) = ({batch},), got "
                f"{tuple(frame_mask.shape)} {frame_mask.dtype}"
            )
        if self.config.check_finite:
            finite = torch.isfinite(h).flatten(1).all(dim=1)
            if frame_mask is not None:
                finite = finite | ~frame_mask
            if not bool(finite.all()):
                bad = (~finite).nonzero().flatten().tolist()
                raise ValueError(f"h (B, N, D) contains NaN or inf for video(s) {bad}")

    # -- whole clips -----------------------------------------------------------------------------
    def process(
        self, frames: Tensor, frame_mask: Tensor | None = None, state: MemoryState | None = None,
        progress: bool = False,
    ) -> tuple[Tensor, MemoryState]:
        """Run Algorithm 1 over whole clips, frame by frame.

        Args:
            frames: (B, T, N, D) fused visual tokens; shorter videos padded.
            frame_mask: (B, T) bool, True for real frames (``None``: all real). A masked frame
                changes no state and yields zeros.
            state: memories to continue from (``None``: fresh).
            progress: show a tqdm bar over frames.

        Returns:
            fused: (B, T, N, D), zeros at masked frames.
            state: the memories after the last frame.
        """
        if frames.dim() != 4 or frames.shape[-1] != self.config.dim:
            raise ValueError(
                f"frames must have shape (B, T, N, D) with D = {self.config.dim}, got {tuple(frames.shape)}"
            )
        batch, steps = frames.shape[:2]
        if frame_mask is not None and (frame_mask.shape != (batch, steps) or frame_mask.dtype != torch.bool):
            raise ValueError(
                f"frame_mask must be a bool tensor of shape (B, T) = ({batch}, {steps}), got "
                f"{tuple(frame_mask.shape)} {frame_mask.dtype}"
            )
        if state is None:
            state = self.init_state(batch, device=frames.device, dtype=frames.dtype)
        # One host copy of the mask decides per step whether a mask is needed at all.
        columns = None if frame_mask is None else frame_mask.cpu()
        outputs = []
        iterator = range(steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="memory", unit="frame")
        for t in iterator:
            step_mask = None
            if columns is not None and not bool(columns[:, t].all()):
                if not bool(columns[:, t].any()):
                    outputs.append(torch.zeros_like(frames[:, t]))
                    continue
                step_mask = frame_mask[:, t]
            fused, state = self(frames[:, t], state, step_mask)
            outputs.append(fused)
        if not outputs:
            return frames.new_zeros(frames.shape), state
        return torch.stack(outputs, dim=1), state
