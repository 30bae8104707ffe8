"""``--dry-run``: what the real model needs, from its config alone, on the meta device.

The converted configuration (e.g. LLaVA-Video-7B-Qwen2 + VLM²) is built on the meta device — no
memory, no weights — and run once, so the shapes of a real question are checked end to end:

- parameters per module and their bf16 bytes;
- the question's token count (its video in the model's layout plus the text);
- the KV cache of the prefill (2 · layers · kv_heads · head_dim · tokens · 2 bytes);
- the activation peak of the forward (video encoding, then the language-model prefill): every
  tensor an op creates is counted while it is alive (views excluded), which is what an eager
  PyTorch run allocates for activations under ``torch.no_grad``. Attention on the meta device runs
  PyTorch's math path, which holds the full (heads × tokens × tokens) score matrix: an upper bound
  of what flash / memory-efficient attention needs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .common import format_count

__all__ = ["ModelPlan", "plan_model", "LiveTensorTracker"]

GIB = 1024**3


class LiveTensorTracker(TorchDispatchMode):
    """Counts the bytes of tensors created by ops while they are alive; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.largest = (0, "")

    def _release(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and not tensor._is_view():
                size = tensor.numel() * tensor.element_size()
                self.live += size
                weakref.finalize(tensor, self._release, size)
                if size > self.largest[0]:
                    self.largest = (size, str(func))
        self.peak = max(self.peak, self.live)
        return out


@dataclass
class ModelPlan:
    """What a configuration needs. Bytes are bf16 for weights, the model's dtype for the rest."""

    title: str
    parameters: dict[str, int]
    frames: int
    video_tokens: int
    text_tokens: int
    kv_cache_bytes: int
    vision_peak_bytes: int
    prefill_peak_bytes: int
    largest_tensor: tuple[int, str]
    notes: list[str] = field(default_factory=list)

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters.values())

    def summary(self) -> str:
        lines = [self.title, "  parameters (bf16 bytes):"]
        width = max(len(name) for name in self.parameters)
        for name, count in self.parameters.items():
            lines.append(f"    {name:<{width}}  {format_count(count):>8}  {count * 2 / GIB:7.2f} GiB")
        total = self.total_parameters
        lines.append(f"    {'total':<{width}}  {format_count(total):>8}  {total * 2 / GIB:7.2f} GiB")
        tokens = self.video_tokens + self.text_tokens
        lines += [
            f"  a {self.frames}-frame question: {self.video_tokens} video + {self.text_tokens} text = {tokens} tokens",
            f"    KV cache of the prefill: {self.kv_cache_bytes / GIB:.2f} GiB",
            f"    activation peak, video encoding ({self.frames} frames in one batch): {self.vision_peak_bytes / GIB:.2f} GiB",
            f"    activation peak, language-model prefill: {self.prefill_peak_bytes / GIB:.2f} GiB "
            f"(largest tensor {self.largest_tensor[0] / GIB:.2f} GiB from {self.largest_tensor[1]})",
            "    (meta-device trace, no_grad, eager; attention's math path holds the full score matrix: an upper "
            "bound for flash attention)",
        ]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _module_parameters(model: Any) -> dict[str, int]:
    groups: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        key = "lm_head" if parts[0] == "lm_head" else parts[1]
        if key == "language_model":
            key = f"language_model.{parts[2]}"
        groups[key] = groups.get(key, 0) + parameter.numel()
    return groups


def _geometry_inputs(config: Any, frames: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The geometry a fused model needs per frame: CUT3R-like tokens, camera token, coordinates."""
    if not config.use_spatial_fusion:
        return {}
    side = config.vision_config.image_size // config.vision_config.patch_size
    meta = dict(device="meta", dtype=dtype)
    inputs = {"geometry_tokens": torch.empty(1, frames, side * side, config.geometry_dim, **meta)}
    if config.use_viewpoint_alignment or config.fusion_camera_as_key:
        inputs["camera_tokens"] = torch.empty(1, frames, config.view_dim, **meta)
    if config.use_coordinate_injection:
        inputs["geometry_coords"] = torch.empty(1, frames, side * side, 3, **meta)
        inputs["geometry_coords_valid"] = torch.empty(1, frames, side * side, device="meta", dtype=torch.bool)
    return inputs


@torch.no_grad()
def plan_model(config: Any, frames: int = 32, text_tokens: int = 96, title: str = "", notes: list[str] | None = None) -> ModelPlan:
    """Build ``VLM2ForConditionalGeneration(config)`` on the meta device (bf16) and trace one
    ``frames``-frame question with ``text_tokens`` of prompt through it."""
    from ..models.vlm2 import VLM2ForConditionalGeneration

    if frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    dtype = torch.bfloat16
    with torch.device("meta"):
        model = VLM2ForConditionalGeneration(config).to(dtype).eval()
    parameters = _module_parameters(model)
    if model.model.dual_memory is not None:
        model.model.dual_memory.config.check_finite = False  # a NaN check reads values the meta device lacks
    vision = config.vision_config
    pixels = torch.empty(1, frames, 3, vision.image_size, vision.image_size, device="meta", dtype=dtype)
    with LiveTensorTracker() as tracker:
        video = model.model.get_video_features(pixels, **_geometry_inputs(config, frames, dtype), return_dict=True)
        features = video.pooler_output
    vision_peak = tracker.peak
    video_tokens = int(features.shape[1])
    if video_tokens != config.num_video_tokens(frames):
        raise RuntimeError(f"the model made {video_tokens} video tokens; the config says {config.num_video_tokens(frames)}")
    text = config.text_config
    embeds = torch.empty(1, video_tokens + text_tokens, text.hidden_size, device="meta", dtype=dtype)
    with LiveTensorTracker() as tracker:
        hidden = model.model.language_model(inputs_embeds=embeds, use_cache=True).last_hidden_state
        model.lm_head(hidden[:, -1:])  # generate keeps only the last position's logits
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * (video_tokens + text_tokens) * 2
    return ModelPlan(
        title=title or "plan",
        parameters=parameters,
        frames=frames,
        video_tokens=video_tokens,
        text_tokens=text_tokens,
        kv_cache_bytes=kv,
        vision_peak_bytes=vision_peak,
        prefill_peak_bytes=tracker.peak,
        largest_tensor=tracker.largest,
        notes=list(notes or []),
    )
