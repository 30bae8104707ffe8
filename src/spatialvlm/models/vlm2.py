"""VLM² on Hugging Face LLaVA-OneVision / LLaVA-Video: config, model, ``patch()``.

The video path of ``VLM2ForConditionalGeneration`` runs, per frame t of each video::

    F_t  = SigLIP(frame_t)                                   (N, C)   vision tower, config's layer
    H_t  = SpatialFusion(F_t, C_t, G_t, Z_t / pose_t)        (N, C)   coordinate injection,
                                                                      viewpoint alignment,
                                                                      cross-attention fusion
    M_t  = DualMemory(H_t; W_t, E_t)                         (N, C)   one memory per video
    V_t  = layout(projector(M_t))                            (P, Dt)  the config's video layout

and the language model reads the frames' tokens in place of the prompt's ``<video>`` tokens. The
layout is config (``video_pool_mode``, ``video_pool_stride``, ``video_newline_position``):
LLaVA-OneVision-HF's 2×2 bilinear pooling (P = ceil(side/2)²) and ``[V_1 … V_T, newline]`` by
default, or LLaVA-Video's 2×2 average pooling with a newline after each row of each frame
(P = 13 · 14 = 182 at side 27), which ``spatialvlm convert`` sets for LLaVA-Video and VLM-3R.
Images keep the base model's path.

Videos of different lengths share a batch through ``video_frame_mask`` (B, T): padded frames never
reach the vision tower, the fusion, the memory or the language model, and every video's memory
starts empty (or from the ``memory_state`` passed in, for streaming and truncated BPTT).

With ``use_spatial_fusion=False`` and ``use_dual_memory=False`` the model computes exactly what
``LlavaOnevisionForConditionalGeneration`` computes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import Tensor, nn
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionModel,
    LlavaOnevisionPreTrainedModel,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import select_hidden_states

from ..fusion import SpatialFusion, SpatialFusionConfig
from ..geometry.normalize import COORDINATE_NORMALIZATIONS
from ..memory import DualMemory, DualMemoryConfig, MemoryState
from ..memory.config import MEMORY_OUTPUTS, MEMORY_READ_ORDERS

__all__ = [
    "VLM2Config",
    "VideoGeometryInputs",
    "VLM2VideoOutput",
    "VLM2Model",
    "VLM2ForConditionalGeneration",
    "GEOMETRY_INPUT_NAMES",
    "patch",
    "tiny_vlm2_config",
]

logger = logging.getLogger(__name__)

# Forward keyword arguments that carry per-frame geometry, all with leading (B, T).
GEOMETRY_INPUT_NAMES: tuple[str, ...] = (
    "geometry_coords",
    "geometry_coords_valid",
    "geometry_tokens",
    "geometry_padding_mask",
    "camera_tokens",
    "camera_poses",
)

# VLM2Config's own fields (everything else comes from LlavaOnevisionConfig).
VLM2_FLAG_NAMES: tuple[str, ...] = (
    "use_dual_memory",
    "memory_L_w",
    "memory_L_e",
    "memory_feature_dim",
    "memory_num_heads",
    "memory_dropout",
    "memory_output",
    "memory_read_order",
    "coordinate_normalization",
    "use_spatial_fusion",
    "use_viewpoint_alignment",
    "use_coordinate_injection",
    "coordinate_gate_type",
    "geometry_dim",
    "view_dim",
    "fusion_num_heads",
    "fusion_dropout",
    "use_point_tokens",
    "fusion_camera_as_key",
    "video_pool_mode",
    "video_pool_stride",
    "video_newline_position",
)

# Video token layouts (LLaVA-NeXT's mm_spatial_pool_mode / mm_newline_position values).
VIDEO_POOL_MODES: tuple[str, ...] = ("bilinear", "average", "max")
VIDEO_NEWLINE_POSITIONS: tuple[str, ...] = ("one_token", "grid", "frame", "no_token")


@strict
class VLM2Config(LlavaOnevisionConfig):
    r"""A ``LlavaOnevisionConfig`` plus the VLM² switches (seed flag names kept where users pass them).

    Dual memory (Algorithm 1; ``spatialvlm.memory``):
        use_dual_memory (`bool`, defaults to False): run the working + episodic memory on video frames.
        memory_L_w (`int`, 8): working-memory capacity in frames (paper ablation: 8).
        memory_L_e (`int`, 32): episodic-memory capacity in entries (paper ablation: 32).
        memory_feature_dim (`int`, None): memory width; None = the vision tower's width (1152 for
            SigLIP so400m). It must equal that width: the memory sits before the projector.
        memory_num_heads (`int`, 8): heads of the working and episodic attentions.
        memory_dropout (`float`, 0.1): attention dropout in the memory (training only).
        memory_output (`str`, "paper"): "paper" returns Algorithm 1's M_t; "residual" returns
            H_t + out(M_t) with ``out`` zero-initialised (memory-on equals memory-off at the start).
        memory_read_order (`str`, "read_then_write"): Algorithm 1's order, or "write_then_read"
            (H_t is in the working memory when it is read). Defaults: docs/decisions.md.
        coordinate_normalization (`str`, "per_video"): how the processor normalises world
            coordinates for this model: "per_video" (median centre and spread of each video),
            "metric" (metres in the first camera's frame over one constant), "fixed" (given
            statistics); see ``spatialvlm.geometry.normalize``.

    Semantic-geometric fusion (``spatialvlm.fusion.SpatialFusion``):
        use_spatial_fusion (`bool`, True): run the fusion block (VLM-3R's cross-attention of visual
            tokens onto geometry tokens). False removes the block, and with it coordinate injection
            and viewpoint alignment, which are parts of it.
        use_viewpoint_alignment (`bool`, True): condition geometry tokens on the view (camera token,
            or the pose when there is none) and append a view token.
        use_coordinate_injection (`bool`, True): ``F + α ⊙ φ(C)`` with per-patch 3D coordinates.
        coordinate_gate_type (`str`, "sigmoid"): "sigmoid" or "softmax" gate α.
        geometry_dim (`int`, 768): width of the 3D model's geometry tokens (CUT3R: 768).
        view_dim (`int`, 768): width of its camera token (CUT3R: 768).
        fusion_num_heads (`int`, 18): cross-attention heads (VLM-3R: 18 at 1152).
        fusion_dropout (`float`, 0.1): dropout after the fusion residual (VLM-3R: 0.1).
        use_point_tokens (`bool`, True): frames without geometry tokens (RGB-D sources) get keys
            built from their patch coordinates; False makes missing geometry tokens an error.
        fusion_camera_as_key (`bool`, None): with viewpoint alignment off, a given camera token joins
            the keys/values in front of the geometry tokens (VLM-3R's "all tokens":
            [camera; 729 patches]); False leaves it out (VLM-3R's ``patch_tokens``; a camera token
            passed anyway is reported once and not used); None: True when view_dim == geometry_dim.

    Video token layout (what the language model reads per frame; LLaVA-NeXT's ``mm_*`` fields):
        video_pool_mode (`str`, "bilinear"): per-frame pooling after the projector: "bilinear"
            (LLaVA-OneVision-HF, ceil(side/stride)), "average" or "max" (LLaVA-Video: 2×2 average,
            floor(side/stride), 27 → 13).
        video_pool_stride (`int`, 2): the pooling stride (``mm_spatial_pool_stride``).
        video_newline_position (`str`, "one_token"): where the newline token goes: "one_token" (one
            after each video, LLaVA-OneVision-HF), "grid" (after every row of every frame,
            LLaVA-Video: 13 · 14 = 182 tokens per frame), "frame" (after every frame), "no_token".

    How point maps become ``geometry_coords`` (pooling, normalisation) is the processor's job
    (``VLM2Processor``), like pixel normalisation.
    """

    model_type = "vlm2"

    use_dual_memory: bool = False
    memory_L_w: int = 8
    memory_L_e: int = 32
    memory_feature_dim: int | None = None
    memory_num_heads: int = 8
    memory_dropout: float = 0.1
    memory_output: str = "paper"
    memory_read_order: str = "read_then_write"
    coordinate_normalization: str = "per_video"
    use_spatial_fusion: bool = True
    use_viewpoint_alignment: bool = True
    use_coordinate_injection: bool = True
    coordinate_gate_type: str = "sigmoid"
    geometry_dim: int = 768
    view_dim: int = 768
    fusion_num_heads: int = 18
    fusion_dropout: float = 0.1
    use_point_tokens: bool = True
    fusion_camera_as_key: bool | None = None
    video_pool_mode: str = "bilinear"
    video_pool_stride: int = 2
    video_newline_position: str = "one_token"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        vision_width = self.vision_config.hidden_size
        if self.video_pool_mode not in VIDEO_POOL_MODES:
            raise ValueError(f"video_pool_mode must be one of {VIDEO_POOL_MODES}, got {self.video_pool_mode!r}")
        if self.video_newline_position not in VIDEO_NEWLINE_POSITIONS:
            raise ValueError(
                f"video_newline_position must be one of {VIDEO_NEWLINE_POSITIONS}, got {self.video_newline_position!r}"
            )
        if self.video_pool_stride < 1:
            raise ValueError(f"video_pool_stride must be >= 1, got {self.video_pool_stride}")
        if self.use_spatial_fusion and vision_width % self.fusion_num_heads:
            raise ValueError(
                f"fusion_num_heads ({self.fusion_num_heads}) must divide the vision tower's hidden_size "
                f"({vision_width}); set fusion_num_heads, or use_spatial_fusion=False to build no fusion block"
            )
        vision_width = self.vision_config.hidden_size
        if self.memory_feature_dim is None:
            self.memory_feature_dim = vision_width
        if self.memory_output not in MEMORY_OUTPUTS or self.memory_read_order not in MEMORY_READ_ORDERS:
            raise ValueError(
                f"memory_output must be one of {MEMORY_OUTPUTS} (got {self.memory_output!r}) and "
                f"memory_read_order one of {MEMORY_READ_ORDERS} (got {self.memory_read_order!r})"
            )
        if self.coordinate_normalization not in COORDINATE_NORMALIZATIONS:
            raise ValueError(
                f"coordinate_normalization must be one of {COORDINATE_NORMALIZATIONS}, "
                f"got {self.coordinate_normalization!r}"
            )
        if self.use_dual_memory and self.memory_feature_dim != vision_width:
            raise ValueError(
                f"memory_feature_dim ({self.memory_feature_dim}) must equal the vision tower's hidden_size "
                f"({vision_width}): the memory reads the fused SigLIP tokens before the projector"
            )

    @property
    def needs_geometry(self) -> bool:
        """True when video inputs must come with geometry."""
        return self.use_spatial_fusion

    @classmethod
    def from_base(cls, base: LlavaOnevisionConfig, **flags: Any) -> VLM2Config:
        """A VLM2Config holding ``base``'s fields (its sub-config objects, not copies) plus ``flags``."""
        unknown = sorted(set(flags) - set(VLM2_FLAG_NAMES))
        if unknown:
            raise ValueError(f"unknown VLM² flags {unknown}; known flags are {list(VLM2_FLAG_NAMES)}")
        values = base.to_dict()
        for key in ("model_type", "transformers_version", "architectures"):
            values.pop(key, None)
        values.update(vision_config=base.vision_config, text_config=base.text_config)
        if isinstance(base, VLM2Config):
            values.update({name: getattr(base, name) for name in VLM2_FLAG_NAMES})
        values.update(flags)
        towers = (base.vision_config, base.text_config)
        saved = [(tower._attn_implementation_internal, tower._experts_implementation_internal) for tower in towers]
        config = cls(**values)
        # Construction resets the attention implementation of the (shared) towers to None; a loaded
        # model keeps using them, so restore what it runs with.
        for tower, (attention, experts) in zip(towers, saved):
            tower._attn_implementation_internal = attention
            tower._experts_implementation_internal = experts
        config._attn_implementation_internal = base._attn_implementation_internal
        config._experts_implementation_internal = base._experts_implementation_internal
        return config

    def spatial_fusion_config(self) -> SpatialFusionConfig:
        return SpatialFusionConfig(
            dim=self.vision_config.hidden_size,
            geometry_dim=self.geometry_dim,
            view_dim=self.view_dim,
            num_heads=self.fusion_num_heads,
            dropout=self.fusion_dropout,
            use_coordinate_injection=self.use_coordinate_injection,
            use_viewpoint_alignment=self.use_viewpoint_alignment,
            coordinate_gate_type=self.coordinate_gate_type,
            use_point_tokens=self.use_point_tokens,
            camera_token_as_key=self.fusion_camera_as_key,
        )

    @property
    def video_grid_side(self) -> int:
        """Patches per side of a frame after the video pooling (27 → 13 average, 14 bilinear)."""
        side = self.vision_config.image_size // self.vision_config.patch_size
        return video_grid_side(side, self.video_pool_mode, self.video_pool_stride)

    def video_tokens_per_frame(self) -> int:
        """Language tokens of one frame, its newlines included (LLaVA-Video: 13 · 14 = 182)."""
        return video_tokens_per_frame(self.video_grid_side, self.video_newline_position)

    def num_video_tokens(self, num_frames: int) -> int:
        """Language tokens of a video of ``num_frames`` frames (what its ``<video>`` expands to)."""
        return num_frames * self.video_tokens_per_frame() + int(self.video_newline_position == "one_token")

    def dual_memory_config(self) -> DualMemoryConfig:
        return DualMemoryConfig(
            dim=self.memory_feature_dim,
            num_heads=self.memory_num_heads,
            working_size=self.memory_L_w,
            episodic_size=self.memory_L_e,
            dropout=self.memory_dropout,
            output=self.memory_output,
            read_order=self.memory_read_order,
        )


def video_grid_side(side: int, pool_mode: str, stride: int) -> int:
    """Pooled grid side: bilinear rounds up (HF LLaVA-OneVision), average/max pooling floors."""
    return math.ceil(side / stride) if pool_mode == "bilinear" else side // stride


def video_tokens_per_frame(grid_side: int, newline_position: str) -> int:
    """Tokens per frame of a ``grid_side``² pooled grid in the given newline layout."""
    if newline_position == "grid":
        return grid_side * (grid_side + 1)
    return grid_side * grid_side + int(newline_position == "frame")


def pool_frame_grid(tokens: Tensor, side: int, mode: str, stride: int) -> Tensor:
    """LLaVA-NeXT's ``get_2dPool``: (F, side², D) → (F, g², D) on the frame's patch grid.

    "average" / "max": ``avg_pool2d`` / ``max_pool2d`` with kernel = stride (floor: 27 → 13, the
    last row and column dropped); "bilinear": interpolation to ceil(side / stride).
    """
    frames, _, width = tokens.shape
    grid = tokens.view(frames, side, side, width).permute(0, 3, 1, 2)
    if mode == "average":
        grid = nn.functional.avg_pool2d(grid, stride)
    elif mode == "max":
        grid = nn.functional.max_pool2d(grid, stride)
    else:
        grid = nn.functional.interpolate(grid, size=[math.ceil(side / stride)] * 2, mode="bilinear")
    return grid.permute(0, 2, 3, 1).reshape(frames, -1, width)


def tiny_vlm2_config(**flags: Any) -> VLM2Config:
    """``VLM2Config`` around ``tiny_llava_onevision_config()`` with tiny geometry widths.

    Geometry tokens 24-d, camera token 16-d, 2 fusion heads, 2 memory heads; ``flags`` override any
    VLM² flag (e.g. ``use_dual_memory=True``) and ``vision_config`` / ``text_config`` dicts are
    merged into the tiny towers.
    """
    from .tiny import tiny_llava_onevision_config

    base_overrides = {key: flags.pop(key) for key in ("vision_config", "text_config") if key in flags}
    defaults = dict(geometry_dim=24, view_dim=16, fusion_num_heads=2, memory_num_heads=2)
    defaults.update(flags)
    return VLM2Config.from_base(tiny_llava_onevision_config(**base_overrides), **defaults)


@dataclass
class VideoGeometryInputs:
    """Per-frame geometry of a batch of videos, as the fusion block consumes it.

    Every field is optional and has leading (B, T) (or (F,) after ``select``):

    Attributes:
        coords: (B, T, N, 3) normalised world coordinates of each patch (row-major grid).
        coords_valid: (B, T, N) bool, False where a patch holds no valid point.
        tokens: (B, T, M, Dg) geometry tokens of the 3D model.
        padding_mask: (B, T, M) bool, True where a geometry token is padding.
        camera_tokens: (B, T, Dv) camera / view tokens.
        poses: (B, T, 4, 4) camera-to-world, translation in normalised world units.
    """

    coords: Tensor | None = None
    coords_valid: Tensor | None = None
    tokens: Tensor | None = None
    padding_mask: Tensor | None = None
    camera_tokens: Tensor | None = None
    poses: Tensor | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Tensor | None) -> VideoGeometryInputs:
        """From the forward keyword names of ``GEOMETRY_INPUT_NAMES``."""
        return cls(
            coords=kwargs.get("geometry_coords"),
            coords_valid=kwargs.get("geometry_coords_valid"),
            tokens=kwargs.get("geometry_tokens"),
            padding_mask=kwargs.get("geometry_padding_mask"),
            camera_tokens=kwargs.get("camera_tokens"),
            poses=kwargs.get("camera_poses"),
        )

    def present(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def is_empty(self) -> bool:
        return not self.present()

    def select(self, frame_mask: Tensor | None) -> VideoGeometryInputs:
        """Keep the frames where ``frame_mask`` (B, T) is True: every field becomes (F, ...).

        None means every frame is real: the fields are only flattened (no data-dependent indexing,
        so this also runs on the meta device).
        """
        if frame_mask is None:
            return VideoGeometryInputs(**{name: value.flatten(0, 1) for name, value in self.present().items()})
        return VideoGeometryInputs(**{name: value[frame_mask] for name, value in self.present().items()})

    def check(self, batch: int, frames: int, num_patches: int, config: VLM2Config) -> None:
        """Raise ValueError naming the missing or misshapen input the config needs."""
        for name, value in self.present().items():
            if value.shape[:2] != (batch, frames):
                raise ValueError(
                    f"geometry input {name} has leading shape {tuple(value.shape[:2])}; expected "
                    f"(batch, frames) = ({batch}, {frames}) like pixel_values_videos"
                )
        if not config.needs_geometry:
            return
        needs = "the config has use_spatial_fusion=True"
        if config.use_coordinate_injection and self.coords is None:
            raise ValueError(
                f"geometry_coords (B, T, {num_patches}, 3) is missing but use_coordinate_injection=True; "
                "give each frame a point map (points, or depth + pose + intrinsics); token-only sources such as "
                "VLM-3R's .pt features have no points: load the model with use_coordinate_injection=False"
            )
        if self.tokens is None and (self.coords is None or not config.use_point_tokens):
            raise ValueError(
                f"geometry_tokens (B, T, M, {config.geometry_dim}) are missing and {needs}; give each frame "
                "geometry tokens, or point maps with use_point_tokens=True"
            )
        if config.fusion_camera_as_key is True and not config.use_viewpoint_alignment and self.camera_tokens is None:
            raise ValueError(
                f"camera_tokens (B, T, {config.view_dim}) are missing but this model attends over [camera; geometry "
                "tokens] (fusion_camera_as_key=True, VLM-3R 'all tokens'); give each frame its camera token"
            )
        if config.use_viewpoint_alignment and self.camera_tokens is None and self.poses is None:
            raise ValueError(
                f"camera_tokens (B, T, {config.view_dim}) or camera_poses (B, T, 4, 4) are missing but "
                "use_viewpoint_alignment=True; give each frame a camera token or a pose"
            )
        if self.coords is not None and self.coords.shape[2:] != (num_patches, 3):
            raise ValueError(
                f"geometry_coords has shape {tuple(self.coords.shape)}; expected (B, T, {num_patches}, 3) "
                f"for the vision tower's {num_patches} patches"
            )


@dataclass
class VLM2VideoOutput(BaseModelOutputWithPooling):
    """``get_video_features`` output.

    Attributes:
        pooler_output: (1, S, Dt) language-model tokens of all videos, concatenated in batch order
            (S = Σ_b config.num_video_tokens(T_b); "one_token": each video's frames then its newline).
        frame_features: (F, P, Dt) pooled tokens of each real frame (batch-major order), with the
            "grid" / "frame" layouts' newlines.
        memory_state: the dual memory after the last frame (None without memory).
    """

    frame_features: Tensor | None = None
    memory_state: MemoryState | None = None


class VLM2Model(LlavaOnevisionModel):
    """``LlavaOnevisionModel`` with the VLM² video path (``spatial_fusion``, ``dual_memory``)."""

    config: VLM2Config

    def __init__(self, config: VLM2Config) -> None:
        super().__init__(config)
        self._add_vlm2_modules()

    def _add_vlm2_modules(self) -> None:
        config = self.config
        reference = self.multi_modal_projector.linear_1.weight
        factory = dict(device=reference.device, dtype=reference.dtype)
        self.spatial_fusion = (
            SpatialFusion(config.spatial_fusion_config()).to(**factory) if config.use_spatial_fusion else None
        )
        self.dual_memory = DualMemory.from_config(config.dual_memory_config()).to(**factory) if config.use_dual_memory else None

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # The VLM² modules initialise themselves (e.g. the injection gate starts closed); the generic
        # init would overwrite that, and from_pretrained builds on the meta device, so copy a freshly
        # built twin's values into every tensor that was not loaded from the checkpoint.
        builders = {
            id(getattr(self, "spatial_fusion", None)): lambda: SpatialFusion(self.config.spatial_fusion_config()),
            id(getattr(self, "dual_memory", None)): lambda: DualMemory.from_config(self.config.dual_memory_config()),
        }
        if module is not None and id(module) in builders:
            if not getattr(module, "_is_hf_initialized", False):
                _copy_fresh(module, builders[id(module)])
                module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)

    # ------------------------------------------------------------------ stages (used by streaming/bench)
    def encode_frames_vision(
        self,
        pixel_values: Tensor,
        vision_feature_layer: int | list[int],
        vision_feature_select_strategy: str,
        **kwargs: Any,
    ) -> Tensor:
        """SigLIP features of frames: (F, 3, S, S) → (F, N, C), the config's layer(s) as the base."""
        # Capture only the selected layers' hidden states, as the base's decorator arranges.
        kwargs.setdefault("output_hidden_states", vision_feature_layer)
        outputs = self.vision_tower(pixel_values, return_dict=True, **kwargs)
        if isinstance(vision_feature_layer, int):
            selected = outputs.hidden_states[vision_feature_layer]
        else:
            selected = torch.cat([outputs.hidden_states[index] for index in vision_feature_layer], dim=-1)
        if vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        return selected

    def fuse_geometry(self, visual: Tensor, geometry: VideoGeometryInputs) -> Tensor:
        """SpatialFusion per frame: (F, N, C) + geometry (F, ...) → (F, N, C); identity without fusion."""
        if self.spatial_fusion is None:
            return visual
        return self.spatial_fusion(
            visual,
            coords=geometry.coords,
            coords_valid=geometry.coords_valid,
            geometry_tokens=geometry.tokens,
            camera_token=geometry.camera_tokens,
            pose=geometry.poses,
            geometry_padding_mask=geometry.padding_mask,
        )

    def apply_memory(
        self, visual: Tensor, frame_mask: Tensor, memory_state: MemoryState | None
    ) -> tuple[Tensor, MemoryState | None]:
        """Dual memory over each video's frames in order: (F, N, C) real frames → (F, N, C).

        ``frame_mask`` (B, T) says which slots of the (B, T) grid the F frames fill; a given
        ``memory_state`` continues those B videos (streaming), None starts them empty.
        """
        if self.dual_memory is None:
            return visual, memory_state
        batch, frames = frame_mask.shape
        if visual.shape[0] == batch * frames:  # every slot is a real frame: no data-dependent indexing
            fused, memory_state = self.dual_memory.process(
                visual.view(batch, frames, *visual.shape[1:]), None, state=memory_state
            )
            return fused.flatten(0, 1), memory_state
        dense = visual.new_zeros((batch, frames, *visual.shape[1:]))
        dense = dense.index_put((frame_mask,), visual)
        fused, memory_state = self.dual_memory.process(dense, frame_mask, state=memory_state)
        return fused[frame_mask], memory_state

    def project_and_pool(self, visual: Tensor) -> Tensor:
        """Projector, then the config's per-frame pooling and newlines: (F, N, C) → (F, P, Dt).

        LLaVA-OneVision-HF (bilinear, stride 2, "one_token"): P = ceil(side/2)². LLaVA-Video
        (average 2×2, "grid"): P = 13 · (13 + 1) = 182 at side 27, the newline after every row.
        """
        config = self.config
        projected = self.multi_modal_projector(visual)
        if config.video_pool_mode == "bilinear" and config.video_pool_stride == 2:
            pooled = self.apply_pooling(projected)  # the base's own code: exactly LLaVA-OneVision-HF
        else:
            side = config.vision_config.image_size // config.vision_config.patch_size
            pooled = pool_frame_grid(projected, side, config.video_pool_mode, config.video_pool_stride)
        frames, _, width = pooled.shape
        grid = config.video_grid_side
        newline = self.image_newline.to(pooled.dtype)
        if config.video_newline_position == "grid":
            rows = pooled.view(frames, grid, grid, width)
            pooled = torch.cat([rows, newline.expand(frames, grid, 1, width)], 2).reshape(frames, -1, width)
        elif config.video_newline_position == "frame":
            pooled = torch.cat([pooled, newline.expand(frames, 1, width)], 1)
        return pooled

    def pack_video_tokens(self, frame_features: Tensor, frames_per_video: Tensor) -> Tensor:
        """Concatenate each video's frame tokens and, in the "one_token" layout, its newline token.

        Args:
            frame_features: (F, P, Dt) in batch-major frame order (newlines of the "grid" and "frame"
                layouts already inside).
            frames_per_video: (B,) int64 frame counts (sum F).
        Returns:
            (Σ_b (T_b · P + 1), Dt) for "one_token", (F · P, Dt) otherwise.
        """
        tokens_per_frame, width = frame_features.shape[1:]
        if self.config.video_newline_position != "one_token":
            return frame_features.reshape(-1, width)
        if frame_features.device.type == "meta" or frames_per_video.device.type == "meta":
            # Equal-length videos (the only case without a frame mask): no data-dependent indexing.
            videos = int(frames_per_video.shape[0])
            per_video = frame_features.reshape(videos, -1, width)
            newline = self.image_newline.to(per_video.dtype).expand(videos, 1, width)
            return torch.cat([per_video, newline], 1).reshape(-1, width)
        block = frames_per_video * tokens_per_frame + 1
        total = int(block.sum())
        is_newline = torch.zeros(total, dtype=torch.bool, device=frame_features.device)
        is_newline[block.cumsum(0) - 1] = True
        packed = frame_features.new_empty((total, width))
        packed = packed.masked_scatter(~is_newline[:, None], frame_features.reshape(-1, width))
        newline = self.image_newline.to(packed.dtype)[None].expand(int(block.shape[0]), width)
        return packed.masked_scatter(is_newline[:, None], newline)

    # ------------------------------------------------------------------ video features
    @merge_with_config_defaults
    @can_return_tuple
    @select_hidden_states("vision_feature_layer")
    def get_video_features(
        self,
        pixel_values_videos: Tensor,
        video_frame_mask: Tensor | None = None,
        geometry_coords: Tensor | None = None,
        geometry_coords_valid: Tensor | None = None,
        geometry_tokens: Tensor | None = None,
        geometry_padding_mask: Tensor | None = None,
        camera_tokens: Tensor | None = None,
        camera_poses: Tensor | None = None,
        memory_state: MemoryState | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ) -> VLM2VideoOutput:
        r"""The VLM² video path: SigLIP → fusion → dual memory → projector → 2×2 pooling.

        Args:
            pixel_values_videos: (B, T, 3, S, S).
            video_frame_mask: (B, T) bool, True for real frames (a prefix of each row); None: all real.
            geometry_*, camera_*: see ``VideoGeometryInputs`` (leading (B, T)).
            memory_state: continue these B videos' memories (streaming / truncated BPTT).
        Returns:
            ``VLM2VideoOutput``; ``pooler_output`` (1, S, Dt) replaces the prompts' video tokens.
        """
        if pixel_values_videos.ndim != 5:
            raise ValueError(
                f"pixel_values_videos must have shape (B, T, 3, S, S); got {tuple(pixel_values_videos.shape)}"
            )
        batch, frames = pixel_values_videos.shape[:2]
        frame_mask = _check_frame_mask(video_frame_mask, batch, frames, pixel_values_videos.device)
        geometry = VideoGeometryInputs(
            coords=geometry_coords,
            coords_valid=geometry_coords_valid,
            tokens=geometry_tokens,
            padding_mask=geometry_padding_mask,
            camera_tokens=camera_tokens,
            poses=camera_poses,
        )
        side = self.config.vision_config.image_size // self.config.vision_config.patch_size
        geometry.check(batch, frames, side * side, self.config)

        kwargs.pop("return_dict", None)
        # Without a mask every frame is real: flatten instead of boolean indexing, whose output size
        # depends on the data (and which the meta device cannot run).
        real_frames = pixel_values_videos.flatten(0, 1) if video_frame_mask is None else pixel_values_videos[frame_mask]
        visual = self.encode_frames_vision(real_frames, vision_feature_layer, vision_feature_select_strategy, **kwargs)
        visual = self.fuse_geometry(visual, geometry.select(None if video_frame_mask is None else frame_mask))
        visual, memory_state = self.apply_memory(visual, frame_mask, memory_state)
        frame_features = self.project_and_pool(visual)
        packed = self.pack_video_tokens(frame_features, frame_mask.sum(1))
        return VLM2VideoOutput(
            pooler_output=packed[None], frame_features=frame_features, memory_state=memory_state
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: Tensor | None = None,
        video_frame_mask: Tensor | None = None,
        geometry_coords: Tensor | None = None,
        geometry_coords_valid: Tensor | None = None,
        geometry_tokens: Tensor | None = None,
        geometry_padding_mask: Tensor | None = None,
        camera_tokens: Tensor | None = None,
        camera_poses: Tensor | None = None,
        memory_state: MemoryState | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs: Any,
    ):
        """``LlavaOnevisionModel.forward`` with videos through ``get_video_features`` (VLM² path)."""
        if pixel_values_videos is not None:
            mm_encoder_outputs = dict(mm_encoder_outputs or {})
            if mm_encoder_outputs.get("video") is not None:
                raise ValueError("pass either pixel_values_videos or mm_encoder_outputs['video'], not both")
            mm_encoder_outputs["video"] = self.get_video_features(
                pixel_values_videos,
                video_frame_mask=video_frame_mask,
                geometry_coords=geometry_coords,
                geometry_coords_valid=geometry_coords_valid,
                geometry_tokens=geometry_tokens,
                geometry_padding_mask=geometry_padding_mask,
                camera_tokens=camera_tokens,
                camera_poses=camera_poses,
                memory_state=memory_state,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                return_dict=True,
            )
        return super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )


class VLM2ForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision / LLaVA-Video with the VLM² video path (see the module docstring).

    ``forward`` and ``generate`` take the base model's arguments plus ``video_frame_mask``, the
    geometry inputs of ``GEOMETRY_INPUT_NAMES`` and ``memory_state``. The memory after the last
    frame is in ``output.video_outputs.memory_state``.

    ``from_pretrained`` also loads a plain LLaVA-OneVision checkpoint directory: the VLM² modules are
    freshly initialised, logged, and listed in ``model.vlm2_new_weights``.
    """

    config_class = VLM2Config
    config: VLM2Config

    def __init__(self, config: VLM2Config) -> None:
        LlavaOnevisionPreTrainedModel.__init__(self, config)
        self.model = VLM2Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.vlm2_new_weights: list[str] = []
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: Tensor | None = None,
        video_frame_mask: Tensor | None = None,
        geometry_coords: Tensor | None = None,
        geometry_coords_valid: Tensor | None = None,
        geometry_tokens: Tensor | None = None,
        geometry_padding_mask: Tensor | None = None,
        camera_tokens: Tensor | None = None,
        camera_poses: Tensor | None = None,
        memory_state: MemoryState | None = None,
        **kwargs: Any,
    ):
        """The base forward plus the VLM² video inputs (named here so ``generate`` accepts them)."""
        return super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            pixel_values_videos=pixel_values_videos,
            video_frame_mask=video_frame_mask,
            geometry_coords=geometry_coords,
            geometry_coords_valid=geometry_coords_valid,
            geometry_tokens=geometry_tokens,
            geometry_padding_mask=geometry_padding_mask,
            camera_tokens=camera_tokens,
            camera_poses=camera_poses,
            memory_state=memory_state,
            **kwargs,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a VLM² or a base LLaVA-OneVision checkpoint (local directory, offline).

        VLM² flags given as keyword arguments (``use_dual_memory=True``, ...) override the stored
        config. Returns what transformers' ``from_pretrained`` returns.

        A directory with a peft LoRA adapter in its ``lora_adapter/`` subfolder (as ``spatialvlm
        convert vlm3r`` writes without ``--merge-lora``) gets it merged into the returned model;
        ``load_adapter=False`` loads the weights alone (then ``peft.PeftModel.from_pretrained(model,
        directory + "/lora_adapter")`` attaches it, e.g. to train it further). Missing or unexpected weights are errors (see ``_check_loaded_keys``).
        """
        flags = {name: kwargs.pop(name) for name in VLM2_FLAG_NAMES if name in kwargs}
        load_adapter = kwargs.pop("load_adapter", True)
        if kwargs.get("config") is None:
            kwargs["config"] = _load_config(pretrained_model_name_or_path, **flags)
        elif flags:
            kwargs["config"] = VLM2Config.from_base(kwargs["config"], **flags)
        want_info = kwargs.pop("output_loading_info", False)
        # Weights of a VLM² module the caller switched off (use_spatial_fusion=False on a fusion
        # checkpoint) are expected to be left unread: transformers neither reports nor returns them
        # as unexpected (post_init copies the class attribute, set for this call only); any other
        # unexpected weight stays an error.
        unused = {rf"^{re.escape(prefix)}" for flag, prefix in _MODULE_OF_FLAG.items() if flags.get(flag) is False}
        ignored = cls._keys_to_ignore_on_load_unexpected
        cls._keys_to_ignore_on_load_unexpected = set(ignored or ()) | unused if unused else ignored
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        finally:
            cls._keys_to_ignore_on_load_unexpected = ignored
        _check_loaded_keys(pretrained_model_name_or_path, info)
        if load_adapter and _holds_converted_adapter(pretrained_model_name_or_path):
            model = _merge_adapter(model, Path(pretrained_model_name_or_path))
        new = sorted(key for key in info["missing_keys"] if _is_vlm2_key(key))
        model.vlm2_new_weights = new
        if new:
            modules = sorted({".".join(key.split(".")[:2]) for key in new})
            logger.warning(
                "VLM²: %d weights not in %s were freshly initialised (modules: %s)",
                len(new),
                pretrained_model_name_or_path,
                ", ".join(modules),
            )
        return (model, info) if want_info else model


# Subfolder of a model directory holding a peft LoRA adapter that belongs to the model (written by
# ``spatialvlm convert vlm3r`` without --merge-lora). Not the directory itself: transformers would
# then inject the adapter on its own, unmerged, whatever the caller asked.
ADAPTER_SUBFOLDER = "lora_adapter"


def _holds_converted_adapter(directory: str | os.PathLike) -> bool:
    return (Path(directory) / ADAPTER_SUBFOLDER / "adapter_config.json").is_file()


def _merge_adapter(model: VLM2ForConditionalGeneration, directory: Path) -> VLM2ForConditionalGeneration:
    from peft import PeftModel

    new_weights = model.vlm2_new_weights
    merged = PeftModel.from_pretrained(model, directory / ADAPTER_SUBFOLDER).merge_and_unload()
    merged.vlm2_new_weights = new_weights
    merged.vlm2_merged_adapter = str(directory)
    logger.info("VLM²: merged the LoRA adapter of %s", directory)
    return merged


# The weights each VLM² module flag builds (prefixes of state-dict keys).
_MODULE_OF_FLAG: dict[str, str] = {"use_spatial_fusion": "model.spatial_fusion.", "use_dual_memory": "model.dual_memory."}


def _is_vlm2_key(key: str) -> bool:
    return key.startswith(("model.spatial_fusion.", "model.dual_memory."))


def _check_loaded_keys(directory: str | os.PathLike, info: dict[str, Any]) -> None:
    """Missing (other than the VLM² modules a base checkpoint lacks), unexpected or mis-shaped
    weights are errors: a model with parameters left at their random init is not the checkpoint."""
    problems = []
    missing = sorted(key for key in info.get("missing_keys", ()) if not _is_vlm2_key(key))
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys", ()))
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
        if keys:
            shown = ", ".join(keys[:4]) + (f", … ({len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{len(keys)} {label} weights ({shown})")
    if problems:
        raise ValueError(
            f"{directory} does not match its config: {'; '.join(problems)}. If it is an original LLaVA-NeXT or "
            "VLM-3R checkpoint, convert it (spatialvlm convert llava-video SRC DST / spatialvlm convert vlm3r ...)"
        )


# Formats this loader refuses, with the command that reads each (see spatialvlm.convert).
_CONVERT_COMMANDS: dict[str, str] = {
    "llava_qwen": "spatialvlm convert llava-video {dir} OUT",
    "llava_llama": "spatialvlm convert llava-video {dir} OUT",
    "llava_mistral": "spatialvlm convert llava-video {dir} OUT",
    "llava_llada": "spatialvlm convert lavida {dir} OUT",
}


def detect_checkpoint_format(directory: str | os.PathLike) -> str:
    """What a checkpoint directory holds: "vlm2", "llava_onevision", "llava_next" (original
    LLaVA-NeXT layout, flat text fields + ``mm_*``), "vlm3r_release" (peft adapter +
    ``non_lora_trainables.bin``) or the ``model_type`` found."""
    path = Path(directory)
    if (path / "adapter_config.json").is_file() and (path / "non_lora_trainables.bin").is_file():
        return "vlm3r_release"
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json; expected a local checkpoint directory")
    raw = json.loads(config_path.read_text())
    model_type = raw.get("model_type")
    if model_type in (VLM2Config.model_type, "llava_onevision"):
        return model_type
    if "mm_vision_tower" in raw or model_type in ("llava_qwen", "llava_llama", "llava_mistral"):
        return "llava_next"
    return str(model_type)


def _load_config(directory: str | os.PathLike, **flags: Any) -> VLM2Config:
    found = detect_checkpoint_format(directory)
    if found == VLM2Config.model_type:
        config = VLM2Config.from_pretrained(directory)
        return VLM2Config.from_base(config, **flags) if flags else config
    if found == "llava_onevision":
        return VLM2Config.from_base(LlavaOnevisionConfig.from_pretrained(directory), **flags)
    if found == "vlm3r_release":
        raise ValueError(
            f"{directory} is a VLM-3R training output (adapter_config.json + non_lora_trainables.bin), not a model; "
            f"convert it on its base: spatialvlm convert vlm3r --base LLAVA_VIDEO_DIR --adapter {directory} OUT"
        )
    model_type = json.loads((Path(directory) / "config.json").read_text()).get("model_type")
    if found == "llava_next":
        command = _CONVERT_COMMANDS.get(model_type, "spatialvlm convert llava-video {dir} OUT").format(dir=directory)
        raise ValueError(
            f"{directory} is an original LLaVA-NeXT checkpoint (model_type {model_type!r}, flat text fields, "
            f"mm_* vision settings); convert it first: {command}"
        )
    command = _CONVERT_COMMANDS.get(model_type)
    hint = f"; convert it first: {command.format(dir=directory)}" if command else ""
    raise ValueError(
        f"{directory} holds a {model_type!r} checkpoint; VLM² loads 'vlm2' and 'llava_onevision' directories{hint}"
    )


def _check_frame_mask(mask: Tensor | None, batch: int, frames: int, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    if mask.shape != (batch, frames) or mask.dtype != torch.bool:
        raise ValueError(
            f"video_frame_mask must be bool of shape (B, T) = ({batch}, {frames}); got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    counts = mask.sum(1)
    # Memory order is frame order, so real frames must be a prefix of each row.
    prefix = torch.arange(frames, device=mask.device)[None, :] < counts[:, None]
    if not torch.equal(prefix, mask):
        raise ValueError("video_frame_mask must mark a prefix of each row (real frames first, padding after)")
    if bool((counts == 0).any()):
        raise ValueError("every video needs at least one frame; a row of video_frame_mask is all False")
    return mask


@torch.no_grad()
def _copy_fresh(module: nn.Module, build) -> None:
    """Give ``module`` the values of a freshly built twin, skipping tensors already loaded."""
    with torch.device("cpu"):
        fresh = build()
    # Parameters and *all* buffers: a non-persistent buffer is in no state dict, so from_pretrained
    # leaves it as uninitialised memory unless it is filled here.
    fresh_tensors = {**dict(fresh.named_parameters()), **dict(fresh.named_buffers())}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.device.type == "meta":
            continue
        init.copy_(tensor, fresh_tensors[name].to(tensor.dtype))


def patch(
    model: LlavaOnevisionForConditionalGeneration,
    config: VLM2Config | dict[str, Any] | None = None,
    **flags: Any,
) -> VLM2ForConditionalGeneration:
    """Add the VLM² video path to an already-loaded ``LlavaOnevisionForConditionalGeneration``.

    The model is changed in place (its class becomes ``VLM2ForConditionalGeneration``; its weights
    are kept and shared) and returned. The new modules are freshly initialised on the model's
    device and dtype.

    Args:
        model: a loaded LLaVA-OneVision / LLaVA-Video model.
        config: a ``VLM2Config`` whose towers match the model, or a dict of VLM² flags.
        flags: VLM² flags (``use_dual_memory=True``, ...), applied on top of ``config``.
    """
    if isinstance(model, VLM2ForConditionalGeneration):
        raise ValueError("model already has the VLM² path")
    if not isinstance(model, LlavaOnevisionForConditionalGeneration):
        raise TypeError(f"patch expects a LlavaOnevisionForConditionalGeneration, got {type(model).__name__}")
    if isinstance(config, VLM2Config):
        for tower in ("vision_config", "text_config"):
            ours, theirs = getattr(config, tower), getattr(model.config, tower)
            if ours.hidden_size != theirs.hidden_size:
                raise ValueError(
                    f"config.{tower}.hidden_size is {ours.hidden_size} but the model's is {theirs.hidden_size}"
                )
        flags = {**{name: getattr(config, name) for name in VLM2_FLAG_NAMES}, **flags}
    elif isinstance(config, dict):
        flags = {**config, **flags}
    elif config is not None:
        raise TypeError(f"config must be a VLM2Config, a dict of flags or None; got {type(config).__name__}")
    vlm2_config = VLM2Config.from_base(model.config, **flags)
    model.__class__ = VLM2ForConditionalGeneration
    model.model.__class__ = VLM2Model
    model.config = vlm2_config
    model.model.config = vlm2_config
    model.vlm2_new_weights = []
    model.model._add_vlm2_modules()
    model.vlm2_new_weights = sorted(
        f"model.{name}" for name, _ in model.model.named_parameters() if name.startswith(("spatial_fusion.", "dual_memory."))
    )
    return model


def _register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForImageTextToText`` know "vlm2" and load LLaVA-OneVision's
    legacy checkpoint key layout (``language_model.*`` etc.) into it as they do for the base."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    AutoConfig.register(VLM2Config.model_type, VLM2Config, exist_ok=True)
    AutoModelForImageTextToText.register(VLM2Config, VLM2ForConditionalGeneration, exist_ok=True)
    mapping = get_checkpoint_conversion_mapping("llava_onevision")
    if mapping is not None:
        register_checkpoint_conversion_mapping(VLM2Config.model_type, mapping, overwrite=True)


_register()
