"""SHIRG-X mixed-budget image question answering: the task-specific pieces of training.

What trains (the SHIRG-X recipe; the vision tower and the language model stay frozen):

- the multimodal projector through peft LoRA (rank 32) on its real module names,
  ``multi_modal_projector.linear_1`` / ``linear_2``, at ``projector_lr`` (2e-4);
- the selector's coordinate embedding, fully (a fresh layer: there is no pretrained weight for a
  low-rank update to adapt), at ``coord_lr`` (1e-3);
- the adaptive-budget head, fully, with loss weight ``budget_loss_weight`` (0.1), at
  ``budget_head_lr`` (default: ``coord_lr``).

Each optimiser step runs at one budget K drawn uniformly from the budgets ({512, 768, 1024}) by a
pure function of (seed, step), so every rank of a distributed run uses the same K and a resumed run
draws the same K again. The budget head learns a *target*: for each sample, the smallest budget
whose answer loss is within ``budget_target_margin`` nats/token of the largest budget's loss
(``budget_targets``). Computing it costs ``len(budgets) − 1`` extra no-grad forwards of
selector + projector + language model (the vision tower runs once), every
``budget_target_every`` steps; 0 switches the budget head's training off.

The answer loss follows the language model's kind (``checkpoint_diffusion_attention``): a shifted
next-token cross-entropy under causal attention for an autoregressive model; for a masked-diffusion
LM (a converted LaViDa / LLaDA) LaViDa's objective (``llava_llada.py``): a ratio t ~ U(0, 1) per
sample, each answer token masked with probability t (``diffusion_answer_mask``), a second,
complementary copy masking exactly the other answer tokens, cross-entropy at the masked positions of
both copies *without* a label shift, under the attention the checkpoint was trained with
(bidirectional, or prefix-DLM), padding treated as answer (LLaDA SFT, LaViDa Sec. A.3). Weighting
(``diffusion_loss_weighting``): ``"lavida"`` (default) is what LaViDa's code computes, the mean over
all masked tokens; ``"elbo"`` is the 1/t-weighted estimate of LaViDa's Eq. 2 / LLaDA's SFT loss.
The budget targets use the same loss, with one mask shared by every budget.

Pieces: ``ShirgXModelArguments`` / ``ShirgXDataArguments`` (the task's flags), ``ShirgXTrainingConfig``
(stored in the model config as ``config.shirgx``), ``ShirgXTrainingModel`` (VLM + selector with the
mixed-budget loss), ``ImageQADataset`` / ``ImageQACollator``, ``ShirgXTrainer``, ``ShirgXTask``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from transformers.utils import ModelOutput

from ...eval.image_prompts import ImagePromptConfig
from ...selection import ShirgXConfig, ShirgXSelector, patch_entropy, save_selector
from ...selection.io import selector_config_from_dict
from ..arguments import DataArguments, ModelArguments, _split_list
from ..conversation import IGNORE_INDEX, pad_sequences, read_record_list, to_chat_messages, tokenize_conversation
from ..trainer import SpatialTrainer
from ..tunable import PartMap
from . import register_task
from .base import TrainingTask

__all__ = [
    "SHIRGX_PART_MAP",
    "PROJECTOR_LORA_TARGETS",
    "ShirgXModelArguments",
    "ShirgXDataArguments",
    "ShirgXTrainingConfig",
    "ShirgXTrainingOutput",
    "ShirgXTrainingModel",
    "ImageQADataset",
    "ImageQACollator",
    "ShirgXTrainer",
    "ShirgXTask",
    "answer_token_losses",
    "budget_targets",
    "diffusion_answer_mask",
    "masked_diffusion_loss",
    "load_image_qa_records",
    "projector_lora_parameter_count",
    "sample_budget",
]

# Parameter-name prefixes on ``ShirgXTrainingModel`` (``model`` is the LLaVA-OneVision model).
SHIRGX_PART_MAP: PartMap = {
    "mm_vision_tower": ("model.model.vision_tower",),
    "mm_mlp_adapter": ("model.model.multi_modal_projector",),
    "mm_language_model": ("model.model.language_model", "model.lm_head"),
    "coord_embed": ("selector.coord_embed",),
    "budget_head": ("selector.budget_head",),
}

# transformers' LLaVA-OneVision projector: linear_1 (vision width → text width), GELU, linear_2.
PROJECTOR_LORA_TARGETS: tuple[str, ...] = ("multi_modal_projector.linear_1", "multi_modal_projector.linear_2")

_PROJECTOR_PREFIX = "model.model.multi_modal_projector"
DIFFUSION_WEIGHTINGS = ("lavida", "elbo")
_LANGUAGE_MODEL_PREFIX = "model.model.language_model"


@dataclass
class ShirgXModelArguments(ModelArguments):
    """``ModelArguments`` plus the SHIRG-X recipe's flags (``spatialvlm train --task shirgx``)."""

    projector_lora: bool = field(
        default=True,
        metadata={"help": "Train the projector through LoRA on multi_modal_projector.linear_1/linear_2 (False: "
                  "its full weights train when mm_mlp_adapter is a tuned part)."},
    )
    projector_lora_r: int = field(default=32, metadata={"help": "Projector LoRA rank (SHIRG-X: 32)."})
    projector_lora_alpha: int = field(default=64, metadata={"help": "Projector LoRA scaling numerator (2 × rank)."})
    projector_lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the projector LoRA input."})
    projector_lr: float = field(default=2e-4, metadata={"help": "Learning rate of the projector (SHIRG-X: 2e-4)."})
    coord_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the coordinate embedding (1e-3)."})
    budget_head_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the adaptive-budget head (default: coord_lr)."}
    )
    budgets: str = field(
        default="512,768,1024", metadata={"help": "Comma list of budgets K, increasing; one is drawn per step."}
    )
    default_budget: int | None = field(
        default=None, metadata={"help": "Budget of an untrained head and of budget=None calls (default: the middle one)."}
    )
    budget_loss_weight: float = field(default=0.1, metadata={"help": "Weight of the budget head's cross-entropy."})
    budget_target_margin: float = field(
        default=0.05,
        metadata={"help": "Target budget = smallest K whose answer loss is within this many nats/token of the "
                  "largest K's loss."},
    )
    budget_target_every: int = field(
        default=1,
        metadata={"help": "Compute the budget target (len(budgets) − 1 extra no-grad forwards) every N steps; "
                  "0: never (the budget head does not train)."},
    )
    image_size: int = field(default=672, metadata={"help": "Side of the one high-resolution view (672 → 48×48)."})
    scaffold_pool: int = field(default=4, metadata={"help": "Scaffold pooling window (4: 48×48 → 12×12 = 144)."})
    score_layer: int | None = field(
        default=None, metadata={"help": "SigLIP hidden_states index to score with (default: the projector's layer)."}
    )
    text_conditioned: bool = field(default=True, metadata={"help": "Score patches against the question."})
    diffusion_loss_weighting: str = field(
        default="lavida",
        metadata={"help": "Masked-diffusion LMs only: 'lavida' (LaViDa's code: mean CE over masked tokens) or "
                  "'elbo' (1/t-weighted, LaViDa Eq. 2 / LLaDA SFT)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        budgets = self.budget_list
        if not budgets or any(b <= a for a, b in zip(budgets, budgets[1:])):
            raise ValueError(f"budgets must be increasing, e.g. '512,768,1024'; got {self.budgets!r}")
        if self.default_budget is not None and self.default_budget not in budgets:
            raise ValueError(f"default_budget {self.default_budget} must be one of budgets {budgets}")
        if self.projector_lora_r < 1:
            raise ValueError(f"projector_lora_r must be >= 1, got {self.projector_lora_r}")
        if self.budget_target_every < 0 or self.budget_loss_weight < 0 or self.budget_target_margin < 0:
            raise ValueError("budget_target_every, budget_loss_weight and budget_target_margin must be >= 0")
        if self.diffusion_loss_weighting not in DIFFUSION_WEIGHTINGS:
            raise ValueError(f"diffusion_loss_weighting must be one of {DIFFUSION_WEIGHTINGS}, "
                             f"got {self.diffusion_loss_weighting!r}")

    @property
    def budget_list(self) -> tuple[int, ...]:
        return tuple(int(value) for value in _split_list(self.budgets))


@dataclass
class ShirgXDataArguments(DataArguments):
    """``DataArguments`` plus where the images are and the prompt around plain QA questions."""

    image_folder: str | None = field(
        default=None, metadata={"help": "Folder relative 'image' paths start from (default: the data file's folder)."}
    )
    question_post_prompt: str = field(
        default=ImagePromptConfig().post_prompt,
        metadata={"help": "Text after each plain QA question (as the image benchmarks prompt it)."},
    )


@dataclass
class ShirgXTrainingConfig:
    """Everything that defines a SHIRG-X training model beyond the VLM (saved as ``config.shirgx``).

    Attributes:
        selector: the selector's config (grid, scaffold, budgets, widths).
        image_size, score_layer, text_conditioned: the image path's knobs (``ShirgXImageConfig``).
        budget_loss_weight: weight of the budget head's cross-entropy in the loss (0.1).
        budget_target_margin: nats per answer token a smaller budget may lose against the largest
            and still be the target (0.05).
        budget_target_every: steps between budget-target computations (0: never).
        diffusion_loss_weighting: masked-diffusion LMs: ``"lavida"`` or ``"elbo"`` (module docstring).
        diffusion_mask_eps: the smallest masking ratio, ``t' = (1 − eps) t + eps`` (LaViDa/LLaDA: 1e-3).
    """

    selector: ShirgXConfig
    image_size: int = 672
    score_layer: int | None = None
    text_conditioned: bool = True
    budget_loss_weight: float = 0.1
    budget_target_margin: float = 0.05
    budget_target_every: int = 1
    diffusion_loss_weighting: str = "lavida"
    diffusion_mask_eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.diffusion_loss_weighting not in DIFFUSION_WEIGHTINGS:
            raise ValueError(f"diffusion_loss_weighting must be one of {DIFFUSION_WEIGHTINGS}")
        budgets = self.selector.budgets
        if any(b <= a for a, b in zip(budgets, budgets[1:])):
            raise ValueError(f"selector budgets must be increasing for the budget target; got {budgets}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ShirgXTrainingConfig:
        values = dict(values)
        return cls(selector=selector_config_from_dict(values.pop("selector")), **values)

    def image_config(self):
        from ...models.shirgx_vlm import ShirgXImageConfig

        return ShirgXImageConfig(
            image_size=self.image_size, score_layer=self.score_layer, text_conditioned=self.text_conditioned
        )


def projector_lora_parameter_count(vision_dim: int, text_dim: int, rank: int) -> int:
    """Adapter parameters of LoRA at ``rank`` on linear_1 (vision_dim → text_dim) and linear_2
    (text_dim → text_dim): each adds A (rank × in) and B (out × rank).

    Real dims: 1152 → 4096 → 4096 at rank 32 gives 430,080 (LaViDa); 1152 → 3584 → 3584 (LLaVA-OneVision-7B)
    gives 380,928.
    """
    return rank * (vision_dim + text_dim) + rank * (text_dim + text_dim)


def sample_budget(budgets: Sequence[int], seed: int, step: int) -> int:
    """The budget K of optimiser step ``step``: uniform over ``budgets``, a pure function of
    (seed, step) so distributed ranks agree and a resumed run repeats its draws."""
    index = np.random.default_rng((seed, step)).integers(len(budgets))
    return int(budgets[index])


def answer_token_losses(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Next-token cross-entropy at the labelled positions.

    Args:
        logits: (B, T, V).
        labels: (B, T), ``IGNORE_INDEX`` where nothing is learnt.

    Returns:
        ``(losses, mask)``: (B, T − 1) float32 per-token losses (0 where unlabelled) and the (B, T − 1)
        bool mask of labelled positions.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits (B, T, V) {tuple(logits.shape)} and labels (B, T) {tuple(labels.shape)} disagree")
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    losses = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets.masked_fill(~mask, 0), reduction="none"
    )
    return losses * mask, mask


def budget_targets(answer_losses: Tensor, margin: float) -> Tensor:
    """Target budget index per sample: the smallest budget whose loss is within ``margin`` of the
    largest budget's loss.

    Args:
        answer_losses: (B, n_budgets) mean answer loss per sample at each budget, budgets increasing.
        margin: allowed loss increase (nats per answer token) against the largest budget.

    Returns:
        (B,) int64 indices into the budgets (the last one always qualifies).
    """
    if answer_losses.dim() != 2:
        raise ValueError(f"answer_losses must be (B, n_budgets); got {tuple(answer_losses.shape)}")
    within = answer_losses <= answer_losses[:, -1:] + margin
    # argmax returns the first maximal index: the smallest qualifying budget.
    return within.to(torch.uint8).argmax(dim=1)


def diffusion_answer_mask(
    answer_mask: Tensor, eps: float = 1e-3, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """LaViDa's forward process over the answer tokens.

    Per sample t ~ U(0, 1) and ratio ``(1 − eps) t + eps``; each answer token is masked when its
    uniform draw is ≤ max(ratio, the row's smallest draw), so at least one answer token is masked.
    (LaViDa takes that minimum over the whole padded sequence, prompt included; over the answer it
    guarantees what it is for.) The complementary copy masks ``answer_mask & ~masked``.

    Args:
        answer_mask: (B, T) bool, True at answer (labelled) positions.
        eps: smallest ratio.
        generator: random source.

    Returns:
        ``(masked, ratio)``: (B, T) bool (a subset of ``answer_mask``) and (B,) float ratios.
    """
    batch, length = answer_mask.shape
    t = torch.rand(batch, generator=generator, device=answer_mask.device)
    ratio = (1 - eps) * t + eps
    draws = torch.rand((batch, length), generator=generator, device=answer_mask.device)
    lowest = draws.masked_fill(~answer_mask, 2.0).amin(1)
    masked = (draws <= torch.maximum(ratio, lowest)[:, None]) & answer_mask
    return masked, ratio


def masked_diffusion_loss(
    logits: Tensor, labels: Tensor, masked: Tensor, ratio: Tensor, weighting: str = "lavida", eps: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """The complementary-masking diffusion loss: cross-entropy at masked positions, no label shift.

    Args:
        logits: (2B, T, V): rows ``:B`` see ``masked`` replaced by the mask token, rows ``B:`` the
            complementary copy (the other answer tokens masked).
        labels: (B, T) clean ids, ``IGNORE_INDEX`` outside the answers.
        masked: (B, T) bool, the first copy's masked answer positions.
        ratio: (B,) the first copy's masking ratio t (the complement's is 1 − t).
        weighting: ``"lavida"``: Σ CE / number of masked tokens over both copies (LaViDa's code);
            ``"elbo"``: per copy Σ CE / (ratio · answer length), averaged over the 2B copies
            (LLaDA's SFT estimator; the complement's ratio clamped at ``eps``).

    Returns:
        ``(loss, per_sample)``: the scalar loss and (B,) mean cross-entropy per answer token (each
        answer token is masked in exactly one copy), which the budget targets compare.
    """
    batch = labels.shape[0]
    if logits.shape[:2] != (2 * batch, labels.shape[1]):
        raise ValueError(f"logits must be (2B, T, V) = (2×{batch}, {labels.shape[1]}, V); got {tuple(logits.shape)}")
    answer = labels != IGNORE_INDEX
    copies = torch.cat([masked & answer, ~masked & answer])
    targets = labels.repeat(2, 1).masked_fill(~copies, 0)
    token_ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none") * copies
    answer_lengths = answer.sum(1).clamp(min=1)
    per_sample = (token_ce[:batch] + token_ce[batch:]).sum(1) / answer_lengths
    if weighting == "lavida":
        loss = token_ce.sum() / copies.sum().clamp(min=1)
    elif weighting == "elbo":
        rates = torch.cat([ratio, (1 - ratio).clamp(min=eps)]).to(token_ce.dtype)
        loss = (token_ce.sum(1) / (rates * answer_lengths.repeat(2))).sum() / (2 * batch)
    else:
        raise ValueError(f"weighting must be one of {DIFFUSION_WEIGHTINGS}, got {weighting!r}")
    return loss, per_sample


@dataclass
class ShirgXTrainingOutput(ModelOutput):
    """Output of ``ShirgXTrainingModel.forward``.

    Attributes:
        loss: answer_loss + budget_loss_weight · budget_loss (scalar).
        answer_loss: mean cross-entropy over the batch's answer tokens at the step's budget.
        budget_loss: cross-entropy of the budget head against ``budget_targets`` (0 when not computed).
        logits: (B, T + K + S − 1, V) language-model logits at the step's budget; (2B, …) for a
            masked-diffusion LM (the masked copies, then the complementary copies).
        budget_logits: (B, n_budgets) the budget head's logits.
        budget_targets: (B,) target budget indices, or None when not computed this step.
        budget_answer_losses: (B, n_budgets) per-sample answer losses at every budget, or None.
    """

    loss: Tensor | None = None
    answer_loss: Tensor | None = None
    budget_loss: Tensor | None = None
    logits: Tensor | None = None
    budget_logits: Tensor | None = None
    budget_targets: Tensor | None = None
    budget_answer_losses: Tensor | None = None


class ShirgXTrainingModel(nn.Module):
    """A LLaVA-OneVision model and a SHIRG-X selector, trained with the mixed-budget loss.

    Args:
        model: ``LlavaOnevisionForConditionalGeneration`` (or any model ``ShirgXImagePath`` accepts);
            its ``config.shirgx`` holds ``training_config`` as a dict (checkpoints save it).
        selector: the ``ShirgXSelector``.
        training_config: ``ShirgXTrainingConfig``.

    ``config`` is the VLM's config and ``base_model_prefix`` points at it, so the Trainer and peft
    treat the wrapper as a Hugging Face model whose base is ``model``.
    """

    base_model_prefix = "model"

    def __init__(self, model: nn.Module, selector: ShirgXSelector, training_config: ShirgXTrainingConfig) -> None:
        super().__init__()
        self.model = model
        self.selector = selector
        self.training_config = training_config
        self.config = model.config
        self.config.shirgx = training_config.to_dict()
        self.image_path()  # checks grid, widths and the projector's feature layer now, not at step 1
        from ...models.diffusion import checkpoint_diffusion_attention

        # The model kind picks the objective: None = autoregressive, else the diffusion training attention.
        self.diffusion_attention = checkpoint_diffusion_attention(model.config)
        self.mask_token_id = None
        if self.diffusion_attention is not None:
            text_config = getattr(model.config, "text_config", model.config)
            self.mask_token_id = getattr(text_config, "mask_token_id", None)
            if self.mask_token_id is None:
                raise ValueError("the model's config marks a masked-diffusion LM but has no text_config.mask_token_id")

    def image_path(self):
        """The ``ShirgXImagePath`` over this model and selector (shares their parameters)."""
        from ...models.shirgx_vlm import ShirgXImagePath

        return ShirgXImagePath(self.model, self.selector, self.training_config.image_config())

    def forward(
        self,
        input_ids: Tensor,
        pixel_values: Tensor,
        labels: Tensor,
        attention_mask: Tensor | None = None,
        question_ids: Tensor | None = None,
        question_mask: Tensor | None = None,
        budget: int | None = None,
        compute_budget_target: bool = False,
        diffusion_mask: tuple[Tensor, Tensor] | None = None,
    ) -> ShirgXTrainingOutput:
        """Teacher-forced (or masked-diffusion) loss at one budget, plus the budget head's loss.

        Args:
            input_ids: (B, T) prompts + answers with one image placeholder each.
            pixel_values: (B, 3, image_size, image_size).
            labels: (B, T), ``IGNORE_INDEX`` outside the answers.
            attention_mask: (B, T), 1 at real tokens.
            question_ids, question_mask: (B, Q) question tokens (text-conditioned scoring) and their mask.
            budget: K for this step (default: the selector's ``default_budget``).
            compute_budget_target: also run the other budgets without gradients and train the
                budget head towards ``budget_targets``.
            diffusion_mask: masked-diffusion LMs: ``(masked (B, T) bool, ratio (B,))`` over the
                unexpanded text to use instead of drawing ``diffusion_answer_mask`` (tests, evaluation).
        """
        config = self.training_config
        budgets = config.selector.budgets
        budget = config.selector.default_budget if budget is None else int(budget)
        if budget not in budgets:
            raise ValueError(f"budget {budget} is not one of the selector's budgets {budgets}")
        path = self.image_path()
        hidden_states = path.vision_hidden_states(pixel_values)
        projector_tokens = hidden_states[self.model.config.vision_feature_layer]
        score_tokens = None if config.score_layer is None else hidden_states[config.score_layer]
        question_mask = None if question_mask is None else question_mask.bool()
        question_embeds = None if question_ids is None else self.model.get_input_embeddings()(question_ids)

        diffusion = self.diffusion_attention is not None
        if diffusion:
            if attention_mask is not None:
                # LLaDA SFT / LaViDa: padding is answer (the model learns to end with it) and is attended to.
                padding = attention_mask == 0
                labels = torch.where(padding, input_ids, labels)
                attention_mask = torch.ones_like(attention_mask)
            text_answer = labels != IGNORE_INDEX
            if diffusion_mask is None:
                diffusion_mask = diffusion_answer_mask(text_answer, config.diffusion_mask_eps)
            masked, ratio = diffusion_mask

        def answer_losses_at(k: int) -> tuple[Tensor, Tensor, Tensor]:
            """(logits, loss, per-sample loss) at budget k."""
            # The image path's own selection: the adapted projector ranks patches as the merged model will.
            features = path.select_and_project(hidden_states, question_embeds, question_mask, k)
            inputs = path.build_inputs(input_ids, features.tokens, attention_mask, labels)
            expanded_labels = inputs.pop("labels")
            if diffusion:
                answer = expanded_labels != IGNORE_INDEX
                # The same answer tokens are masked at every budget: image tokens only shift them.
                expanded_masked = torch.zeros_like(answer)
                expanded_masked[answer] = masked[text_answer]
                logits = self._diffusion_logits(inputs, answer, expanded_masked)
                loss, per_sample = masked_diffusion_loss(
                    logits, expanded_labels, expanded_masked, ratio, config.diffusion_loss_weighting,
                    config.diffusion_mask_eps,
                )
                return logits, loss, per_sample
            logits = self.model(**inputs).logits
            losses, mask = answer_token_losses(logits, expanded_labels)
            return logits, losses.sum() / mask.sum().clamp(min=1), losses.sum(1) / mask.sum(1).clamp(min=1)

        logits, answer_loss, per_sample = answer_losses_at(budget)

        # The head reads the image; its loss must not reshape the vision features.
        head_input = projector_tokens if score_tokens is None else score_tokens
        entropy = patch_entropy(head_input.detach(), config.selector.entropy_temperature)
        budget_logits = self.selector.budget_head(entropy)
        targets = per_budget = None
        if compute_budget_target:
            columns = []
            with torch.no_grad():
                for k in budgets:
                    columns.append(per_sample.detach() if k == budget else answer_losses_at(k)[2])
            per_budget = torch.stack(columns, dim=1)
            targets = budget_targets(per_budget, config.budget_target_margin)
            budget_loss = F.cross_entropy(budget_logits.float(), targets)
        else:
            # Zero, but keeps the head in the graph so DDP sees every trainable parameter used.
            budget_loss = budget_logits.float().sum() * 0.0
        return ShirgXTrainingOutput(
            loss=answer_loss + config.budget_loss_weight * budget_loss,
            answer_loss=answer_loss.detach(),
            budget_loss=budget_loss.detach(),
            logits=logits,
            budget_logits=budget_logits,
            budget_targets=targets,
            budget_answer_losses=per_budget,
        )

    def _diffusion_logits(self, inputs: dict[str, Tensor], answer: Tensor, masked: Tensor) -> Tensor:
        """Both copies (``masked`` and its complement replaced by the mask token) through the language
        model under the checkpoint's training attention: (2B, T, V) logits."""
        from ...models.diffusion import additive_mask

        embeds, valid = inputs["inputs_embeds"], inputs["attention_mask"].bool()
        mask_embed = self.model.get_input_embeddings()(torch.tensor([self.mask_token_id], device=embeds.device))
        copies = torch.cat([
            torch.where(masked[..., None], mask_embed.to(embeds.dtype), embeds),
            torch.where((answer & ~masked)[..., None], mask_embed.to(embeds.dtype), embeds),
        ])
        valid = valid.repeat(2, 1)
        length = valid.shape[1]
        allowed = valid[:, None, :].expand(-1, length, -1)
        if self.diffusion_attention == "prefix_dlm":
            # LaViDa's prefix_lm: the prompt (before the first answer token) does not see the answer.
            prompt_length = answer.float().argmax(1).repeat(2)
            position = torch.arange(length, device=embeds.device)
            allowed = allowed & ((position[None, None, :] < prompt_length[:, None, None])
                                 | (position[None, :, None] >= prompt_length[:, None, None]))
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        return self.model(
            inputs_embeds=copies, attention_mask=additive_mask(allowed, embeds.dtype), position_ids=positions
        ).logits

    # Activation checkpointing and frozen-embedding support act on the wrapped VLM.
    @property
    def supports_gradient_checkpointing(self) -> bool:
        return getattr(self.model, "supports_gradient_checkpointing", False)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def enable_input_require_grads(self) -> None:
        self.model.enable_input_require_grads()


def _qa_turns(record: Mapping[str, Any], post_prompt: str) -> list[dict[str, str]]:
    if record.get("conversations"):
        return list(record["conversations"])
    answers = record.get("answers", record.get("answer"))
    if isinstance(answers, list):
        answers = answers[0] if answers else None
    if not isinstance(record.get("question"), str) or answers is None:
        raise ValueError("needs 'conversations', or 'question' and 'answers' (a list) / 'answer'")
    return [
        {"from": "human", "value": f"{record['question']}{post_prompt}"},
        {"from": "gpt", "value": str(answers)},
    ]


def load_image_qa_records(path: str | os.PathLike, post_prompt: str = "") -> list[dict[str, Any]]:
    """Read image QA records from a JSON list or a JSON Lines file, as LLaVA-format records.

    Accepted rows: ``{"id", "image", "question", "answers": [...]}`` (or ``"answer": str``) — the
    synthetic image suite's rows (``spatialvlm synth --images``) are of this kind; the first answer
    is the training target and ``post_prompt`` follows the question — or LLaVA-format
    ``{"id", "image", "conversations": [...]}``.

    Returns:
        ``[{"id", "image", "conversations"}]``, plus ``"question"`` (the bare question, no post-prompt)
        for plain QA rows.
    """
    path = Path(path)
    rows = read_record_list(path)
    records = []
    for index, row in enumerate(rows):
        label = row.get("id", "no id") if isinstance(row, dict) else repr(row)
        name = f"record {index} ({label}) of {path}"
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            raise ValueError(f"{name} has no 'image' path")
        try:
            turns = _qa_turns(row, post_prompt)
        except ValueError as error:
            raise ValueError(f"{name} {error}") from error
        record = {"id": str(row.get("id", index)), "image": row["image"], "conversations": turns}
        if not row.get("conversations"):
            record["question"] = row["question"]  # without the post-prompt: what relevance scores
        records.append(record)
    return records


class ImageQADataset(Dataset):
    """Image question-answer records as model inputs, read lazily.

    Args:
        records: ``load_image_qa_records`` output.
        tokenizer: the VLM's tokenizer (chat template, ``<image>`` token).
        image_token_id: the model's image placeholder id.
        training_config: image size and selector (longest image token count).
        data_args: ``model_max_length``.
        image_folder: folder relative image paths start from.

    Items: ``input_ids`` (L,) and ``labels`` (L,) with one unexpanded image placeholder (the model
    expands it to K + S at the step's budget), ``pixel_values`` (3, S, S), ``question_ids`` (Q,).
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        tokenizer: Any,
        image_token_id: int,
        training_config: ShirgXTrainingConfig,
        data_args: DataArguments,
        image_folder: str | os.PathLike,
    ) -> None:
        self.records = list(records)
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.image_token = tokenizer.convert_ids_to_tokens(image_token_id)
        self.config = training_config
        self.image_folder = Path(image_folder)
        # Room for the largest image: the prompt's placeholder becomes K_max + S tokens.
        selector = training_config.selector
        self.max_text_length = data_args.model_max_length - (max(selector.budgets) + selector.num_scaffold - 1)
        if self.max_text_length < 1:
            raise ValueError(
                f"model_max_length {data_args.model_max_length} leaves no room for text beside "
                f"{max(selector.budgets) + selector.num_scaffold} image tokens"
            )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        from PIL import Image

        from ...data.preprocess import siglip_preprocess

        record = self.records[index]
        image_config = self.config.image_config()
        image_path = self.image_folder / record["image"]
        if not image_path.is_file():
            raise FileNotFoundError(f"record {index} ({record['id']}): image {image_path} does not exist")
        with Image.open(image_path) as image:
            pixels = siglip_preprocess(
                image, image_config.image_size, image_config.image_mean, image_config.image_std, image_config.resample
            )[0]
        messages = to_chat_messages(record["conversations"], self.image_token)
        try:
            input_ids, labels = tokenize_conversation(
                self.tokenizer, messages, {self.image_token_id: 1}, max_length=self.max_text_length
            )
        except ValueError as error:
            raise ValueError(f"record {index} ({record['id']}): {error}") from error
        from ...models.shirgx_vlm import question_token_ids

        # Relevance scores the question's own tokens, tokenised as ``ShirgXImagePath.answer`` does:
        # the plain-QA question without its post-prompt, else the user turn without the image token.
        question = record.get("question") or next(
            m["content"] for m in messages if m["role"] == "user"
        ).replace(self.image_token, "")
        question_ids = torch.tensor(question_token_ids(self.tokenizer, question), dtype=torch.long)
        return {"input_ids": input_ids, "labels": labels, "pixel_values": pixels, "question_ids": question_ids}


class ImageQACollator:
    """Pads ``ImageQADataset`` items into a batch: text and questions on the right (with their
    masks), images stacked."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        def lengths_mask(key: str, width: int) -> Tensor:
            lengths = torch.tensor([item[key].numel() for item in items])
            return (torch.arange(width)[None, :] < lengths[:, None]).long()

        input_ids = pad_sequences([item["input_ids"] for item in items], self.pad_token_id)
        question_ids = pad_sequences([item["question_ids"] for item in items], self.pad_token_id)
        return {
            "input_ids": input_ids,
            "attention_mask": lengths_mask("input_ids", input_ids.shape[1]),
            "labels": pad_sequences([item["labels"] for item in items], IGNORE_INDEX),
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "question_ids": question_ids,
            "question_mask": lengths_mask("question_ids", question_ids.shape[1]),
        }


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class ShirgXTrainer(SpatialTrainer):
    """``SpatialTrainer`` with SHIRG-X's mixed budgets: each optimiser step draws K
    (``sample_budget(budgets, args.seed, global_step)``; the micro-batches of one accumulated step
    share it) and computes the budget target every ``budget_target_every`` steps. Logs the mean
    ``answer_loss``, ``budget_loss`` and ``budget`` beside ``loss``. Checkpoints also hold the
    selector alone (``shirgx_selector.safetensors`` + config, ``load_selector``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._step_metrics: dict[str, list[Tensor]] = {}

    def _training_config(self) -> ShirgXTrainingConfig:
        return _unwrapped(self.accelerator.unwrap_model(self.model)).training_config

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any):
        config = self._training_config()
        step = self.state.global_step
        budget = sample_budget(config.selector.budgets, self.args.seed, step)
        every = config.budget_target_every
        inputs = {**inputs, "budget": budget, "compute_budget_target": every > 0 and step % every == 0}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        if model.training:
            for key in ("answer_loss", "budget_loss"):
                self._step_metrics.setdefault(key, []).append(outputs[key])
            self._step_metrics.setdefault("budget", []).append(torch.tensor(float(budget)))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._step_metrics:
            for key, values in self._step_metrics.items():
                logs[key] = round(float(torch.stack([v.float().cpu() for v in values]).mean()), 4)
            self._step_metrics.clear()
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            selector = _unwrapped(self.accelerator.unwrap_model(self.model)).selector
            save_selector(selector, output_dir if output_dir is not None else self.args.output_dir)


def _projector_regex() -> str:
    names = "|".join(re.escape(name.split(".")[-1]) for name in PROJECTOR_LORA_TARGETS)
    return rf"{re.escape(_PROJECTOR_PREFIX)}\.({names})"


@register_task
class ShirgXTask(TrainingTask):
    """SHIRG-X image QA on a ``LlavaOnevisionForConditionalGeneration`` with a ``ShirgXSelector``."""

    name = "shirgx"
    part_map = SHIRGX_PART_MAP
    language_model_prefix = _LANGUAGE_MODEL_PREFIX
    trainer_class = ShirgXTrainer
    model_arguments_class = ShirgXModelArguments
    data_arguments_class = ShirgXDataArguments

    def build_config(self, model_args: ShirgXModelArguments):
        from transformers import LlavaOnevisionConfig

        if not isinstance(model_args, ShirgXModelArguments):
            raise TypeError("the shirgx task needs ShirgXModelArguments (spatialvlm train --task shirgx ...)")
        if model_args.model_flags():
            raise ValueError(f"VLM² flags {sorted(model_args.model_flags())} do not apply to the shirgx task")
        path = Path(model_args.model_name_or_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; --model_name_or_path must be a local checkpoint directory")
        config = LlavaOnevisionConfig.from_pretrained(path)
        vision = config.vision_config
        if model_args.image_size % vision.patch_size:
            raise ValueError(f"image_size {model_args.image_size} is not a multiple of the patch size {vision.patch_size}")
        side = model_args.image_size // vision.patch_size
        budgets = model_args.budget_list
        selector = ShirgXConfig(
            vision_dim=vision.hidden_size,
            grid=(side, side),
            scaffold_pool=model_args.scaffold_pool,
            budgets=budgets,
            default_budget=model_args.default_budget or budgets[len(budgets) // 2],
        )
        config.shirgx = ShirgXTrainingConfig(
            selector=selector,
            image_size=model_args.image_size,
            score_layer=model_args.score_layer,
            text_conditioned=model_args.text_conditioned,
            budget_loss_weight=model_args.budget_loss_weight,
            budget_target_margin=model_args.budget_target_margin,
            budget_target_every=model_args.budget_target_every,
            diffusion_loss_weighting=model_args.diffusion_loss_weighting,
        ).to_dict()
        return config

    def load_config(self, directory: str | os.PathLike):
        from transformers import LlavaOnevisionConfig

        config = LlavaOnevisionConfig.from_pretrained(directory)
        if not isinstance(getattr(config, "shirgx", None), dict):
            raise ValueError(f"{directory}/config.json has no 'shirgx' entry; not a SHIRG-X training checkpoint")
        return config

    def load_model(self, model_path: str, config: Any, torch_dtype: torch.dtype | None = None):
        from ...models.shirgx_vlm import load_shirgx_base

        training_config = ShirgXTrainingConfig.from_dict(config.shirgx)
        vlm = load_shirgx_base(model_path, config=config, dtype=torch_dtype)
        # The selector stays float32 (small; its inputs are cast), whatever the VLM's dtype.
        selector = ShirgXSelector(training_config.selector)
        model = ShirgXTrainingModel(vlm, selector, training_config)
        return model, [f"selector.{name}" for name in selector.state_dict()]

    def default_parts(self, model: nn.Module, model_args: ModelArguments) -> tuple[str, ...]:
        parts = ["mm_mlp_adapter", "coord_embed"]
        if getattr(model_args, "budget_target_every", 1) > 0:
            parts.append("budget_head")
        return tuple(parts)

    def lora_config(self, model_args: ShirgXModelArguments):
        """LoRA on the projector's linear_1 / linear_2 (rank ``projector_lora_r``), plus the language
        model's ``lora_target_modules`` at ``lora_r`` when ``lora_enable``; None when neither."""
        from peft import LoraConfig

        patterns = []
        if model_args.projector_lora:
            patterns.append(_projector_regex())
        language = None
        if model_args.lora_enable:
            names = "|".join(re.escape(name) for name in model_args.lora_targets)
            language = rf"{re.escape(_LANGUAGE_MODEL_PREFIX)}\..*\.({names})"
            patterns.append(language)
        if not patterns:
            return None
        projector = model_args.projector_lora
        extra = {}
        if projector and language is not None:
            extra = {"rank_pattern": {language: model_args.lora_r}, "alpha_pattern": {language: model_args.lora_alpha}}
        return LoraConfig(
            r=model_args.projector_lora_r if projector else model_args.lora_r,
            lora_alpha=model_args.projector_lora_alpha if projector else model_args.lora_alpha,
            lora_dropout=model_args.projector_lora_dropout if projector else model_args.lora_dropout,
            bias=model_args.lora_bias,
            target_modules="|".join(f"(?:{pattern})" for pattern in patterns),
            **extra,
        )

    def lora_parts(self, model_args: ShirgXModelArguments) -> tuple[str, ...]:
        parts = []
        if model_args.projector_lora:
            parts.append("mm_mlp_adapter")
        if model_args.lora_enable:
            parts.append(self.language_model_part)
        return tuple(parts)

    def learning_rate_groups(self, model_args: ShirgXModelArguments) -> dict[str, tuple[tuple[str, ...], float]]:
        head_lr = model_args.coord_lr if model_args.budget_head_lr is None else model_args.budget_head_lr
        return {
            "projector": (SHIRGX_PART_MAP["mm_mlp_adapter"], model_args.projector_lr),
            "coord_embed": (SHIRGX_PART_MAP["coord_embed"], model_args.coord_lr),
            "budget_head": (SHIRGX_PART_MAP["budget_head"], head_lr),
        }

    def build_processor(self, model_args: ModelArguments, config: Any):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_args.model_name_or_path)

    def build_train_data(self, processor: Any, data_args: DataArguments, config: Any):
        if data_args.data_path is None:
            raise ValueError("data_args.data_path is required")
        post_prompt = getattr(data_args, "question_post_prompt", "")
        records = load_image_qa_records(data_args.data_path, post_prompt)
        if processor.convert_ids_to_tokens(config.image_token_id) is None:
            raise ValueError(f"the tokenizer has no token for the model's image_token_id {config.image_token_id}")
        image_folder = getattr(data_args, "image_folder", None) or Path(data_args.data_path).parent
        dataset = ImageQADataset(
            records, processor, config.image_token_id, ShirgXTrainingConfig.from_dict(config.shirgx), data_args,
            image_folder,
        )
        return dataset, ImageQACollator(processor.pad_token_id)
