"""The memories of a batch of videos, held in tensors: :class:`MemoryBank` and :class:`MemoryState`.

A step updates the state it is given (the returned state is the same object). Without autograd the
tensors are written in place, which keeps a streaming step free of copies; while autograd records,
updated tensors are rebound to new ones so the tensors saved for backward stay intact. Take a
snapshot with :meth:`MemoryState.clone`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


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
