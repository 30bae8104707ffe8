"""SHIRG-X image path for LLaVA-OneVision-style VLMs (SigLIP + projector + language model).

    image ─ resize to 672 px ─ SigLIP (interpolate_pos_encoding, all hidden states)
          ─ layer the projector was trained on ─┐
          ─ optional scoring layer ─────────────┴─ ShirgXSelector ─ K + 144 tokens (+ coordinate embedding)
          ─ multimodal projector ─ K + 144 language tokens replacing the prompt's <image>

The one ``<image>`` placeholder of each prompt is expanded to as many tokens as the image yields and
the projected features are scattered there, as LLaVA does. Without a selector the features come from
the model's own ``get_image_features`` (its anyres path at its own resolution), so the base model's
behaviour is unchanged. The path never modifies the wrapped model.

Decoding: autoregressive (``model.generate``) or masked diffusion with a prefix cache
(``MaskedDiffusionGenerator``). The image tokens are computed once, before decoding, and their count
(K + 144) is fixed, so the prefix the diffusion cache holds never changes between steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from PIL import Image
from torch import nn

from ..data.preprocess import siglip_preprocess
from ..diagnostics.profiling import StageTimer, maybe_stage
from ..selection import SelectionOutput, ShirgXSelector
from ..selection.text_space import pull_back_text_embeds
from .diffusion import DiffusionConfig, MaskedDiffusionGenerator

__all__ = [
    "ShirgXImageConfig",
    "ImageFeatures",
    "ImageAnswer",
    "ShirgXImagePath",
    "effective_linear_weight",
    "expand_image_placeholders",
    "build_shirgx_base",
    "load_shirgx_base",
]


def effective_linear_weight(linear: nn.Module) -> torch.Tensor:
    """(out, in) weight a linear layer applies: a peft LoRA layer's base weight plus its active
    adapters' deltas (its ``.weight`` is the base weight alone until merged), else ``linear.weight``.

    Scoring must see this, not ``.weight``: otherwise training (base + LoRA) and the merged model
    rank patches against the question differently and keep different tokens.
    """
    if not hasattr(linear, "get_base_layer"):
        return linear.weight
    weight = linear.get_base_layer().weight
    if getattr(linear, "merged", False) or getattr(linear, "disable_adapters", False):
        return weight
    for name in linear.active_adapters:
        if name in getattr(linear, "lora_A", {}):
            weight = weight + linear.get_delta_weight(name)
    return weight


def build_shirgx_base(config) -> nn.Module:
    """A freshly initialised LLaVA-OneVision VLM from a ``LlavaOnevisionConfig`` (tiny experiments)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration(config)


def load_shirgx_base(directory: str | os.PathLike, config=None, dtype: torch.dtype | None = None) -> nn.Module:
    """Load the LLaVA-OneVision VLM (SigLIP + projector + language model) the SHIRG-X path wraps.

    Args:
        directory: a local ``save_pretrained`` folder.
        config: optional ``LlavaOnevisionConfig`` to load with (e.g. one carrying ``shirgx``).
        dtype: optional weight dtype.
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    extra = {} if config is None else {"config": config}
    if dtype is not None:
        extra["dtype"] = dtype
    return LlavaOnevisionForConditionalGeneration.from_pretrained(directory, **extra)


@dataclass
class ShirgXImageConfig:
    """Knobs of the SHIRG-X image path.

    Args:
        image_size: side, in pixels, of the single high-resolution view (672 → 48×48 patches at
            patch 14); must equal ``selector.config.grid × patch_size``.
        score_layer: SigLIP ``hidden_states`` index the selector scores with; ``None`` scores with the
            projector's layer (``model.config.vision_feature_layer``), which is always what the
            projector receives.
        text_conditioned: pull the question's embeddings back into the vision space
            (``pull_back_text_embeds``) so relevance is question-driven; False uses the selector's
            text-free saliency.
        resample: Pillow filter for the resize to ``image_size``.
        image_mean, image_std: SigLIP normalisation.
    """

    image_size: int = 672
    score_layer: int | None = None
    text_conditioned: bool = True
    resample: str = "bicubic"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass
class ImageFeatures:
    """Language-space image tokens.

    Attributes:
        tokens: (B, N, H) projected image tokens (N = K + 144 with the selector).
        selection: the selector's output (coordinates, sources, scores, budget), or None without it.
    """

    tokens: torch.Tensor
    selection: SelectionOutput | None = None


@dataclass
class ImageAnswer:
    """Result of ``ShirgXImagePath.answer``.

    Attributes:
        text: decoded answer.
        token_ids: (L,) answer ids, cut at the first end-of-sequence token.
        num_image_tokens: image tokens in the prompt (K + 144 with the selector).
        selection: the selector's output, or None without it.
        timings: seconds per stage: vision, selection, projector, then decode (autoregressive) or
            prefix and denoise (diffusion).
    """

    text: str
    token_ids: torch.Tensor
    num_image_tokens: int
    selection: SelectionOutput | None
    timings: dict[str, float] = field(default_factory=dict)


def expand_image_placeholders(
    input_ids: torch.LongTensor,
    image_token_id: int,
    num_image_tokens: int,
    attention_mask: torch.Tensor | None = None,
    labels: torch.LongTensor | None = None,
) -> tuple[torch.LongTensor, torch.Tensor | None, torch.LongTensor | None]:
    """Repeat each row's single image placeholder ``num_image_tokens`` times.

    Args:
        input_ids: (B, T), exactly one ``image_token_id`` per row.
        image_token_id: placeholder id.
        num_image_tokens: N, tokens the image becomes.
        attention_mask: optional (B, T), expanded alike.
        labels: optional (B, T), expanded alike with -100 (ignored) on the image tokens.

    Returns:
        (input_ids, attention_mask, labels), each (B, T + N − 1) or None.
    """
    is_image = input_ids == image_token_id
    per_row = is_image.sum(1)
    if not bool((per_row == 1).all()):
        raise ValueError(f"each prompt needs exactly one image placeholder (id {image_token_id}); found {per_row.tolist()}")
    repeats = torch.where(is_image, num_image_tokens, 1).flatten()
    batch = input_ids.shape[0]

    def expand(tensor: torch.Tensor | None, name: str) -> torch.Tensor | None:
        if tensor is None:
            return None
        if tensor.shape != input_ids.shape:
            raise ValueError(f"{name} must be {tuple(input_ids.shape)} like input_ids; got {tuple(tensor.shape)}")
        return tensor.flatten().repeat_interleave(repeats).view(batch, -1)

    ids = expand(input_ids, "input_ids")
    labels = expand(labels, "labels")
    if labels is not None:
        labels = labels.masked_fill(ids == image_token_id, -100)
    return ids, expand(attention_mask, "attention_mask"), labels


class ShirgXImagePath(nn.Module):
    """The SHIRG-X image path around a ``LlavaOnevisionForConditionalGeneration`` (or any model with
    ``model.vision_tower``, ``model.multi_modal_projector``, ``model.language_model`` and
    ``get_output_embeddings()``).

    Args:
        model: the VLM; not modified.
        selector: a ``ShirgXSelector`` whose ``vision_dim`` is the SigLIP width; ``None`` is the base
            path (the model's own image features, unchanged behaviour).
        config: ``ShirgXImageConfig``.
    """

    def __init__(self, model: nn.Module, selector: ShirgXSelector | None = None, config: ShirgXImageConfig | None = None):
        super().__init__()
        self.model = model
        self.selector = selector
        self.config = config or ShirgXImageConfig()
        vision_config = model.config.vision_config
        if selector is not None:
            side = self.config.image_size // vision_config.patch_size
            if self.config.image_size % vision_config.patch_size or selector.config.grid != (side, side):
                raise ValueError(
                    f"image_size {self.config.image_size} at patch {vision_config.patch_size} gives a {side}×{side} grid; "
                    f"the selector expects {selector.config.grid}"
                )
            if selector.config.vision_dim != vision_config.hidden_size:
                raise ValueError(
                    f"selector vision_dim {selector.config.vision_dim} != SigLIP width {vision_config.hidden_size}"
                )
            if not isinstance(model.config.vision_feature_layer, int):
                raise ValueError("the SHIRG-X path needs one projector feature layer (vision_feature_layer: int)")

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @property
    def _inner(self) -> nn.Module:
        return self.model.model

    def preprocess(self, images: Image.Image | list[Image.Image]) -> dict[str, torch.Tensor]:
        """PIL image(s) -> model inputs: ``pixel_values`` (B, 3, S, S) at ``image_size`` with the selector;
        the base LLaVA-OneVision anyres inputs (``pixel_values`` (B, tiles, 3, s, s), ``image_sizes``) without."""
        if self.selector is not None:
            pixels = siglip_preprocess(images, self.config.image_size, self.config.image_mean,
                                       self.config.image_std, self.config.resample)
            return {"pixel_values": pixels}
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        side = self.model.config.vision_config.image_size
        processor = LlavaOnevisionImageProcessorPil(
            size={"height": side, "width": side},
            image_grid_pinpoints=self.model.config.image_grid_pinpoints,
            image_mean=list(self.config.image_mean),
            image_std=list(self.config.image_std),
        )
        batch = processor(images if isinstance(images, list) else [images], return_tensors="pt")
        return {"pixel_values": batch["pixel_values"], "image_sizes": batch["image_sizes"]}

    def image_features(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        question_embeds: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
        budget: int | None = None,
        timer: StageTimer | None = None,
    ) -> ImageFeatures:
        """Image -> language-space tokens.

        Args:
            pixel_values: selector on: (B, 3, image_size, image_size); off: the base model's input.
            image_sizes: base path only, (B, 2).
            question_embeds: (B, T, H) question token embeddings in the language model's input space.
            question_mask: (B, T) bool, True at real question tokens.
            budget: K; ``None`` lets the selector's adaptive head choose.
            timer: optional ``StageTimer`` (stages vision, selection, projector).
        """
        config = self.model.config
        if self.selector is None:
            with maybe_stage(timer, "vision"):
                features = self._inner.get_image_features(
                    pixel_values, image_sizes,
                    vision_feature_layer=config.vision_feature_layer,
                    vision_feature_select_strategy=config.vision_feature_select_strategy,
                ).pooler_output
            if len({tuple(f.shape) for f in features}) != 1:
                raise ValueError("images of one batch must give the same number of tokens on the base path")
            return ImageFeatures(torch.stack(list(features)))

        hidden_states = self.vision_hidden_states(pixel_values, timer)
        return self.select_and_project(hidden_states, question_embeds, question_mask, budget, timer)

    def vision_hidden_states(self, pixel_values: torch.Tensor, timer: StageTimer | None = None) -> tuple[torch.Tensor, ...]:
        """SigLIP at ``image_size`` (position embeddings interpolated): every layer's (B, N, D) output."""
        expected = (self.config.image_size, self.config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[-2:]) != expected:
            raise ValueError(f"pixel_values must be (B, 3, {expected[0]}, {expected[1]}); got {tuple(pixel_values.shape)}")
        with maybe_stage(timer, "vision"):
            return self._inner.vision_tower(
                pixel_values.to(self._inner.vision_tower.dtype), output_hidden_states=True,
                interpolate_pos_encoding=True,
            ).hidden_states

    def select_and_project(
        self,
        hidden_states: tuple[torch.Tensor, ...],
        question_embeds: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
        budget: int | None = None,
        timer: StageTimer | None = None,
    ) -> ImageFeatures:
        """SigLIP hidden states -> K + 144 selected, coordinate-embedded, projected tokens.

        The projector's layer (``model.config.vision_feature_layer``) is what gets selected and
        projected; ``config.score_layer`` only changes the scores.
        """
        if self.selector is None:
            raise ValueError("select_and_project needs a selector; without one use image_features")
        projector = self._inner.multi_modal_projector
        projector_tokens = hidden_states[self.model.config.vision_feature_layer]
        score_tokens = None if self.config.score_layer is None else hidden_states[self.config.score_layer]
        text = None
        if question_embeds is not None and self.config.text_conditioned:
            text = self.question_vectors(question_embeds)
        with maybe_stage(timer, "selection"):
            selection = self.selector(projector_tokens, text, budget, text_mask=question_mask, score_tokens=score_tokens)
        with maybe_stage(timer, "projector"):
            tokens = projector(selection.tokens)
        return ImageFeatures(tokens, selection)

    def question_vectors(self, question_embeds: torch.Tensor) -> torch.Tensor:
        """(B, T, H) question embeddings -> (B, T, D) vision-space vectors the selector scores against,
        through the projector's effective (LoRA-adapted) weights. No gradient reaches the projector
        through this path: it only ranks patches."""
        projector = self._inner.multi_modal_projector
        with torch.no_grad():
            weights = [effective_linear_weight(projector.linear_1), effective_linear_weight(projector.linear_2)]
        return pull_back_text_embeds(question_embeds, weights)

    def build_inputs(
        self,
        input_ids: torch.LongTensor,
        image_tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Expand each prompt's ``<image>`` to N tokens and scatter the image features there.

        Args:
            input_ids: (B, T) with one image placeholder per row.
            image_tokens: (B, N, H).
            attention_mask, labels: optional (B, T).

        Returns:
            ``inputs_embeds`` (B, T + N − 1, H), ``attention_mask`` (and ``labels``) expanded alike.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask, labels = expand_image_placeholders(
            input_ids, self.image_token_id, image_tokens.shape[1], attention_mask, labels
        )
        embeds = self.model.get_input_embeddings()(ids)
        is_image = (ids == self.image_token_id)[..., None]
        embeds = embeds.masked_scatter(is_image, image_tokens.to(embeds.dtype))
        inputs = {"inputs_embeds": embeds, "attention_mask": mask}
        if labels is not None:
            inputs["labels"] = labels
        return inputs

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        image_sizes: torch.Tensor | None = None,
        question_ids: torch.LongTensor | None = None,
        question_mask: torch.Tensor | None = None,
        budget: int | None = None,
    ):
        """Language-model forward over the image-expanded prompt (teacher forcing when ``labels`` given).

        Returns the wrapped model's output (``logits`` (B, T + N − 1, V), ``loss`` with labels).
        """
        question_embeds = None if question_ids is None else self.model.get_input_embeddings()(question_ids)
        features = self.image_features(pixel_values, image_sizes, question_embeds, question_mask, budget)
        return self.model(**self.build_inputs(input_ids, features.tokens, attention_mask, labels))

    @torch.no_grad()
    def answer(
        self,
        image: Image.Image,
        question: str,
        tokenizer,
        decoding: Literal["autoregressive", "diffusion"] = "autoregressive",
        budget: int | None = None,
        max_new_tokens: int = 32,
        diffusion_config: DiffusionConfig | None = None,
    ) -> ImageAnswer:
        """Answer a question about one image.

        Args:
            image: any PIL image (resized to ``image_size`` with the selector).
            question: the question text.
            tokenizer: the model's tokenizer (chat template with an image placeholder, or ChatML).
            decoding: ``"autoregressive"`` (greedy ``generate``) or ``"diffusion"``.
            budget: K, or ``None`` for the adaptive head.
            max_new_tokens: answer length (the diffusion answer length unless ``diffusion_config`` says).
            diffusion_config: knobs of the diffusion decoder (mask id defaults to the tokenizer's).
        """
        timer = StageTimer()
        prompt_ids = tokenizer(self.prompt(question, tokenizer), return_tensors="pt").input_ids
        question_ids = tokenizer(question, return_tensors="pt").input_ids
        inputs = self.preprocess(image)
        embeddings = self.model.get_input_embeddings()
        features = self.image_features(
            inputs["pixel_values"], inputs.get("image_sizes"), embeddings(question_ids), budget=budget, timer=timer
        )
        prompt = self.build_inputs(prompt_ids, features.tokens)
        if decoding == "diffusion":
            config = diffusion_config or DiffusionConfig(mask_token_id=tokenizer.mask_token_id, answer_length=max_new_tokens)
            generator = MaskedDiffusionGenerator.from_model(self.model, config)
            answer = generator.generate(
                prompt_embeds=prompt["inputs_embeds"], prompt_attention_mask=prompt["attention_mask"], timer=timer
            ).sequences[0]
        elif decoding == "autoregressive":
            with timer.stage("decode"):
                answer = self.model.generate(
                    **prompt, max_new_tokens=max_new_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                )[0]
        else:
            raise ValueError(f"decoding must be 'autoregressive' or 'diffusion', got {decoding!r}")
        stops = (answer == tokenizer.eos_token_id).nonzero()
        if len(stops):
            answer = answer[: stops[0, 0]]
        return ImageAnswer(
            text=tokenizer.decode(answer, skip_special_tokens=True).strip(),
            token_ids=answer,
            num_image_tokens=features.tokens.shape[1],
            selection=features.selection,
            timings=dict(timer.totals),
        )

    @staticmethod
    def prompt(question: str, tokenizer) -> str:
        """One user turn holding the image then the question, ready for the assistant's answer."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"
