"""A VLM-3R release (LoRA + fusion block on LLaVA-Video-7B-Qwen2) → VLM².

What VLM-3R's ``llava/train/train.py`` writes when training with ``--lora_enable True``:

- ``adapter_config.json`` + ``adapter_model.{safetensors,bin}``: a peft LoRA (the released scripts
  use r = 128, α = 256) whose ``target_modules`` are the full module names that
  ``find_all_linear_names`` collects: every ``nn.Linear`` outside ``mm_projector``,
  ``vision_tower``, ``vision_resampler``, ``spatial_tower`` and ``fusion_block``, without ``lm_head``
  (so ``model.layers.N.self_attn.q_proj`` …); keys ``base_model.model.<module>.lora_{A,B}.weight``;
- ``non_lora_trainables.bin``: every other trained parameter, named as in the peft-wrapped model:
  ``base_model.model.model.mm_projector.{0,2}.*`` and ``base_model.model.model.fusion_block.*``;
- ``config.json``: the LLaVA-NeXT config plus ``fusion_block`` (``cross_attention`` by default),
  ``spatial_tower`` (``cut3r``), ``spatial_tower_select_feature``, ``spatial_feature_dim`` (768).

The fusion block ``CrossAttentionFusion`` (``multimodal_fusion_block/builder.py``: d_attn =
mm_hidden_size, 18 heads, K/V from ``spatial_feature_dim``) is our ``GeometryFusion`` with the
same parameter names; its keys/values are the CUT3R tokens ``spatial_tower_select_feature`` picks
(``llava_arch.encode_images``: "patch_tokens" → the 729 patch tokens; "camera_tokens,patch_tokens"
or "all" → [camera; patches], 730 keys), which is ``fusion_camera_as_key`` here. Fusion runs on
SigLIP tokens before the projector, as in VLM-3R.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .common import CheckpointReader, ConversionReport, parse_dtype
from .llava_video import LlavaNextSource, has_checkpoint_weights, map_llava_next_key, video_layout, write_vlm2_directory

__all__ = ["VLM3RRelease", "convert_vlm3r", "plan_vlm3r", "IMPLEMENTED_FUSION_BLOCKS", "VLM3R_FUSION_BLOCKS"]

# Fusion types of VLM-3R's build_multimodal_fusion_block, and the one this library implements.
VLM3R_FUSION_BLOCKS: tuple[str, ...] = (
    "cross_attention",
    "cross_attention_with_mlp",
    "mlp_after_clip_proj",
    "transformer",
    "concat_mlp",
    "concat_self_attention",
    "llava_3d_fusion_block",
    "video_3d_llm_fusion_block",
    "N_layer_cross_attention",
)
IMPLEMENTED_FUSION_BLOCKS: tuple[str, ...] = ("cross_attention",)

_PEFT_PREFIX = "base_model.model."
_FUSION_PREFIX = "model.fusion_block."


def camera_as_key(select_feature: str | None) -> bool:
    """Whether VLM-3R's ``spatial_tower_select_feature`` puts the camera token among the keys."""
    value = select_feature or "patch_tokens"
    if value in ("all", "all_tokens"):
        # llava_arch.py tests for "all"; the released training script passes "all_tokens" (its
        # run name: "all_tokens_cross_attn"): both mean [camera; patches].
        return True
    parts = [part.strip() for part in value.split(",")]
    unknown = sorted(set(parts) - {"camera_tokens", "patch_tokens"})
    if unknown:
        raise ValueError(f"spatial_tower_select_feature {value!r}: unknown parts {unknown}")
    if "patch_tokens" not in parts:
        raise ValueError(
            f"spatial_tower_select_feature {value!r} (camera token only) is not supported: the fusion keys here are "
            "the patch tokens, optionally with the camera token"
        )
    return "camera_tokens" in parts


class VLM3RRelease:
    """A VLM-3R training output folder, read (LoRA, non-LoRA trainables, config).

    Attributes:
        directory: the folder.
        raw_config: its config.json.
        lora: {our module name: (A (r, in), B (out, r))}.
        scale: α / r (α / √r with rsLoRA).
        adapter_config: the peft adapter config as saved.
        projector, vision, text: {our name: tensor} overrides from ``non_lora_trainables.bin``.
        fusion: {our name: tensor} of the fusion block.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        for name in ("adapter_config.json", "non_lora_trainables.bin", "config.json"):
            if not (self.directory / name).is_file():
                raise FileNotFoundError(
                    f"{self.directory} has no {name}; a VLM-3R release holds adapter_config.json, adapter_model.*, "
                    "non_lora_trainables.bin and config.json"
                )
        self.raw_config = json.loads((self.directory / "config.json").read_text())
        self.adapter_config = json.loads((self.directory / "adapter_config.json").read_text())
        self._check_config()
        self.scale, self.lora = self._read_lora()
        self.overrides, self.fusion = self._read_non_lora()

    def _check_config(self) -> None:
        raw = self.raw_config
        fusion = raw.get("fusion_block")
        if fusion is None:
            raise ValueError(f"{self.directory}/config.json has no fusion_block: not a VLM-3R model")
        if fusion not in IMPLEMENTED_FUSION_BLOCKS:
            raise ValueError(
                f"fusion_block {fusion!r} is not implemented here (VLM-3R has {', '.join(VLM3R_FUSION_BLOCKS)}); "
                f"only {', '.join(IMPLEMENTED_FUSION_BLOCKS)} converts to GeometryFusion"
            )
        tower = str(raw.get("spatial_tower") or "")
        if tower.endswith("points"):
            raise ValueError(f"spatial_tower {tower!r} feeds point maps to the fusion; only token towers (cut3r) convert")
        config = self.adapter_config
        if config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"adapter peft_type {config.get('peft_type')!r} is not LORA")
        if config.get("use_dora"):
            raise ValueError("the adapter uses DoRA (use_dora=true), which this converter does not merge")
        if config.get("bias", "none") != "none":
            raise ValueError(f"the adapter trains biases (bias={config.get('bias')!r}); only bias='none' converts")
        if config.get("fan_in_fan_out"):
            raise ValueError("the adapter has fan_in_fan_out=true (Conv1D layers); LLaVA-NeXT's Linear layers do not")

    def _read_lora(self) -> tuple[float, dict[str, tuple[Tensor, Tensor]]]:
        config = self.adapter_config
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
        scale = alpha / rank**0.5 if config.get("use_rslora") else alpha / rank
        tensors = CheckpointReader(self.directory, stem="adapter_model").load_all()
        pairs: dict[str, dict[str, Tensor]] = {}
        leftovers = []
        for name, tensor in tensors.items():
            stripped = name[len(_PEFT_PREFIX) :] if name.startswith(_PEFT_PREFIX) else None
            parts = stripped.rsplit(".", 2) if stripped else []
            if len(parts) != 3 or parts[1] not in ("lora_A", "lora_B") or parts[2] != "weight":
                leftovers.append(name)
                continue
            module = map_llava_next_key(parts[0] + ".weight")
            if module is None or not module.startswith("model.language_model."):
                leftovers.append(name)
                continue
            pairs.setdefault(module.removesuffix(".weight"), {})[parts[1]] = tensor
        if leftovers:
            raise ValueError(f"{self.directory}: adapter tensors with no place here: {sorted(leftovers)[:5]}")
        incomplete = sorted(module for module, pair in pairs.items() if len(pair) != 2)
        if incomplete:
            raise ValueError(f"{self.directory}: LoRA modules without both lora_A and lora_B: {incomplete[:5]}")
        targets = config.get("target_modules")
        if isinstance(targets, list):
            untrained = sorted(
                t for t in targets if map_llava_next_key(t + ".weight") is None
                or map_llava_next_key(t + ".weight").removesuffix(".weight") not in pairs
            )
            if untrained and all("." in t for t in targets):
                raise ValueError(f"{self.directory}: target_modules without LoRA weights: {untrained[:5]}")
        for module, pair in pairs.items():
            if pair["lora_A"].shape[0] != rank or pair["lora_B"].shape[1] != rank:
                raise ValueError(f"{module}: LoRA shapes {tuple(pair['lora_A'].shape)}, {tuple(pair['lora_B'].shape)} do not have r={rank}")
        return scale, {module: (pair["lora_A"], pair["lora_B"]) for module, pair in pairs.items()}

    def _read_non_lora(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        state = torch.load(self.directory / "non_lora_trainables.bin", map_location="cpu", weights_only=True)
        overrides: dict[str, Tensor] = {}
        fusion: dict[str, Tensor] = {}
        leftovers = []
        for name, tensor in state.items():
            stripped = name[len(_PEFT_PREFIX) :] if name.startswith(_PEFT_PREFIX) else name
            if stripped.startswith(_FUSION_PREFIX):
                fusion["model.spatial_fusion.geometry_fusion." + stripped[len(_FUSION_PREFIX) :]] = tensor
            elif stripped.startswith("model.spatial_tower."):
                raise ValueError(
                    f"{self.directory}: non_lora_trainables.bin holds a trained spatial tower ({stripped}); the 3D model "
                    "runs outside the VLM here (precomputed features): extract them with the trained tower"
                )
            elif (ours := map_llava_next_key(stripped)) is not None:
                overrides[ours] = tensor
            else:
                leftovers.append(name)
        if leftovers:
            raise ValueError(f"{self.directory}/non_lora_trainables.bin: tensors with no place here: {sorted(leftovers)[:5]}")
        if not fusion:
            raise ValueError(f"{self.directory}/non_lora_trainables.bin holds no fusion_block.* tensors")
        return overrides, fusion

    def flags(self) -> dict[str, Any]:
        """VLM² flags that reproduce the release: VLM-3R's fusion, nothing VLM² adds."""
        raw = self.raw_config
        width = int(raw.get("spatial_feature_dim") or 768)
        return dict(
            use_spatial_fusion=True,
            use_coordinate_injection=False,
            use_viewpoint_alignment=False,
            use_point_tokens=False,
            use_dual_memory=False,
            geometry_dim=width,
            view_dim=width,
            fusion_num_heads=18,  # build_multimodal_fusion_block's fixed value
            fusion_dropout=0.1,  # CrossAttentionFusion's fixed nn.Dropout(0.1)
            fusion_camera_as_key=camera_as_key(raw.get("spatial_tower_select_feature")),
        )

    def lora_targets(self) -> list[str]:
        return sorted(self.lora)


class _ConvertedBase:
    """An already converted base directory (``model_type`` vlm2 / llava_onevision): our names."""

    def __init__(self, directory: Path, flags: dict[str, Any]) -> None:
        from transformers import AutoTokenizer

        from ..models.vlm2 import VLM2Config, _load_config

        self.directory = directory
        self.config = _load_config(directory, **flags)
        if not isinstance(self.config, VLM2Config):
            raise TypeError(f"{directory}: unexpected config type {type(self.config).__name__}")
        self.reader = CheckpointReader(directory)
        self.shapes = self.reader.shapes()
        self.name_map = {name: name for name in self.shapes if not name.startswith(("model.spatial_fusion.", "model.dual_memory."))}
        self.skipped = {name: "VLM² modules of the base (replaced by the release's)" for name in self.shapes if name not in self.name_map}
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.notes = [f"base: converted directory {directory}"]

    def produced_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.name_map[name]: shape for name, shape in self.shapes.items() if name in self.name_map}

    def tensors(self, progress: bool = True) -> Iterator[tuple[str, Tensor]]:
        for shard in self.reader.iter_shards(progress=progress):
            for name, tensor in shard.items():
                if name in self.name_map:
                    yield self.name_map[name], tensor


def _open_base(base: str | os.PathLike, vision_config: str | os.PathLike | None, flags: dict[str, Any], weights: bool = True):
    from ..models.vlm2 import detect_checkpoint_format

    base = Path(base)
    found = detect_checkpoint_format(base)
    if found in ("vlm2", "llava_onevision"):
        return _ConvertedBase(base, flags)
    if found != "llava_next":
        raise ValueError(f"--base {base} is a {found!r} directory; expected the original LLaVA-Video (llava_qwen) or a converted one")
    return LlavaNextSource.open(base, vision_config=vision_config, weights=weights, **flags)


def _merged_stream(
    base_tensors: Iterator[tuple[str, Tensor]], release: VLM3RRelease, merge_lora: bool
) -> Iterator[tuple[str, Tensor]]:
    for name, tensor in base_tensors:
        if name in release.overrides:
            tensor = release.overrides[name]
        module = name.removesuffix(".weight")
        if merge_lora and name.endswith(".weight") and module in release.lora:
            lora_a, lora_b = release.lora[module]
            delta = release.scale * (lora_b.double() @ lora_a.double())  # W += α/r · B·A
            tensor = (tensor.double() + delta).to(tensor.dtype)
        yield name, tensor
    yield from release.fusion.items()


def _adapter_files(release: VLM3RRelease, dtype: torch.dtype | None) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The release's LoRA as a peft adapter on our module names."""
    config = dict(release.adapter_config)
    config["target_modules"] = release.lora_targets()
    config["base_model_name_or_path"] = None
    tensors: dict[str, Tensor] = {}
    for module, (lora_a, lora_b) in release.lora.items():
        for kind, tensor in (("lora_A", lora_a), ("lora_B", lora_b)):
            tensor = tensor.to(dtype) if dtype is not None else tensor
            tensors[f"{_PEFT_PREFIX}{module}.{kind}.weight"] = tensor.contiguous().clone()
    return config, tensors


def convert_vlm3r(
    base: str | os.PathLike,
    release: str | os.PathLike,
    destination: str | os.PathLike,
    vision_config: str | os.PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    merge_lora: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert a VLM-3R release on its LLaVA-Video base into a VLM² directory.

    Args:
        base: the original LLaVA-Video directory, or one ``convert llava-video`` wrote.
        release: the VLM-3R output folder (``adapter_config.json``, ``adapter_model.*``,
            ``non_lora_trainables.bin``, ``config.json``).
        destination: new directory for ``load_vlm2``.
        vision_config: ``SiglipVisionConfig`` JSON when the base names an unknown tower.
        dtype: "bfloat16", "float16", "float32" or None (the base's).
        merge_lora: fold the LoRA into the weights (W += α/r·B·A); otherwise it is written as a peft
            adapter in ``destination/lora_adapter/``, which ``VLM2ForConditionalGeneration.from_pretrained``
            merges at load time (``load_adapter=False`` leaves it out).
    """
    from safetensors.torch import save_file

    dtype = parse_dtype(dtype)
    vlm3r = VLM3RRelease(release)
    notes: list[str] = []
    flags = dict(vlm3r.flags(), **video_layout(vlm3r.raw_config, notes))
    source = _open_base(base, vision_config, flags)
    produced = source.produced_shapes()
    for name, tensor in {**vlm3r.overrides, **vlm3r.fusion}.items():
        if name in vlm3r.overrides and name not in produced:
            raise ValueError(f"the release's {name} is not in the base model")
        if name in produced and tuple(produced[name]) != tuple(tensor.shape):
            raise ValueError(f"the release's {name} has shape {tuple(tensor.shape)}, the base's {produced[name]}")
        produced[name] = tuple(tensor.shape)
    for module, (lora_a, lora_b) in vlm3r.lora.items():
        weight = produced.get(module + ".weight")
        if weight is None or tuple(weight) != (lora_b.shape[0], lora_a.shape[1]):
            raise ValueError(f"LoRA on {module}: B·A is {(lora_b.shape[0], lora_a.shape[1])}, the weight {weight}")
    report = ConversionReport(
        f"VLM-3R ({vlm3r.raw_config['fusion_block']}, {vlm3r.raw_config.get('spatial_tower')})",
        f"{base} + {release}",
        mapped={**dict(source.name_map), **{f"release:{n}": n for n in vlm3r.fusion}},
        skipped=dict(source.skipped),
        notes=[
            *source.notes,
            *notes,
            f"fusion block → model.spatial_fusion.geometry_fusion ({len(vlm3r.fusion)} tensors), keys: "
            + ("[camera; patches]" if flags["fusion_camera_as_key"] else "patch tokens"),
            f"from non_lora_trainables.bin: {', '.join(sorted(vlm3r.overrides)) or 'nothing besides the fusion block'}",
            f"LoRA on {len(vlm3r.lora)} modules (scale α/r = {vlm3r.scale:g}): "
            + ("merged into the weights" if merge_lora else "kept as a peft adapter in lora_adapter/ on our module names"),
        ],
    )
    write_vlm2_directory(destination, source.config, source.tokenizer, _merged_stream(source.tensors(progress), vlm3r, merge_lora), produced, report, dtype)
    if not merge_lora:
        from ..models.vlm2 import ADAPTER_SUBFOLDER

        config, tensors = _adapter_files(vlm3r, dtype)
        folder = Path(destination) / ADAPTER_SUBFOLDER
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return report


def plan_vlm3r(base: str | os.PathLike, release: str | os.PathLike, vision_config: str | os.PathLike | None = None, frames: int = 32):
    """``--dry-run`` of ``convert_vlm3r``: the converted configuration's ``ModelPlan``."""
    from .plan import plan_model

    vlm3r = VLM3RRelease(release)
    notes: list[str] = []
    flags = dict(vlm3r.flags(), **video_layout(vlm3r.raw_config, notes))
    source = _open_base(base, vision_config, flags, weights=has_checkpoint_weights(base))
    title = f"plan: VLM-3R {release} on {base} (meta device)"
    return plan_model(source.config, frames=frames, title=title, notes=[*source.notes, *notes])
