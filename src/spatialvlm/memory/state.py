"""The memories of a batch of videos, held in tensors: :class:`MemoryBank` and :class:`MemoryState`.

A step updates the state it is given (the returned state is the same object). The banks are
allocated at capacity once and every write goes in place into one slot per video, with or without
autograd, so a stream never reallocates and a step never copies a whole bank. Reads look only at the
slots in use (:attr:`MemoryBank.used`, a host-side count, so no device sync decides it).

Gradients cannot flow through in-place writes, so while autograd records, a bank also keeps a
*graph log*: the key/value tensors of every entry written during the recorded steps (each one the
very tensor the key/value projection produced, never a copy) and, per video and slot, which log
entry the slot holds (:attr:`MemoryBank.source`). A read under autograd attends to the bank's
current contents and saves only its query, the log and that small index map; its backward pass
gathers the keys and values it read from the log (see :class:`~spatialvlm.memory.MemoryAttention`).
Take a snapshot with :meth:`MemoryState.clone`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


def _zero_videos(target: Tensor, videos: Tensor) -> Tensor:
    """Zero, in place, the rows (dim 0) of ``target`` selected by the (B,) bool ``videos``."""
    return target.masked_fill_(videos.view(-1, *([1] * (target.dim() - 1))), 0)


BANK_TENSORS = ("entries", "keys", "values", "means", "stamps")
"""The tensors of a :class:`MemoryBank`, as saved."""


@dataclass
class GraphLog:
    """What a bank's reads need for their backward pass while autograd records.

    Attributes:
        keys, values: the logged entries, each (B, H, s, n, d) (s = 1 for an entry written at one
            step; s = L for the snapshot of a bank that already held entries when recording began).
        source: (B, L) int64, for each video and slot the index of its entry in the logged entries
            concatenated along dim 2. Replaced (never modified) at every write, so each read keeps
            the map it saw.
        size: total length of the logged entries along dim 2 (host int).
    """

    keys: list[Tensor]
    values: list[Tensor]
    source: Tensor
    size: int

    def gather(self) -> tuple[Tensor, Tensor]:
        """The keys and values the bank's slots hold, rebuilt from the log: each (B, H, L, n, d)."""
        keys, values = torch.cat(self.keys, dim=2), torch.cat(self.values, dim=2)
        batch, heads, total, tokens, head_dim = keys.shape
        slots = self.source.shape[1]
        # Whole (n, d) entries are copied as rows of a (B·H·total, n·d) view: index_select and its
        # index_add backward move rows, where a 5-D gather / scatter_add indexes every element
        # (3× slower fwd + bwd at the tiny ablation's sizes; same numbers, no index repeats).
        rows = torch.arange(batch * heads, device=keys.device).view(batch, heads, 1) * total
        rows = (rows + self.source[:, None, :]).flatten()
        shape = (batch, heads, slots, tokens, head_dim)
        flat = (batch * heads * total, tokens * head_dim)
        return keys.reshape(flat).index_select(0, rows).view(shape), values.reshape(flat).index_select(0, rows).view(shape)

    def copy(self) -> "GraphLog":
        return GraphLog(list(self.keys), list(self.values), self.source, self.size)


@dataclass
class MemoryBank:
    """One fixed-capacity memory (working or episodic) for B videos.

    Entries are whole token sets. Slots are physical positions; the logical order of the entries
    (oldest first for the working memory, Algorithm 1's list order for the episodic memory) is the
    order of their insertion stamps, because both memories only ever append at the end of their
    list and delete from inside it. A video's stored entries always occupy its first slots (a
    memory fills slot 0, 1, ... and a full one overwrites a slot in place), so the first ``used``
    slots hold every entry of every video.

    Attributes:
        entries: (B, L, n, D) stored token sets, detached (for inspection, similarity and saving;
            gradients flow through the graph log).
        keys, values: (B, H, L, n, d) the stored entries projected by this memory's attention,
            cached so a step only projects the new entry.
        means: (B, L, D) token-mean of each stored entry before compression (what the episodic
            replacement compares).
        stamps: (B, L) int64 frame index at which the entry was written; -1 marks a free slot.
        used: host-side upper bound of the number of filled slots of any video (reads attend to
            slots ``[0, used)`` only).
        graph: the :class:`GraphLog` while autograd records, else None.
    """

    entries: Tensor
    keys: Tensor
    values: Tensor
    means: Tensor
    stamps: Tensor
    used: int = 0
    graph: GraphLog | None = field(default=None, repr=False)

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
    def capacity(self) -> int:
        return self.stamps.shape[1]

    @property
    def valid(self) -> Tensor:
        """(B, L) bool: which slots hold an entry."""
        return self.stamps >= 0

    @property
    def fill(self) -> Tensor:
        """(B,) int64 number of stored entries."""
        return self.valid.sum(dim=-1)

    @property
    def requires_grad(self) -> bool:
        """True while the stored entries carry an autograd graph (a graph log is recorded)."""
        graph = self.graph
        return graph is not None and any(t.requires_grad for t in (*graph.keys, *graph.values))

    def used_keys_values(self) -> tuple[Tensor, Tensor]:
        """Keys and values of the slots in use as (B, H, used·n, d) views, the layout attention reads."""
        batch, heads, _, tokens, head_dim = self.keys.shape
        shape = (batch, heads, self.used * tokens, head_dim)
        return self.keys[:, :, : self.used].reshape(shape), self.values[:, :, : self.used].reshape(shape)

    def start_graph(self) -> None:
        """Begin a graph log (autograd records from now on); no-op when one is running."""
        if self.graph is not None:
            return
        batch, slots = self.stamps.shape
        source = torch.arange(slots, device=self.stamps.device).expand(batch, slots)
        if self.used == 0:
            self.graph = GraphLog([], [], source, 0)
        else:  # entries stored before recording began are constants: snapshot them once
            self.graph = GraphLog([self.keys.clone()], [self.values.clone()], source, slots)

    def write(
        self, slot: Tensor, entry: Tensor, keys: Tensor, values: Tensor, mean: Tensor, stamp: Tensor,
        active: Tensor | None = None, record: bool = False,
    ) -> None:
        """Store one entry per video at ``slot`` (B,): entry (B, n, D), keys/values (B, H, n, d),
        mean (B, D), stamp (B,). Videos with ``active`` (B,) False keep their slot unchanged.

        ``record``: autograd records this step, so the entry's keys/values join the graph log;
        without it a running log ends (a later recorded step starts a new one)."""
        videos = torch.arange(slot.shape[0], device=slot.device)
        old = self.read_slot(slot)
        # Under autocast the new entry may be bf16 while the bank keeps its own dtype.
        new = tuple(x.detach().to(o.dtype) for x, o in zip((entry, keys, values, mean, stamp), old))
        if active is not None:
            # Inactive videos write their slot's current contents back: one batched write, no branch.
            new = tuple(torch.where(active.view(-1, *([1] * (n.dim() - 1))), n, o) for n, o in zip(new, old))
        if record:
            self.start_graph()  # before the write: a snapshot must hold the old contents
        else:
            self.graph = None
        with torch.no_grad():
            self.entries[videos, slot] = new[0]
            self.keys[videos, :, slot] = new[1]
            self.values[videos, :, slot] = new[2]
            self.means[videos, slot] = new[3]
            self.stamps[videos, slot] = new[4]
        self.used = min(self.capacity, self.used + 1)
        graph = self.graph
        if graph is not None:
            graph.keys.append(keys.to(self.keys.dtype).unsqueeze(2))
            graph.values.append(values.to(self.values.dtype).unsqueeze(2))
            hit = torch.nn.functional.one_hot(slot, self.capacity).bool()
            if active is not None:
                hit &= active[:, None]
            graph.source = graph.source.masked_fill(hit, graph.size)
            graph.size += 1

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

    def reset(self, videos: Tensor, all_videos: bool = False) -> None:
        """Empty the memories of ``videos`` (B,) bool, in place (``all_videos``: it is all of them)."""
        with torch.no_grad():
            for name in ("entries", "keys", "values", "means"):
                _zero_videos(getattr(self, name), videos)
            self.stamps.masked_fill_(videos[:, None], -1)
        if all_videos:
            self.used, self.graph = 0, None

    def apply(self, fn, keep_graph: bool = False) -> "MemoryBank":
        """A bank with ``fn`` applied to every tensor; the graph log is kept only with ``keep_graph``."""
        tensors = {name: fn(getattr(self, name)) for name in BANK_TENSORS}
        graph = self.graph.copy() if keep_graph and self.graph is not None else None
        return MemoryBank(**tensors, used=self.used, graph=graph)


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
        fill_is_uniform: host-side flag, True while every video has had a frame at every step
            (so all hold ``used`` entries in each bank and reads need no key mask).
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
    fill_is_uniform: bool = field(default=True)
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
        everyone = bool(mask.all())  # one sync per reset, off the per-frame path
        for bank in (self.working, self.episodic):
            if bank is not None:
                bank.reset(mask, all_videos=everyone)
        self.counters.reset(mask)
        self.may_have_empty = True
        self.fill_is_uniform = everyone or self.fill_is_uniform and not bool(mask.any())
        return self

    @property
    def requires_grad(self) -> bool:
        """True while the stored entries carry an autograd graph (steps recorded by autograd)."""
        return any(bank is not None and bank.requires_grad for bank in (self.working, self.episodic))

    def _apply(self, fn, keep_graph: bool = False, **changes) -> "MemoryState":
        return dataclasses.replace(
            self,
            counters=self.counters.apply(fn),
            working=None if self.working is None else self.working.apply(fn, keep_graph),
            episodic=None if self.episodic is None else self.episodic.apply(fn, keep_graph),
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
        """An independent copy (steps on either leave the other unchanged); a recorded autograd
        graph is shared, so gradients still reach the frames stored before the copy."""
        return self._apply(Tensor.clone, keep_graph=True)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the state to a safetensors file (resume a stream later with :meth:`load`)."""
        from safetensors.torch import save_file

        tensors = {f"counters.{f.name}": getattr(self.counters, f.name) for f in dataclasses.fields(self.counters)}
        for name, bank in (("working", self.working), ("episodic", self.episodic)):
            if bank is not None:
                tensors.update({f"{name}.{field_name}": getattr(bank, field_name) for field_name in BANK_TENSORS})
        metadata = {
            "batch_size": self.batch_size, "dim": self.dim, "num_heads": self.num_heads,
            "working_size": self.working_size, "episodic_size": self.episodic_size,
            "num_tokens": -1 if self.num_tokens is None else self.num_tokens,
            "may_have_empty": int(self.may_have_empty), "dtype": str(self.dtype).removeprefix("torch."),
            "fill_is_uniform": int(self.fill_is_uniform),
            "working_used": -1 if self.working is None else self.working.used,
            "episodic_used": -1 if self.episodic is None else self.episodic.used,
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

        def bank(name: str) -> MemoryBank | None:
            tensors = group(name)
            if not tensors:
                return None
            # Files written before the fill counter existed: recount it from the stamps (one sync).
            used = int(meta.get(f"{name}_used", (tensors["stamps"] >= 0).sum(-1).max()))
            return MemoryBank(**tensors, used=used)

        working, episodic = bank("working"), bank("episodic")
        if "fill_is_uniform" in meta:
            uniform = bool(int(meta["fill_is_uniform"]))
        else:
            uniform = working is None or bool((working.fill == working.used).all() & (episodic.fill == episodic.used).all())
        return cls(
            batch_size=int(meta["batch_size"]), dim=int(meta["dim"]), num_heads=int(meta["num_heads"]),
            working_size=int(meta["working_size"]), episodic_size=int(meta["episodic_size"]),
            counters=MemoryCounters(**group("counters")),
            num_tokens=None if num_tokens < 0 else num_tokens,
            working=working, episodic=episodic,
            may_have_empty=bool(int(meta["may_have_empty"])), fill_is_uniform=uniform,
            device=torch.device(device), dtype=getattr(torch, meta["dtype"]),
        )
