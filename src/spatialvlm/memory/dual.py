"""VLM² dual memory (Algorithm 1), batched over videos, one frame per step."""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DualMemoryConfig
from .attention import BankRead
from .episodic import EpisodicMemory
from .ops import pool_tokens
from .state import MemoryBank, MemoryCounters, MemoryState
from .working import WorkingMemory


class DualMemory(nn.Module):
    """Working + episodic memory with a learned gate (VLM², Algorithm 1).

    Per frame t and video::

        M^w = WorkingAttention(Q = H_t, KV = W_t)
        M^e = EpisodicAttention(Q = H_t, KV = E_t)
        γ   = σ(MLP([M^w ; M^e]))                 per token and channel
        M_t = γ ⊙ M^w + (1 − γ) ⊙ M^e             (returned with output="paper")
        W  <- H_t   FIFO: append, or drop the oldest then append
        E  <- M_t   append, or delete argmax_i cos(mean M_t, mean E_i) then append

    Two options change this, both off by default until an ablation decides (docs/decisions.md):
    ``output="residual"`` returns ``H_t + out(M_t)`` (``out`` zero-initialised: identity at the
    start, the current frame always visible), and ``read_order="write_then_read"`` stores ``H_t``
    in ``W`` before ``M^w`` is read. The episodic memory stores ``M_t`` in every mode.

    Cost follows the fill: a read attends to the slots in use only, writes go in place into one
    slot per video (with or without autograd), and under autograd a read saves its query and
    references to the stored entries, not a copy of the bank (see ``memory/attention.py``).

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
        output: str = "paper",
        read_order: str = "read_then_write",
        checkpoint_frames: bool = False,
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
                output=output, read_order=read_order, checkpoint_frames=checkpoint_frames,
            )
        self.config = config
        dim = config.dim
        hidden = config.gate_hidden_size or dim
        self.working = WorkingMemory(dim, config.num_heads, config.working_size, config.dropout)
        self.episodic = EpisodicMemory(dim, config.num_heads, config.episodic_size, config.dropout)
        self.gate = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        # Only the residual mode has an output projection, so "paper" checkpoints keep their keys.
        self.output_proj = nn.Linear(dim, dim) if config.output == "residual" else None
        self._init_output_proj()

    def _init_output_proj(self) -> None:
        """Zero ``out``: an untrained residual memory is the identity."""
        if self.output_proj is not None:
            nn.init.zeros_(self.output_proj.weight)
            nn.init.zeros_(self.output_proj.bias)

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
            output: (B, N, D) ``M_t`` (``output="paper"``) or ``H_t + out(M_t)`` ("residual").
            state: the same state object, advanced by one frame.
        """
        if state is None:
            state = self.init_state(h.shape[0] if h.dim() == 3 else 1, device=h.device, dtype=h.dtype)
        self._check_step(h, state, frame_mask)
        if state.working is None:
            self._allocate(state, h.shape[1])
        cfg = self.config
        working, episodic = state.working, state.episodic
        record = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in self.parameters()))
        uniform = state.fill_is_uniform and frame_mask is None
        stamp = state.counters.frames_seen

        stored_h = pool_tokens(h, cfg.compress_tokens, cfg.compress_mode)
        working_kv = self.working.attention.project_entry(stored_h)
        if cfg.read_order == "write_then_read":
            self.working.store(working, stored_h, h.mean(dim=1), stamp, frame_mask, projected=working_kv, record=record)
        fallback_w = self._fallback(state, working, lambda: working_kv, uniform)
        fallback_e = self._fallback(state, episodic, lambda: self.episodic.attention.project_entry(stored_h), uniform)
        read_w = BankRead.of(working, fallback_w, uniform, record, cfg.checkpoint_frames)
        read_e = BankRead.of(episodic, fallback_e, uniform, record, cfg.checkpoint_frames)

        if cfg.checkpoint_frames and record:
            from torch.utils.checkpoint import checkpoint

            fused, output, gate, entropy_w, entropy_e = checkpoint(
                self._read_and_fuse, h, read_w, read_e, cfg.record_statistics, use_reentrant=False
            )
        else:
            fused, output, gate, entropy_w, entropy_e = self._read_and_fuse(h, read_w, read_e, cfg.record_statistics)

        if cfg.read_order == "read_then_write":
            self.working.store(working, stored_h, h.mean(dim=1), stamp, frame_mask, projected=working_kv, record=record)
        was_full = episodic.valid.all(dim=-1)
        stored_m = pool_tokens(fused, cfg.compress_tokens, cfg.compress_mode)
        slot = self.episodic.store(episodic, stored_m, fused.mean(dim=1), stamp, frame_mask, record=record)

        self._count(state, frame_mask, gate, slot, was_full, entropy_w, entropy_e)
        if frame_mask is None:
            state.may_have_empty = False
        else:
            state.fill_is_uniform = False
            output = output.masked_fill(~frame_mask[:, None, None], 0.0)
            if state.may_have_empty:
                state.may_have_empty = bool((~working.valid.any(dim=-1)).any())
        return output, state

    @staticmethod
    def _fallback(
        state: MemoryState, bank: MemoryBank, project, uniform: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """The empty-memory rule: videos whose ``bank`` is empty attend to the current frame.

        ``project()`` gives the current frame's keys/values (B, H, n, d) for this memory. Returns
        (keys, values, use) with ``use`` (B,) bool or None (every video: the bank is empty
        everywhere); None when no video can be empty (decided on the host, no sync)."""
        if not state.may_have_empty or (uniform and bank.used > 0):
            return None
        if bank.used == 0:
            return (*project(), None)
        return (*project(), ~bank.valid.any(dim=-1))

    def _read_and_fuse(
        self, h: Tensor, read_w: BankRead, read_e: BankRead, with_entropy: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Both reads, the gate and the output: (M_t, output, γ, entropy_w, entropy_e)."""
        memory_w, entropy_w = self.working.read(h, read_w, with_entropy)
        memory_e, entropy_e = self.episodic.read(h, read_e, with_entropy)
        gate = torch.sigmoid(self.gate(torch.cat([memory_w, memory_e], dim=-1)))
        fused = memory_e + gate * (memory_w - memory_e)
        output = fused if self.output_proj is None else h + self.output_proj(fused)
        return fused, output, gate, entropy_w, entropy_e

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
        # unbind, not frames[:, t]: the backward of one select per frame would fill a zero tensor of
        # the whole clip per frame (a quadratic cost, 5 % of a 32-frame training step).
        iterator = enumerate(frames.unbind(1))
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=steps, desc="memory", unit="frame")
        for t, frame in iterator:
            step_mask = None
            if columns is not None and not bool(columns[:, t].all()):
                if not bool(columns[:, t].any()):
                    outputs.append(torch.zeros_like(frame))
                    continue
                step_mask = frame_mask[:, t]
            fused, state = self(frame, state, step_mask)
            outputs.append(fused)
        if not outputs:
            return frames.new_zeros(frames.shape), state
        return torch.stack(outputs, dim=1), state
