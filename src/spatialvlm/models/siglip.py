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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from ..data.preprocess import siglip_preprocess

__all__ = [
    "SiglipDualScaleExtractor",
    "SiglipPatchFeatures",
    "so400m_vision_config",
    "LayerAttention",
    "layer_attention",
    "ToMeSiglipOutput",
    "tome_siglip_forward",
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


@dataclass
class LayerAttention:
    """Attention statistics of one SigLIP layer (VisionZip's inputs).

    Attributes:
        attention_received: (B, N) softmax attention each token receives, summed over heads and
            averaged over queries (SigLIP has no CLS token whose row VisionZip would read).
        keys: (B, N, head_dim) the layer's keys averaged over heads (VisionZip's and ToMe's metric).
    """

    attention_received: torch.Tensor
    keys: torch.Tensor


def _vision_transformer(vision_model: nn.Module) -> nn.Module:
    """``SiglipVisionTransformer`` inside a ``SiglipVisionModel`` (or the transformer itself)."""
    return getattr(vision_model, "vision_model", vision_model)


def _resolve_layer(layer: int, num_layers: int) -> int:
    """hidden_states index (negative allowed) → the 1-based encoder layer that produced it."""
    resolved = layer % (num_layers + 1)
    if resolved == 0:
        raise ValueError(f"layer {layer} is the patch embedding (hidden_states[0]), which has no attention")
    return resolved


def layer_attention(vision_model: nn.Module, hidden_states: Sequence[torch.Tensor], layer: int) -> LayerAttention:
    """Attention received and keys of the encoder layer whose output is ``hidden_states[layer]``.

    Recomputed from that layer's input ``hidden_states[layer − 1]`` with its own ``layer_norm1``,
    ``q_proj`` and ``k_proj`` (exactly what the layer computed), one head at a time so the
    (N, N) probabilities of only one head are held.

    Args:
        vision_model: ``SiglipVisionModel`` (or its ``vision_model``).
        hidden_states: the tower's ``hidden_states`` (embeddings + every layer).
        layer: hidden_states index of the projector's layer (e.g. −1 of a 26-layer LaViDa tower,
            −2 of the full 27-layer so400m: VisionZip's layer −2).
    """
    encoder_layers = _vision_transformer(vision_model).encoder.layers
    index = _resolve_layer(layer, len(encoder_layers))
    encoder_layer = encoder_layers[index - 1]
    attention = encoder_layer.self_attn
    with torch.no_grad():
        inputs = encoder_layer.layer_norm1(hidden_states[index - 1])
        batch, tokens, _ = inputs.shape
        queries = attention.q_proj(inputs).view(batch, tokens, attention.num_heads, attention.head_dim)
        keys = attention.k_proj(inputs).view(batch, tokens, attention.num_heads, attention.head_dim)
        received = inputs.new_zeros(batch, tokens, dtype=torch.float32)
        for head in range(attention.num_heads):
            logits = queries[:, :, head] @ keys[:, :, head].transpose(1, 2) * attention.scale
            received += logits.float().softmax(dim=-1).mean(dim=1)
    return LayerAttention(received, keys.mean(dim=2))


@dataclass
class ToMeSiglipOutput:
    """Tokens of a SigLIP pass with ToMe merging inside.

    Attributes:
        tokens: (B, T, D) merged tokens at the requested layer (T = the requested count).
        sizes: (B, T, 1) patches per token.
        source: (B, T, N) 0/1 map from each token to the original patches.
        schedule: r of every layer that ran.
    """

    tokens: torch.Tensor
    sizes: torch.Tensor
    source: torch.Tensor
    schedule: list[int]


def tome_siglip_forward(
    vision_model: nn.Module,
    pixel_values: torch.Tensor,
    count: int,
    layer: int = -1,
    proportional_attention: bool = True,
    interpolate_pos_encoding: bool = True,
    schedule: Sequence[int] | None = None,
) -> ToMeSiglipOutput:
    """SigLIP with ToMe (Bolya et al., 2023) between attention and MLP of every layer up to ``layer``.

    Per layer, as ToMe's ``ToMeBlock`` / ``ToMeAttention``: x += Attn(LN1(x)) with proportional
    attention (logits + log size of the key token); r tokens merged by ``bipartite_soft_matching``
    on the keys averaged over heads, size-weighted (``merge_wavg``); x += MLP(LN2(x)). The layers
    after ``layer`` do not run (their output is not used).

    Args:
        vision_model: ``SiglipVisionModel`` (or its ``vision_model``), not modified.
        pixel_values: (B, 3, S, S).
        count: tokens to leave at ``layer`` (K + 144 to match SHIRG-X).
        layer: hidden_states index of the projector's layer.
        proportional_attention: ToMe's off-the-shelf setting (True).
        interpolate_pos_encoding: for inputs larger than the checkpoint's size (672 px).
        schedule: r per layer; default ``selection.tome_schedule`` (constant r reaching ``count``).
    """
    from ..selection import bipartite_soft_matching, merge_source, merge_wavg, tome_schedule

    transformer = _vision_transformer(vision_model)
    layers = transformer.encoder.layers
    depth = _resolve_layer(layer, len(layers))
    parameter = next(transformer.parameters())
    x = transformer.embeddings(pixel_values.to(parameter.device, parameter.dtype), interpolate_pos_encoding=interpolate_pos_encoding)
    schedule = list(schedule) if schedule is not None else tome_schedule(x.shape[1], count, depth)
    if len(schedule) != depth:
        raise ValueError(f"schedule has {len(schedule)} entries; layers 1..{depth} need one each")
    size = source = None
    for encoder_layer, r in zip(layers[:depth], schedule):
        attention = encoder_layer.self_attn
        batch, tokens, dim = x.shape
        h = encoder_layer.layer_norm1(x)
        shape = (batch, tokens, attention.num_heads, attention.head_dim)
        q = attention.q_proj(h).view(shape).transpose(1, 2)
        k = attention.k_proj(h).view(shape).transpose(1, 2)
        v = attention.v_proj(h).view(shape).transpose(1, 2)
        logits = (q @ k.transpose(-1, -2)) * attention.scale
        if proportional_attention and size is not None:
            logits = logits + size.log()[:, None, None, :, 0].to(logits.dtype)
        probabilities = logits.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        attended = (probabilities @ v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + attention.out_proj(attended)
        if r > 0:
            merge = bipartite_soft_matching(k.mean(dim=1), r)
            source = merge_source(merge, x, source)
            x, size = merge_wavg(merge, x, size)
        x = x + encoder_layer.mlp(encoder_layer.layer_norm2(x))
    if x.shape[1] != count:
        raise ValueError(f"the schedule left {x.shape[1]} tokens, not {count}")
    if size is None:
        size = torch.ones_like(x[..., :1])
        source = torch.eye(x.shape[1], device=x.device, dtype=x.dtype)[None].expand(x.shape[0], -1, -1)
    return ToMeSiglipOutput(x, size, source, schedule)
