"""Masked-diffusion decoding (LLaDA / LaViDa) with an optional prefix KV cache.

The answer starts as ``answer_length`` mask tokens and is decoded block by block, left to right
(LLaDA's semi-autoregressive mode; one block by default). At each denoising step the language model
predicts every position at once; among the still-masked positions of the current block, the ``n``
with the highest confidence are committed and the rest stay masked (remasking). ``n`` per step comes
from the block's schedule: LLaDA's even split, or one of LaViDa's schedules (linear, cosine,
logit-normal, timestep shift).

What follows LLaDA's ``generate()`` (ML-GSAI/LLaDA ``generate.py``) and LaViDa's
(``llava/model/language_model/llada/generate.py``) exactly:

- steps: ``steps`` in total, split evenly over the blocks and **required to divide** by the number
  of blocks (LLaDA asserts it); or LaViDa's ``steps_per_block`` (clamped to the block length) and
  ``step_ratio`` (``int(steps_per_block × ratio)``). Default: one token per step (``steps =
  answer_length``), which is LLaDA's default (128 steps, 128 tokens) and LaViDa's evaluation default.
- Gumbel-max sampling and the confidences are computed in float64 (LLaDA: low precision Gumbel
  noise hurts generation quality, arXiv 2409.02908); sampling is ``exp(logits) / (−log u)^T``.
- remasking by ``low_confidence`` (probability of the prediction), ``margin`` (top-1 − top-2
  probability), ``entropy`` (Σ p log p: the least uncertain first) or ``random``.
- classifier-free guidance: a second pass with every prompt position masked,
  ``logits = uncond + (cfg_scale + 1)(cond − uncond)`` (LLaDA's formula).
- the mask token's own logit is left alone (a position predicted as the mask stays masked and is
  predicted again, as in LLaDA); ``suppress_mask_token=True`` forbids it instead.

Attention. LLaDA and the LaViDa release were trained fully bidirectional (LaViDa's ``prefix_lm``
defaults to False in training). Under the *prefix-DLM* pattern the prefix (image + prompt) attends only
within itself and the answer to everything, so the prefix keys/values never depend on the answer and
are computed once (LaViDa's inference speed-up, an approximation for a checkpoint trained
bidirectionally). ``attention=None`` takes the checkpoint's training attention from its config
(``diffusion_training_attention``, written by the converters), else ``"bidirectional"``;
``use_prefix_cache=None`` caches exactly when the attention is prefix-DLM.

Any transformers decoder that accepts a custom 4D additive mask (``LlamaModel``, ``Qwen2Model``, the
``language_model`` inside ``LlavaOnevisionForConditionalGeneration``) serves as the bidirectional
model: transformers passes a 4D mask through unchanged, so passing our own mask is what turns the
causal stand-in into a bidirectional one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from ..diagnostics.profiling import StageTimer, maybe_stage

__all__ = [
    "DIFFUSION_ATTENTION_KEY",
    "DiffusionConfig",
    "DiffusionOutput",
    "PrefixState",
    "MaskedDiffusionGenerator",
    "attention_allowed",
    "additive_mask",
    "block_transfer_counts",
    "checkpoint_diffusion_attention",
    "remasking_confidence",
    "transfer_schedule",
]

Attention = Literal["bidirectional", "prefix_dlm"]
Remasking = Literal["low_confidence", "margin", "entropy", "random"]
Schedule = Literal["uniform", "linear", "cosine", "logit_normal", "shift"]

# Config attribute (on the language model's config) naming the attention a masked-diffusion
# checkpoint was trained with; its presence is what marks a language model as a diffusion LM.
DIFFUSION_ATTENTION_KEY = "diffusion_training_attention"
_ATTENTIONS = ("bidirectional", "prefix_dlm")
_REMASKINGS = ("low_confidence", "margin", "entropy", "random")
_SCHEDULES = ("uniform", "linear", "cosine", "logit_normal", "shift")


def checkpoint_diffusion_attention(config) -> str | None:
    """The attention a masked-diffusion checkpoint was trained with (``"bidirectional"`` or
    ``"prefix_dlm"``), read from its config or its ``text_config``; ``None`` for an autoregressive model."""
    for candidate in (config, getattr(config, "text_config", None)):
        value = getattr(candidate, DIFFUSION_ATTENTION_KEY, None) if candidate is not None else None
        if value is not None:
            if value not in _ATTENTIONS:
                raise ValueError(f"config {DIFFUSION_ATTENTION_KEY}={value!r}; expected one of {_ATTENTIONS}")
            return value
    return None


@dataclass
class DiffusionConfig:
    """Every knob of the masked-diffusion decoder (defaults: LLaDA ``generate()``'s).

    Args:
        mask_token_id: id of the mask token (LLaDA/LaViDa: 126336; the tiny tokenizer: ``<|mdm_mask|>``).
        answer_length: L, answer tokens generated (LLaDA ``gen_length``, LaViDa ``max_new_tokens``;
            default 128). Text after an end-of-sequence token is padding the caller strips.
        block_length: tokens per semi-autoregressive block; ``None`` = one block of L (LLaDA's
            default 128 = L). Must divide L. LaViDa's evaluation uses ``min(128, L)``.
        steps: denoising steps in total, split evenly across blocks; must divide by the number of
            blocks. ``None`` = L (one token per step). LLaDA's example: 128 steps, L = 128, block 32.
        steps_per_block: LaViDa's ``step_per_block``: steps of each block (clamped to the block
            length); excludes ``steps`` and ``step_ratio``.
        step_ratio: LaViDa's ``step_ratio``: each block runs ``int(steps_per_block × ratio)`` steps
            (its COCO setting: 0.5).
        schedule: tokens committed per step within a block: ``"uniform"`` (LLaDA: even split, the
            remainder to the first steps) or LaViDa's ``"linear"``, ``"cosine"``, ``"logit_normal"``,
            ``"shift"`` (at least one token per step; see ``block_transfer_counts``).
        schedule_shift: the shift α of ``schedule="shift"`` (LaViDa's default 3; its COCO run 0.33).
        temperature: 0 takes the argmax; > 0 samples by float64 Gumbel-max, ``exp(logits) / (−log u)^T``.
        remasking: confidence that ranks masked positions: ``"low_confidence"`` (probability of the
            prediction; LLaDA's default), ``"margin"`` (top-1 − top-2 probability), ``"entropy"``
            (Σ p log p) or ``"random"``.
        cfg_scale: classifier-free guidance scale (0 = off): an extra pass with the prompt masked.
        suppress_mask_token: set the mask token's logit to −∞ before predicting (LLaDA does not).
        attention: ``"bidirectional"`` (every token attends to every token) or ``"prefix_dlm"``
            (prefix attends to the prefix, answer to everything; LaViDa's cached inference).
            ``None``: the checkpoint's training attention (see ``checkpoint_diffusion_attention``),
            else ``"bidirectional"``; ``"prefix_dlm"`` when ``use_prefix_cache=True``.
        use_prefix_cache: encode the prefix once and reuse its KV cache at every step; needs
            ``prefix_dlm``. ``None``: cache exactly when the attention is ``prefix_dlm``.
    """

    mask_token_id: int
    answer_length: int = 128
    block_length: int | None = None
    steps: int | None = None
    steps_per_block: int | None = None
    step_ratio: float | None = None
    schedule: Schedule = "uniform"
    schedule_shift: float = 3.0
    temperature: float = 0.0
    remasking: Remasking = "low_confidence"
    cfg_scale: float = 0.0
    suppress_mask_token: bool = False
    attention: Attention | None = None
    use_prefix_cache: bool | None = None

    def __post_init__(self) -> None:
        if self.answer_length <= 0:
            raise ValueError(f"answer_length must be positive, got {self.answer_length}")
        block = self.block_length or self.answer_length
        if block <= 0 or self.answer_length % block:
            raise ValueError(
                f"block_length ({self.block_length}) must be positive and divide answer_length "
                f"({self.answer_length})"
            )
        if self.steps is not None and self.steps_per_block is not None:
            raise ValueError("pass steps (in total) or steps_per_block (LaViDa), not both")
        if self.step_ratio is not None and self.steps_per_block is not None:
            raise ValueError("pass step_ratio or steps_per_block, not both (LaViDa refuses both too)")
        if self.steps is not None:
            if self.steps <= 0:
                raise ValueError(f"steps must be positive, got {self.steps}")
            if self.steps % self.num_blocks:
                raise ValueError(
                    f"steps ({self.steps}) must be divisible by the number of blocks ({self.num_blocks} = "
                    f"answer_length {self.answer_length} / block_length {block}), as LLaDA asserts; "
                    f"use steps={self.num_blocks * max(1, self.steps // self.num_blocks)} or steps_per_block"
                )
        if self.steps_per_block is not None and self.steps_per_block <= 0:
            raise ValueError(f"steps_per_block must be positive, got {self.steps_per_block}")
        if self.step_ratio is not None and not self.step_ratio > 0:
            raise ValueError(f"step_ratio must be > 0, got {self.step_ratio}")
        if self.block_steps() < 1:
            raise ValueError(f"step_ratio {self.step_ratio} leaves no denoising step per block; raise it")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "shift" and not self.schedule_shift > 0:
            raise ValueError(f"schedule_shift must be > 0, got {self.schedule_shift}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.remasking not in _REMASKINGS:
            raise ValueError(f"remasking must be one of {_REMASKINGS}, got {self.remasking!r}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.attention is not None and self.attention not in _ATTENTIONS:
            raise ValueError(f"attention must be one of {_ATTENTIONS} or None, got {self.attention!r}")
        if self.use_prefix_cache and self.attention == "bidirectional":
            raise ValueError(
                "use_prefix_cache needs attention='prefix_dlm': under full bidirectional attention the "
                "prefix keys depend on the answer, so they cannot be cached"
            )

    @property
    def num_blocks(self) -> int:
        return self.answer_length // (self.block_length or self.answer_length)

    def block_steps(self) -> int:
        """Denoising steps each block runs (before dropping steps that would commit nothing)."""
        block = self.block_length or self.answer_length
        if self.steps_per_block is not None:
            return min(self.steps_per_block, block)
        total = self.answer_length if self.steps is None else self.steps
        per_block = total // self.num_blocks
        if self.step_ratio is not None:
            per_block = int(per_block * self.step_ratio)
        return per_block

    def resolve(self, model_config=None) -> DiffusionConfig:
        """A copy with ``attention`` and ``use_prefix_cache`` decided (see the class docstring)."""
        attention = self.attention
        if attention is None:
            if self.use_prefix_cache:
                attention = "prefix_dlm"
            else:
                attention = (checkpoint_diffusion_attention(model_config) if model_config is not None else None)
                attention = attention or "bidirectional"
        use_cache = attention == "prefix_dlm" if self.use_prefix_cache is None else self.use_prefix_cache
        return dataclasses.replace(self, attention=attention, use_prefix_cache=use_cache)


@dataclass
class DiffusionOutput:
    """What ``MaskedDiffusionGenerator.generate`` returns.

    Attributes:
        sequences: (B, answer_length) generated answer ids. With ``suppress_mask_token=False`` (LLaDA's
            behaviour) a position the model still predicts as the mask token at its block's last step
            stays the mask token.
        unmask_step: (B, answer_length) the denoising step (0-based, counted over all blocks) at which
            each position was committed: the decoder's decisions, step by step.
        step_logits: one (B, answer_length, V) float tensor per executed step, the logits the model
            produced; only with ``output_logits=True``.
        num_model_calls: forward passes of the language model (a prefix pass counts as one; guidance
            doubles every pass).
    """

    sequences: torch.LongTensor
    unmask_step: torch.LongTensor
    step_logits: tuple[torch.Tensor, ...] | None
    num_model_calls: int


@dataclass
class PrefixState:
    """The encoded prefix, computed once per prompt.

    Attributes:
        embeds: (B, P, D) prefix input embeddings (image tokens already merged in).
        valid: (B, P) bool, False at padding.
        answer_positions: (B, L) position ids of the answer tokens (right after each row's real prefix).
        prefix_positions: (B, P) position ids of the prefix tokens.
        cache: per-layer prefix keys/values, or ``None`` without the prefix cache.
    """

    embeds: torch.Tensor
    valid: torch.Tensor
    prefix_positions: torch.LongTensor
    answer_positions: torch.LongTensor
    cache: Cache | None


class _FrozenPrefixLayer(DynamicLayer):
    """A cache layer that returns ``prefix ++ new`` keys/values without storing the new part.

    Storing would grow the cache by the answer at every step; a frozen prefix lets one prefix cache
    serve all steps without copying it per step or cropping it back.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def attention_allowed(valid: torch.Tensor, answer_length: int, pattern: str = "prefix_dlm") -> torch.Tensor:
    """Which query may attend to which key over ``prefix ++ answer``.

    Args:
        valid: (B, P) bool, False at prefix padding.
        answer_length: L.
        pattern: ``"prefix_dlm"`` (prefix rows see only the prefix) or ``"bidirectional"``.

    Returns:
        (B, P + L, P + L) bool; padding keys are never attended to.
    """
    batch, prefix_length = valid.shape
    total = prefix_length + answer_length
    key_valid = torch.cat([valid, valid.new_ones(batch, answer_length)], dim=1)
    allowed = key_valid[:, None, :].expand(batch, total, total).clone()
    if pattern == "prefix_dlm":
        allowed[:, :prefix_length, prefix_length:] = False
    return allowed


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, Q, K) bool -> (B, 1, Q, K) additive float mask (0 where allowed, dtype's min elsewhere).

    A float mask works with both the eager and the SDPA attention of transformers; the finite minimum
    (not -inf) keeps a fully masked padding row free of NaN.
    """
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _noise_level(schedule: str, t: torch.Tensor, shift: float) -> torch.Tensor:
    """Fraction of a block unmasked by time t ∈ [0, 1] under LaViDa's schedules (float32, as LaViDa)."""
    if schedule == "linear":
        return t
    if schedule == "shift":
        return shift * t / (1 + (shift - 1) * t)
    if schedule == "cosine":
        return 1 - 0.5 * (1 + torch.cos(math.pi * t))
    if schedule == "logit_normal":
        return 0.5 * (1 + torch.erf(torch.log(t / (1 - t)) / torch.sqrt(torch.tensor(2.0))))
    raise ValueError(f"unknown schedule {schedule!r}")


def block_transfer_counts(block_length: int, steps: int, schedule: str = "uniform", shift: float = 3.0) -> list[int]:
    """Tokens committed at each step of one block; they sum to ``block_length``.

    ``"uniform"`` is LLaDA's ``get_num_transfer_tokens``: ``block_length // steps`` per step, the
    remainder to the first steps (steps beyond the block length commit nothing). The others are
    LaViDa's ``get_num_transfer_tokens_sch``: with ``S = min(steps, block_length)`` and
    ``F_k = ⌊σ(k / S) · block_length⌋`` for the schedule's σ, step counts are ``F_k − F_{k−1}`` raised
    to at least 1, the excess taken back one token at a time from the first steps (never below 1),
    and the order reversed. (LaViDa's own ``cosine`` calls NumPy on a tensor and fails; this is its
    formula.)
    """
    if steps < 1 or block_length < 1:
        raise ValueError(f"block_length ({block_length}) and steps ({steps}) must be positive")
    if schedule == "uniform":
        base, remainder = divmod(block_length, steps)
        return [base + (step < remainder) for step in range(steps)]
    steps = min(steps, block_length)
    levels = _noise_level(schedule, torch.linspace(0, 1, steps + 1), shift)
    marks = (levels * block_length).to(torch.int64)
    counts = (marks[1:] - marks[:-1]).clamp(min=1).tolist()
    excess, index = sum(counts) - block_length, 0
    while excess > 0:  # the plan is a handful of integers: a Python loop is clearest here
        index %= len(counts)
        if counts[index] > 1:
            counts[index] -= 1
            excess -= 1
        index += 1
    return counts[::-1]


def transfer_schedule(config: DiffusionConfig) -> list[tuple[int, int]]:
    """The decoding plan: one ``(block_index, tokens_to_commit)`` per executed step.

    Steps that would commit nothing (more steps than tokens under ``"uniform"``) are dropped: they
    would leave the tokens unchanged, so dropping them changes nothing but the model calls.
    """
    block_length = config.block_length or config.answer_length
    counts = block_transfer_counts(block_length, config.block_steps(), config.schedule, config.schedule_shift)
    return [(block, count) for block in range(config.num_blocks) for count in counts if count > 0]


def remasking_confidence(
    logits: torch.Tensor, prediction: torch.Tensor, remasking: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, L, V) logits and (B, L) predictions -> (B, L) float64 confidence (higher commits first).

    ``low_confidence``: p(prediction); ``margin``: top-1 − top-2 probability; ``entropy``:
    Σ p log(p + 1e-10) (negative entropy); ``random``: uniform noise. Probabilities in float64.
    """
    if remasking == "random":
        return torch.rand(prediction.shape, generator=generator, device=logits.device, dtype=torch.float64)
    probs = logits.to(torch.float64).softmax(-1)
    if remasking == "low_confidence":
        return probs.gather(-1, prediction[..., None]).squeeze(-1)
    if remasking == "margin":
        top = probs.topk(2, dim=-1).values
        return top[..., 0] - top[..., 1]
    if remasking == "entropy":
        return (probs * torch.log(probs + 1e-10)).sum(-1)
    raise ValueError(f"remasking must be one of {_REMASKINGS}, got {remasking!r}")


class MaskedDiffusionGenerator(nn.Module):
    """Masked-diffusion decoder around a transformers decoder and its output head.

    Args:
        language_model: a base decoder (``LlamaModel``, ``Qwen2Model``, ...) called with
            ``inputs_embeds``, a 4D additive ``attention_mask``, ``position_ids`` and ``cache``;
            returns ``last_hidden_state``.
        lm_head: hidden states (…, D) -> logits (…, V).
        config: ``DiffusionConfig``; ``self.config`` is its resolved copy (attention and cache decided).

    ``MaskedDiffusionGenerator.from_model(model, config)`` takes a ``*ForCausalLM`` or a
    ``LlavaOnevisionForConditionalGeneration`` directly.
    """

    def __init__(self, language_model: nn.Module, lm_head: nn.Module, config: DiffusionConfig) -> None:
        super().__init__()
        self.language_model = language_model
        self.lm_head = lm_head
        # attention / use_prefix_cache = None are decided here, from the checkpoint's config.
        self.config = config.resolve(getattr(language_model, "config", None))

    @classmethod
    def from_model(cls, model: nn.Module, config: DiffusionConfig) -> MaskedDiffusionGenerator:
        """Wrap a ``*ForCausalLM`` (``model.model``) or a LLaVA-style VLM (``model.model.language_model``)."""
        inner = getattr(model, "model", None)
        if inner is None:
            raise ValueError(f"{type(model).__name__} has no `.model`; pass language_model and lm_head explicitly")
        language_model = getattr(inner, "language_model", inner)
        return cls(language_model, model.get_output_embeddings(), config)

    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) input embeddings."""
        return self.language_model.get_input_embeddings()(input_ids)

    def _run(self, embeds, allowed, positions, cache) -> torch.Tensor:
        outputs = self.language_model(
            inputs_embeds=embeds,
            attention_mask=additive_mask(allowed, embeds.dtype),
            position_ids=positions,
            cache=cache,
            use_cache=False,
        )
        return outputs.last_hidden_state

    @torch.no_grad()
    def encode_prefix(
        self,
        prompt_ids: torch.LongTensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
    ) -> PrefixState:
        """Embed the prefix and, with ``use_prefix_cache``, run it once to fill the KV cache.

        Args:
            prompt_ids: (B, P) prefix token ids, or
            prompt_embeds: (B, P, D) prefix embeddings (image features already merged in).
            prompt_attention_mask: (B, P), 1 at real tokens, 0 at padding (either side); default all 1.
        """
        if (prompt_ids is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of prompt_ids (B, P) and prompt_embeds (B, P, D)")
        embeds = self.embed(prompt_ids) if prompt_embeds is None else prompt_embeds
        if embeds.dim() != 3:
            raise ValueError(f"prompt_embeds must be (B, P, D); got shape {tuple(embeds.shape)}")
        batch, prefix_length, _ = embeds.shape
        if prompt_attention_mask is None:
            valid = torch.ones(batch, prefix_length, dtype=torch.bool, device=embeds.device)
        else:
            if prompt_attention_mask.shape != (batch, prefix_length):
                raise ValueError(
                    f"prompt_attention_mask must be (B, P) = {(batch, prefix_length)}; "
                    f"got {tuple(prompt_attention_mask.shape)}"
                )
            valid = prompt_attention_mask.to(device=embeds.device, dtype=torch.bool)
        return self._encode(embeds, valid)

    def _encode(self, embeds: torch.Tensor, valid: torch.Tensor) -> PrefixState:
        counts = valid.long().cumsum(1)
        prefix_positions = (counts - 1).clamp(min=0)
        answer_positions = counts[:, -1:] + torch.arange(self.config.answer_length, device=embeds.device)

        cache = None
        if self.config.use_prefix_cache:
            prefix_cache = DynamicCache(config=self.language_model.config)
            allowed = attention_allowed(valid, 0)
            self.language_model(
                inputs_embeds=embeds,
                attention_mask=additive_mask(allowed, embeds.dtype),
                position_ids=prefix_positions,
                cache=prefix_cache,
                use_cache=True,
            )
            cache = Cache(layers=[_FrozenPrefixLayer(layer.keys, layer.values) for layer in prefix_cache.layers])
        return PrefixState(embeds, valid, prefix_positions, answer_positions, cache)

    def unconditional_prefix(self, prefix: PrefixState) -> PrefixState:
        """The classifier-free-guidance prefix: every prompt position replaced by the mask token (LLaDA
        masks the whole prompt for its unconditional pass), padding kept as padding."""
        mask_embed = self.embed(torch.tensor([[self.config.mask_token_id]], device=prefix.embeds.device))
        return self._encode(mask_embed.to(prefix.embeds.dtype).expand_as(prefix.embeds), prefix.valid)

    @torch.no_grad()
    def answer_logits(self, prefix: PrefixState, answer_ids: torch.LongTensor) -> torch.Tensor:
        """One denoising forward: (B, L) current answer ids -> (B, L, V) logits.

        With the prefix cache only the L answer tokens go through the model (attending to the cached
        prefix); without it, the whole ``prefix ++ answer`` is recomputed under the same mask.
        """
        allowed = attention_allowed(prefix.valid, answer_ids.shape[1], self.config.attention)
        answer_embeds = self.embed(answer_ids)
        prefix_length = prefix.embeds.shape[1]
        if prefix.cache is not None:
            hidden = self._run(answer_embeds, allowed[:, prefix_length:], prefix.answer_positions, prefix.cache)
        else:
            hidden = self._run(
                torch.cat([prefix.embeds, answer_embeds], dim=1),
                allowed,
                torch.cat([prefix.prefix_positions, prefix.answer_positions], dim=1),
                None,
            )[:, prefix_length:]
        return self.lm_head(hidden).float()

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: torch.LongTensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        output_logits: bool = False,
        timer: StageTimer | None = None,
    ) -> DiffusionOutput:
        """Decode an answer of ``config.answer_length`` tokens after the prompt.

        Args:
            prompt_ids / prompt_embeds / prompt_attention_mask: see ``encode_prefix``.
            generator: random source for sampling (``temperature > 0``) and random remasking.
            output_logits: keep each step's (B, L, V) logits in the output.
            timer: optional ``StageTimer`` receiving stages ``prefix`` and ``denoise``.
        """
        config = self.config
        guided = config.cfg_scale > 0
        with maybe_stage(timer, "prefix"):
            prefix = self.encode_prefix(prompt_ids, prompt_embeds, prompt_attention_mask)
            unconditional = self.unconditional_prefix(prefix) if guided else None
        batch, device = prefix.valid.shape[0], prefix.valid.device
        length = config.answer_length
        block_length = config.block_length or length
        answer = torch.full((batch, length), config.mask_token_id, dtype=torch.long, device=device)
        unmask_step = torch.full((batch, length), -1, dtype=torch.long, device=device)
        block_of_position = torch.arange(length, device=device) // block_length
        step_logits: list[torch.Tensor] = []
        schedule = transfer_schedule(config)

        with maybe_stage(timer, "denoise"):
            for step, (block, count) in enumerate(schedule):
                logits = self.answer_logits(prefix, answer)
                if guided:
                    uncond = self.answer_logits(unconditional, answer)
                    logits = uncond + (config.cfg_scale + 1) * (logits - uncond)
                if output_logits:
                    step_logits.append(logits)
                if config.suppress_mask_token:
                    logits = logits.index_fill(-1, torch.tensor([config.mask_token_id], device=device), float("-inf"))
                if config.temperature > 0:
                    # Gumbel-max in float64: argmax exp(l) / (-log u)^T = argmax l / T + Gumbel noise.
                    noise = torch.rand(logits.shape, generator=generator, device=device, dtype=torch.float64)
                    prediction = (logits.to(torch.float64).exp() / (-torch.log(noise)) ** config.temperature).argmax(-1)
                else:
                    prediction = logits.argmax(-1)
                confidence = remasking_confidence(logits, prediction, config.remasking, generator)
                # A position predicted as the mask token stays masked and is a candidate again next step.
                candidate = (answer == config.mask_token_id) & (block_of_position == block)
                confidence = confidence.masked_fill(~candidate, float("-inf"))
                # Every row has the same number of masked positions per block, so one top-k serves the batch.
                chosen = confidence.topk(count, dim=-1).indices
                answer.scatter_(1, chosen, prediction.gather(1, chosen))
                unmask_step.scatter_(1, chosen, step)

        return DiffusionOutput(
            sequences=answer,
            unmask_step=unmask_step,
            step_logits=tuple(step_logits) if output_logits else None,
            num_model_calls=(len(schedule) + int(prefix.cache is not None)) * (2 if guided else 1),
        )
