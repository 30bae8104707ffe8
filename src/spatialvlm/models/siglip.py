"""SigLIP dual-scale extraction for SHIRG-X: the original image at 672 px, all layers kept.

The earlier attempt upsampled an already-cropped 384 px view (no new detail) and deleted SigLIP's
last layer. Here the original image is resized once to ``image_size`` (672 px → 48×48 patches of 14)
and the unmodified ``SiglipVisionModel`` runs with ``interpolate_pos_encoding=True`` (transformers
resizes the 27×27 position table bicubically). The projector gets the layer it was trained on
(LLaVA/LaViDa: the penultimate, ``hidden_states[-2]``); scoring may read another layer.

Layer indices follow transformers' ``hidden_states``: 0 is the patch embedding, i the output of
encoder layer i, −1 the last layer (before ``post_layernorm``), −2 the penultimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from ..data.preprocess import siglip_preprocess
from ..selection import pull_back_text_embeds

__all__ = [
    "SiglipDualScaleExtractor",
    "SiglipPatchFeatures",
    "so400m_vision_config",
    "projector_linear_weights",
    "question_to_vision_space",
]


def so400m_vision_config(**overrides: Any) -> SiglipVisionConfig:
    """The vision config of siglip-so400m-patch14-384 (random weights when built from it)."""
    values = dict(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384, patch_size=14
    )
    values.update(overrides)
    return SiglipVisionConfig(**values)


@dataclass
class SiglipPatchFeatures:
    """Patch tokens of one SigLIP forward.

    Attributes:
        projector_tokens: (B, N, D) tokens of ``projector_layer``: what the selector hands on.
        score_tokens: (B, N, D) tokens of ``score_layer`` (the same tensor when the layers agree).
        grid: (rows, cols) of the patch grid, N = rows·cols.
    """

    projector_tokens: torch.Tensor
    score_tokens: torch.Tensor
    grid: tuple[int, int]


class SiglipDualScaleExtractor(nn.Module):
    """Runs a ``SiglipVisionModel`` at high resolution and returns row-major patch tokens.

    Args:
        vision_model: a transformers ``SiglipVisionModel`` (no layer removed).
        image_size: input side in pixels; 672 gives SHIRG-X's 48×48 grid at patch 14.
        projector_layer: hidden-state index the projector was trained on (−2: penultimate).
        score_layer: hidden-state index used for scoring; None reuses ``projector_layer``.
        image_mean, image_std: normalisation of the checkpoint's image processor.
    """

    def __init__(
        self,
        vision_model: SiglipVisionModel,
        image_size: int = 672,
        projector_layer: int = -2,
        score_layer: int | None = None,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        patch_size = vision_model.config.patch_size
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of the patch size {patch_size}")
        num_states = vision_model.config.num_hidden_layers + 1
        for name, layer in (("projector_layer", projector_layer), ("score_layer", score_layer)):
            if layer is not None and not -num_states <= layer < num_states:
                raise ValueError(f"{name}={layer} is outside the {num_states} hidden states (embeddings + layers)")
        self.vision_model = vision_model
        self.image_size = image_size
        self.projector_layer = projector_layer
        self.score_layer = projector_layer if score_layer is None else score_layer
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> SiglipDualScaleExtractor:
        """Load a local SigLIP vision checkpoint (never downloads)."""
        model = SiglipVisionModel.from_pretrained(path, local_files_only=True)
        return cls(model.eval(), **kwargs)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.vision_model.config.patch_size
        return side, side

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL image(s) or (T, H, W, 3) uint8 frames → (B, 3, image_size, image_size) pixels."""
        return siglip_preprocess(images, self.image_size, self.image_mean, self.image_std)

    def forward(self, pixel_values: torch.Tensor) -> SiglipPatchFeatures:
        """(B, 3, image_size, image_size) → :class:`SiglipPatchFeatures` with (B, rows·cols, D) tokens."""
        expected = (3, self.image_size, self.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(f"pixel_values must be (B, {', '.join(map(str, expected))}); got {tuple(pixel_values.shape)}")
        parameter = next(self.vision_model.parameters())
        outputs = self.vision_model(
            pixel_values=pixel_values.to(parameter.device, parameter.dtype),
            interpolate_pos_encoding=True,
            output_hidden_states=True,
        )
        states = outputs.hidden_states
        return SiglipPatchFeatures(states[self.projector_layer], states[self.score_layer], self.grid)

    def extract(self, images: Any) -> SiglipPatchFeatures:
        """Preprocess and run in one call."""
        return self(self.preprocess(images))


def projector_linear_weights(projector: nn.Module) -> list[torch.Tensor]:
    """The ``nn.Linear`` weights of a projector in forward (registration) order.

    Works for LLaVA-OneVision's ``linear_1, act, linear_2`` and LaViDa's ``mm_projector``
    (Linear, GELU, Linear).
    """
    weights = [module.weight for module in projector.modules() if isinstance(module, nn.Linear)]
    if not weights:
        raise ValueError(f"{type(projector).__name__} has no nn.Linear layers to pull question embeddings back through")
    return weights


def question_to_vision_space(projector: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping LLM question embeddings (..., H) to the selector's Sim space (..., D).

    Uses ``selection.pull_back_text_embeds`` with the projector's weights: the vision-space direction
    whose dot product with a patch feature equals (up to a constant) the dot product of the
    linearised projector output with the question token.
    """
    weights = projector_linear_weights(projector)

    def to_vision_space(question_embeds: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pull_back_text_embeds(question_embeds, weights)

    return to_vision_space
