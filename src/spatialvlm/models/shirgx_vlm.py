"""SHIRG-X image path for LLaVA-OneVision-style VLMs (SigLIP + projector + language model).

    image ─ 672 px view (squashed, or padded to keep the aspect ratio) ─ SigLIP (interpolate_pos_encoding)
          ─ layer the projector was trained on ─ + coordinate embedding ─ projector, every patch ─┐
          ─ question's own tokens (input embeddings) ─────────────────── Sim = ⟨P(f), ê⟩ ───────┤
          ─ optional scoring layer (text-free saliency, merge gate, budget head) ────────────────┴─
          ShirgXSelector: merge, spread, keep K, pool after the projector ─ K + 144 language tokens

The one ``<image>`` placeholder of each prompt is expanded to as many tokens as the image yields and
the projected features are scattered there, as LLaVA does. Without a selector the features come from
the model's own ``get_image_features`` (its anyres path at its own resolution), so the base model's
behaviour is unchanged; ``base_path="lavida"`` runs LaViDa's own anyres path instead (2× bilinear
pooling after the projector, newline tokens; ``models.lavida_image``). Baselines plug in as the
selector (``selection.BaselineSelector``): VisionZip gets the projector layer's real attention,
ToMe runs inside SigLIP. The path never modifies the wrapped model.

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
from ..selection import BaselineSelector, SelectionOutput, ShirgXSelector
from .diffusion import DiffusionConfig, MaskedDiffusionGenerator
from .lavida_image import expand_to_square, lavida_anyres_tokens, lavida_anyres_views
from .siglip import layer_attention, tome_siglip_forward

__all__ = [
    "ShirgXImageConfig",
    "ImageFeatures",
    "ImageAnswer",
    "ShirgXImagePath",
    "expand_image_placeholders",
    "question_token_ids",
    "build_shirgx_base",
    "load_shirgx_base",
    "ShirgXImageModel",
    "load_shirgx_image_model",
]


def question_token_ids(tokenizer, question: str) -> list[int]:
    """The question's own token ids for relevance: no special tokens, no chat template, no
    post-prompt, surrounding whitespace stripped. Training (``ImageQADataset``) and ``answer()`` both
    call this, so a question scores the same patches in both."""
    ids = tokenizer(question.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the question has no tokens to score patches with; pass text_conditioned=False for none")
    return ids


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
        text_conditioned: score patches by the exact ⟨P(f_i), ê_q⟩ with the question's own tokens;
            False uses the selector's text-free saliency.
        aspect: "squash" resizes the image to image_size² (LaViDa's global view does the same);
            "pad" keeps the aspect ratio, padding the short side with the mean colour first
            (LLaVA's ``expand2square``), so no content is distorted.
        base_path: without a selector, "model" uses the wrapped model's own ``get_image_features``;
            "lavida" LaViDa's anyres path (views at the tower's size, 2× bilinear pooling after the
            projector, ``image_newline`` after each row).
        resample: Pillow filter for the resize to ``image_size``.
        image_mean, image_std: SigLIP normalisation.
    """

    image_size: int = 672
    score_layer: int | None = None
    text_conditioned: bool = True
    aspect: Literal["squash", "pad"] = "squash"
    base_path: Literal["model", "lavida"] = "model"
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
        if self.config.aspect not in ("squash", "pad") or self.config.base_path not in ("model", "lavida"):
            raise ValueError(
                f"aspect must be 'squash' or 'pad' (got {self.config.aspect!r}), base_path 'model' or 'lavida' "
                f"(got {self.config.base_path!r})"
            )
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
        config = self.config
        if self.selector is not None:
            if config.aspect == "pad":
                fill = tuple(int(round(255 * m)) for m in config.image_mean)
                images = [expand_to_square(i, fill) for i in (images if isinstance(images, list) else [images])]
            pixels = siglip_preprocess(images, config.image_size, config.image_mean, config.image_std, config.resample)
            return {"pixel_values": pixels}
        if config.base_path == "lavida":
            if isinstance(images, list):
                raise ValueError("base_path='lavida' takes one image per call (views differ per image)")
            views = lavida_anyres_views(
                images, self.model.config.vision_config.image_size, mean=config.image_mean, std=config.image_std
            )
            return {"pixel_values": views.pixel_values, "lavida_views": views}
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
        lavida_views=None,
    ) -> ImageFeatures:
        """Image -> language-space tokens.

        Args:
            pixel_values: selector on: (B, 3, image_size, image_size); off: the base model's input.
            image_sizes: base path only, (B, 2).
            question_embeds: (B, T, H) input embeddings of the question's own tokens
                (``question_token_ids``).
            question_mask: (B, T) bool, True at real question tokens.
            budget: K; ``None`` lets the selector's adaptive head choose.
            timer: optional ``StageTimer`` (stages vision, then the selector's: embed, project,
                scaffold, score, budget, merge, select).
            lavida_views: ``base_path="lavida"`` only: the ``LavidaViews`` from ``preprocess``.
        """
        config = self.model.config
        if self.selector is None:
            if self.config.base_path == "lavida":
                if lavida_views is None:
                    raise ValueError("base_path='lavida' needs lavida_views (from preprocess)")
                with maybe_stage(timer, "vision"):
                    tokens = lavida_anyres_tokens(
                        self._inner.vision_tower, self._inner.multi_modal_projector, self._inner.image_newline,
                        lavida_views, config.vision_feature_layer,
                    )
                return ImageFeatures(tokens[None])
            with maybe_stage(timer, "vision"):
                features = self._inner.get_image_features(
                    pixel_values, image_sizes,
                    vision_feature_layer=config.vision_feature_layer,
                    vision_feature_select_strategy=config.vision_feature_select_strategy,
                ).pooler_output
            if len({tuple(f.shape) for f in features}) != 1:
                raise ValueError("images of one batch must give the same number of tokens on the base path")
            return ImageFeatures(torch.stack(list(features)))

        if self._is_tome:
            self._check_pixels(pixel_values)
            budget = self.selector.config.default_budget if budget is None else budget
            with maybe_stage(timer, "vision"):
                merged = tome_siglip_forward(
                    self._inner.vision_tower, pixel_values, self.selector.token_count(budget), config.vision_feature_layer
                )
            selection = self.selector(None, budget=budget, projector=self._inner.multi_modal_projector, tome=merged)
            return ImageFeatures(selection.tokens, selection)
        hidden_states = self.vision_hidden_states(pixel_values, timer)
        return self.select_and_project(hidden_states, question_embeds, question_mask, budget, timer)

    @property
    def _is_tome(self) -> bool:
        return isinstance(self.selector, BaselineSelector) and self.selector.method == "tome"

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        expected = (self.config.image_size, self.config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[-2:]) != expected:
            raise ValueError(f"pixel_values must be (B, 3, {expected[0]}, {expected[1]}); got {tuple(pixel_values.shape)}")

    def vision_hidden_states(self, pixel_values: torch.Tensor, timer: StageTimer | None = None) -> tuple[torch.Tensor, ...]:
        """SigLIP at ``image_size`` (position embeddings interpolated): every layer's (B, N, D) output."""
        self._check_pixels(pixel_values)
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

        The projector's layer (``model.config.vision_feature_layer``) is what gets projected (every
        patch, through the projector as it is, LoRA included), scored against the question and
        pooled; ``config.score_layer`` only changes the text-free saliency, the merge gate and the
        budget head.
        """
        if self.selector is None:
            raise ValueError("select_and_project needs a selector; without one use image_features")
        if self._is_tome:
            raise ValueError("tome merges inside SigLIP, so it needs the pixels: use image_features")
        projector = self._inner.multi_modal_projector
        layer = self.model.config.vision_feature_layer
        projector_tokens = hidden_states[layer]
        score_tokens = None if self.config.score_layer is None else hidden_states[self.config.score_layer]
        text = question_embeds if self.config.text_conditioned else None
        extra = {}
        if isinstance(self.selector, BaselineSelector) and self.selector.method == "visionzip":
            attention = layer_attention(self._inner.vision_tower, hidden_states, layer)
            extra = {"attention_received": attention.attention_received, "keys": attention.keys}
        selection = self.selector(
            projector_tokens, text, budget, text_mask=question_mask, score_tokens=score_tokens,
            projector=projector, timer=timer, **extra,
        )
        return ImageFeatures(selection.tokens, selection)

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
        post_prompt: str = "",
    ) -> ImageAnswer:
        """Answer a question about one image.

        Args:
            image: any PIL image (resized to ``image_size`` with the selector).
            question: the question text; only its own tokens score patches (``question_token_ids``).
            tokenizer: the model's tokenizer (chat template with an image placeholder, or ChatML).
            decoding: ``"autoregressive"`` (greedy ``generate``) or ``"diffusion"``.
            budget: K, or ``None`` for the adaptive head.
            max_new_tokens: answer length (the diffusion answer length unless ``diffusion_config`` says).
            diffusion_config: knobs of the diffusion decoder (mask id defaults to the tokenizer's).
            post_prompt: text after the question in the prompt (e.g. "\nAnswer the question using a
                single word or phrase."); it is not part of the relevance query.
        """
        timer = StageTimer()
        prompt_ids = tokenizer(self.prompt(question + post_prompt, tokenizer), return_tensors="pt").input_ids
        question_ids = torch.tensor([question_token_ids(tokenizer, question)])
        inputs = self.preprocess(image)
        embeddings = self.model.get_input_embeddings()
        features = self.image_features(
            inputs["pixel_values"], inputs.get("image_sizes"), embeddings(question_ids), budget=budget, timer=timer,
            lavida_views=inputs.get("lavida_views"),
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


@dataclass
class ShirgXImageModel:
    """What :func:`load_shirgx_image_model` returns.

    Attributes:
        model: the LLaVA-OneVision-style model (SigLIP + projector + language model), on CPU.
        selector: the SHIRG-X selector, or None for the base model's own image path.
        image_config: the view the selector was trained with (None: ``ShirgXImageConfig()``'s defaults).
        selector_source: one line saying which selector runs (``spatialvlm ask`` prints it).
    """

    model: nn.Module
    selector: ShirgXSelector | None
    image_config: ShirgXImageConfig | None
    selector_source: str


def load_shirgx_image_model(
    directory: str | os.PathLike, dtype: torch.dtype | None = None, no_selector: bool = False
) -> ShirgXImageModel:
    """Load a checkpoint for the SHIRG-X image path (``spatialvlm ask --image``, the lmms-eval plugin).

    A SHIRG-X training checkpoint (``spatialvlm train --task shirgx``) rebuilds its base model with
    the projector adapters merged and its trained selector and image size. Any other directory is a
    LLaVA-OneVision / VLM² model (only its SigLIP + projector + language model are loaded); a
    selector saved beside it (``shirgx_selector.safetensors``, ``save_selector``) is used, else an
    untrained one (zero coordinate embedding, default-budget head): the training-free SHIRG-X.

    Args:
        directory: the checkpoint directory.
        dtype: model dtype (None keeps the stored one).
        no_selector: load no selector (the base model's own image path).
    """
    import json
    from pathlib import Path

    from transformers.utils import logging as hf_logging

    from ..selection import SELECTOR_WEIGHTS_NAME, ShirgXConfig, load_selector
    from ..train.checkpoint import MANIFEST_NAME, CheckpointManifest, load_trained_model

    directory = Path(directory)
    base_path = "none (no_selector: the base model's own image path)"
    if (directory / MANIFEST_NAME).is_file():
        task = CheckpointManifest.load(directory).task
        if task != "shirgx":
            raise ValueError(f"{directory} is a '{task}' training checkpoint; the image path reads SHIRG-X ('shirgx') ones")
        trained = load_trained_model(directory, merge_lora=True, torch_dtype=dtype)
        if no_selector:
            return ShirgXImageModel(trained.model, None, None, base_path)
        return ShirgXImageModel(
            trained.model, trained.selector, trained.training_config.image_config(),
            f"the trained SHIRG-X selector of {directory} (spatialvlm train --task shirgx)",
        )
    is_vlm2 = json.loads((directory / "config.json").read_text()).get("model_type") == "vlm2"
    # A VLM² checkpoint holds video modules the image path has no use for: transformers would list
    # each of them as an UNEXPECTED key (~50 lines); the returned selector_source says so in one.
    verbosity = hf_logging.get_verbosity()
    if is_vlm2:
        hf_logging.set_verbosity_error()
    try:
        model = load_shirgx_base(directory, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    ignored = "; its VLM² video modules (fusion, memory) are not used" if is_vlm2 else ""
    if no_selector:
        return ShirgXImageModel(model, None, None, base_path + ignored)
    vision_dim = model.config.vision_config.hidden_size
    if (directory / SELECTOR_WEIGHTS_NAME).is_file():
        selector = load_selector(directory, vision_dim)
        # The view's side follows the saved selector's grid (672 px for the default 48×48).
        side = selector.config.grid[0] * model.config.vision_config.patch_size
        return ShirgXImageModel(model, selector, ShirgXImageConfig(image_size=side), f"{directory / SELECTOR_WEIGHTS_NAME}{ignored}")
    return ShirgXImageModel(
        model, ShirgXSelector(ShirgXConfig(vision_dim=vision_dim)), None,
        f"untrained SHIRG-X (no {SELECTOR_WEIGHTS_NAME} in {directory}): training-free scoring, "
        f"zero coordinate embedding, untrained budget head{ignored}",
    )
