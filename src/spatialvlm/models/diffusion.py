"""Masked-diffusion decoding (LLaDA / LaViDa) with a prefix KV cache.

The answer starts as ``answer_length`` mask tokens. At each denoising step the language model predicts
every masked position at once and the most confident predictions are committed (low-confidence
remasking: the rest stay masked). Optionally the answer is decoded block by block, left to right, with
the step budget split evenly between blocks (LLaDA's semi-autoregressive mode).

Attention is bidirectional. Under the *prefix-DLM* pattern (LaViDa) the prefix (image + prompt) attends
only within itself and the answer attends to everything, so the prefix keys and values never depend
on the answer: they are computed once and reused at every step. ``use_prefix_cache=False`` recomputes
the whole sequence at every step with the same mask, which gives the same numbers (up to float
rounding) and is what the cache is checked against.

Any transformers decoder that accepts a custom 4D additive mask (``LlamaModel``, ``Qwen2Model``, the
``language_model`` inside ``LlavaOnevisionForConditionalGeneration``) serves as the bidirectional
model: transformers passes a 4D mask through unchanged, so passing our own mask is what turns the
causal stand-in into a bidirectional one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from ..diagnostics.profiling import StageTimer, maybe_stage

__all__ = [
    "DiffusionConfig",
    "DiffusionOutput",
    "PrefixState",
    "MaskedDiffusionGenerator",
    "attention_allowed",
    "additive_mask",
    "transfer_schedule",
]


@dataclass
class DiffusionConfig:
    """Every knob of the masked-diffusion decoder.

    Args:
        mask_token_id: id of the mask token (LLaDA: 126336; the tiny tokenizer: ``<|mdm_mask|>``).
        answer_length: number of answer tokens generated (fixed; text after an end-of-sequence token
            is padding the caller strips).
        steps: denoising steps in total (LaViDa/LLaDA default 30 here). Split evenly across blocks;
            a block never takes more steps than it has tokens.
        block_length: tokens per semi-autoregressive block; ``None`` decodes the whole answer as one
            block. Must divide ``answer_length``.
        temperature: 0 picks the argmax at each masked position; > 0 samples from
            ``softmax(logits / temperature)`` (Gumbel-max).
        remasking: ``"low_confidence"`` commits the positions whose predicted token has the highest
            probability; ``"random"`` commits random masked positions.
        use_prefix_cache: encode the prefix once and reuse its KV cache at every step. Only valid with
            ``attention="prefix_dlm"``.
        attention: ``"prefix_dlm"`` (prefix attends to the prefix, answer to everything; LaViDa) or
            ``"bidirectional"`` (every token attends to every token; LLaDA, no prefix cache possible).
    """

    mask_token_id: int
    answer_length: int = 32
    steps: int = 30
    block_length: int | None = None
    temperature: float = 0.0
    remasking: Literal["low_confidence", "random"] = "low_confidence"
    use_prefix_cache: bool = True
    attention: Literal["prefix_dlm", "bidirectional"] = "prefix_dlm"

    def __post_init__(self) -> None:
        if self.answer_length <= 0:
            raise ValueError(f"answer_length must be positive, got {self.answer_length}")
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        block = self.block_length or self.answer_length
        if block <= 0 or self.answer_length % block:
            raise ValueError(
                f"block_length ({self.block_length}) must be positive and divide answer_length "
                f"({self.answer_length})"
            )
        if self.steps < self.answer_length // block:
            raise ValueError(
                f"steps ({self.steps}) must be at least the number of blocks ({self.answer_length // block})"
            )
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.remasking not in ("low_confidence", "random"):
            raise ValueError(f"remasking must be 'low_confidence' or 'random', got {self.remasking!r}")
        if self.attention not in ("prefix_dlm", "bidirectional"):
            raise ValueError(f"attention must be 'prefix_dlm' or 'bidirectional', got {self.attention!r}")
        if self.use_prefix_cache and self.attention != "prefix_dlm":
            raise ValueError(
                "use_prefix_cache needs attention='prefix_dlm': under full bidirectional attention the "
                "prefix keys depend on the answer, so they cannot be cached"
            )


@dataclass
class DiffusionOutput:
    """What ``MaskedDiffusionGenerator.generate`` returns.

    Attributes:
        sequences: (B, answer_length) generated answer ids (no mask token left).
        unmask_step: (B, answer_length) the denoising step (0-based, counted over all blocks) at which
            each position was committed: the decoder's decisions, step by step.
        step_logits: one (B, answer_length, V) float tensor per executed step, the logits the model
            produced; only with ``output_logits=True``.
        num_model_calls: forward passes of the language model (the prefix pass counts as one).
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


def transfer_schedule(config: DiffusionConfig) -> list[tuple[int, int]]:
    """The decoding plan: one ``(block_index, tokens_to_commit)`` per executed step.

    Each block's tokens are spread evenly over its steps, the remainder going to the first steps
    (LLaDA's ``get_num_transfer_tokens``); steps that would commit nothing are dropped.
    """
    block_length = config.block_length or config.answer_length
    num_blocks = config.answer_length // block_length
    steps_per_block = min(config.steps // num_blocks, block_length)
    base, remainder = divmod(block_length, steps_per_block)
    counts = [base + (step < remainder) for step in range(steps_per_block)]
    return [(block, count) for block in range(num_blocks) for count in counts]


class MaskedDiffusionGenerator(nn.Module):
    """Masked-diffusion decoder around a transformers decoder and its output head.

    Args:
        language_model: a base decoder (``LlamaModel``, ``Qwen2Model``, ...) called with
            ``inputs_embeds``, a 4D additive ``attention_mask``, ``position_ids`` and ``cache``;
            returns ``last_hidden_state``.
        lm_head: hidden states (…, D) -> logits (…, V).
        config: ``DiffusionConfig``.

    ``MaskedDiffusionGenerator.from_model(model, config)`` takes a ``*ForCausalLM`` or a
    ``LlavaOnevisionForConditionalGeneration`` directly.
    """

    def __init__(self, language_model: nn.Module, lm_head: nn.Module, config: DiffusionConfig) -> None:
        super().__init__()
        self.language_model = language_model
        self.lm_head = lm_head
        self.config = config

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
        with maybe_stage(timer, "prefix"):
            prefix = self.encode_prefix(prompt_ids, prompt_embeds, prompt_attention_mask)
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
                if output_logits:
                    step_logits.append(logits)
                # The mask token is never an answer: committing it would leave a hole the schedule skips.
                mask_column = torch.tensor([config.mask_token_id], device=device)
                logits = logits.index_fill(-1, mask_column, float("-inf"))
                if config.temperature > 0:
                    uniform = torch.rand(logits.shape, generator=generator, device=device).clamp_(min=1e-20)
                    gumbel = -torch.log(-torch.log(uniform))
                    prediction = (logits / config.temperature + gumbel).argmax(-1)
                else:
                    prediction = logits.argmax(-1)
                if config.remasking == "low_confidence":
                    confidence = logits.softmax(-1).gather(-1, prediction[..., None]).squeeze(-1)
                else:
                    confidence = torch.rand((batch, length), generator=generator, device=device)
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
            num_model_calls=len(schedule) + int(prefix.cache is not None),
        )
