"""Original LLaVA-NeXT-layout checkpoints (LLaVA-Video-7B-Qwen2, LLaVA-OneVision-qwen2) → VLM².

The source layout, as LLaVA-NeXT (``llava/model/language_model/llava_qwen.py``, ``llava_arch.py``,
``multimodal_encoder/siglip_encoder.py``) builds and saves it:

=====================================================  =============================================
source (``LlavaQwenForCausalLM``)                      ours (``VLM2ForConditionalGeneration``)
=====================================================  =============================================
``model.embed_tokens`` / ``model.layers.N`` /          ``model.language_model.{embed_tokens, layers.N,
``model.norm``                                         norm}``
``lm_head``                                            ``lm_head``
``model.mm_projector.0`` / ``.2`` (Linear-GELU-Linear) ``model.multi_modal_projector.linear_1 / _2``
``model.vision_tower.vision_tower.vision_model.*``     ``model.vision_tower.*``
``model.image_newline``                                ``model.image_newline``
``*.rotary_emb.inv_freq``                              recomputed (skipped)
=====================================================  =============================================

``config.json`` holds the Qwen2 fields flat (``hidden_size``, ``num_hidden_layers``, …) plus the
``mm_*`` fields. The vision tower is SigLIP with its last encoder layer deleted
(``del vision_model.encoder.layers[-1:]``, head = Identity); LLaVA-NeXT feeds the projector
``hidden_states[-1]`` of that shortened tower, before the post-layernorm. Here the tower keeps the
layers the checkpoint holds and the config selects ``vision_feature_layer=-1`` (``"full"``), which
is the same tensor. Videos: each frame's 27×27 tokens → projector → ``get_2dPool`` (the mode of
``mm_spatial_pool_mode``; stride 2, the value ``prepare_inputs_labels_for_multimodal`` passes) →
``mm_newline_position`` (``grid``: a newline after each row of each frame).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .common import CheckpointReader, ConversionReport, ShardWriter, check_against_model, parse_dtype

__all__ = [
    "KNOWN_VISION_TOWERS",
    "LlavaNextSource",
    "convert_llava_video",
    "map_llava_next_key",
    "write_vlm2_directory",
]

# SigLIP towers LLaVA-NeXT names in ``mm_vision_tower``, as released (before the last layer is cut).
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    "siglip-so400m-patch14-384": dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        num_channels=3,
    ),
}

# Qwen2Config fields LLaVA-NeXT stores flat in its config.json.
TEXT_FIELDS: tuple[str, ...] = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "attention_dropout",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
)
REQUIRED_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")

_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
_RENAMES: tuple[tuple[str, str], ...] = (
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    (_VISION_PREFIX, "model.vision_tower."),  # transformers 5's SiglipVisionModel has no vision_model level
)


def map_llava_next_key(name: str) -> str | None:
    """Our name of a LLaVA-NeXT tensor, or None when it has no place in the converted model."""
    if name == "model.image_newline":
        return name
    for source, ours in _RENAMES:
        if name.startswith(source):
            return ours + name[len(source) :]
    return None


def _is_recomputed(name: str) -> bool:
    return name.endswith("rotary_emb.inv_freq")


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json; expected an original LLaVA-NeXT checkpoint directory")
    raw = json.loads(path.read_text())
    if raw.get("model_type") in ("vlm2", "llava_onevision"):
        raise ValueError(f"{directory} is already a {raw['model_type']!r} directory; load it with load_vlm2, no conversion needed")
    if raw.get("model_type") != "llava_qwen":
        raise ValueError(
            f"{path}: model_type is {raw.get('model_type')!r}; `convert llava-video` reads LLaVA-NeXT 'llava_qwen' "
            "checkpoints (LLaVA-Video-7B-Qwen2, LLaVA-OneVision-qwen2)"
        )
    missing = [name for name in REQUIRED_TEXT_FIELDS if name not in raw]
    if missing:
        raise ValueError(f"{path} lacks the Qwen2 fields {missing}; a LLaVA-NeXT config stores them at the top level")
    projector = raw.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ValueError(
            f"{path}: mm_projector_type {projector!r} is not supported; Hugging Face's LLaVA-OneVision projector is "
            "Linear-GELU-Linear (LLaVA-NeXT 'mlp2x_gelu')"
        )
    if raw.get("add_faster_video"):
        raise ValueError(f"{path}: add_faster_video=True (slow-fast video tokens) is not supported by the converter")
    return raw


def _vision_config(
    raw: dict[str, Any], vision_config_file: str | os.PathLike | None, held_layers: int | None, notes: list[str]
) -> dict[str, Any]:
    tower = str(raw.get("mm_vision_tower") or raw.get("vision_tower") or "")
    if vision_config_file is not None:
        path = Path(vision_config_file)
        if not path.is_file():
            raise FileNotFoundError(f"--vision-config {path} does not exist")
        values = json.loads(path.read_text())
        values = values.get("vision_config", values)  # a full SiglipConfig holds it under vision_config
        values.pop("model_type", None)
        notes.append(f"vision tower config from {path}")
    else:
        known = next((spec for name, spec in KNOWN_VISION_TOWERS.items() if name in tower), None)
        if known is None:
            raise ValueError(
                f"mm_vision_tower {tower!r} is not a built-in tower ({', '.join(KNOWN_VISION_TOWERS)}); pass its "
                "SiglipVisionConfig JSON with --vision-config FILE"
            )
        values = dict(known)
        notes.append(f"vision tower {tower!r}: built-in SigLIP config")
    if "siglip" not in tower.lower() and vision_config_file is None:
        raise ValueError(f"mm_vision_tower {tower!r} is not a SigLIP tower; only SigLIP towers are supported")
    if held_layers is not None:
        if held_layers != values.get("num_hidden_layers"):
            notes.append(
                f"vision tower: {held_layers} encoder layers in the checkpoint (the config names "
                f"{values.get('num_hidden_layers')}; LLaVA-NeXT deletes the last), projector reads the last one"
            )
        values["num_hidden_layers"] = held_layers
    mm_hidden = raw.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != values["hidden_size"]:
        raise ValueError(f"mm_hidden_size {mm_hidden} differs from the vision tower's hidden_size {values['hidden_size']}")
    return dict(model_type="siglip_vision_model", vision_use_head=False, **values)


def _text_config(raw: dict[str, Any]) -> dict[str, Any]:
    values = {name: raw[name] for name in TEXT_FIELDS if name in raw}
    return dict(model_type="qwen2", **values)


def video_layout(raw: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """``VLM2Config`` layout fields from LLaVA-NeXT's ``mm_*`` fields, as its video path uses them."""
    mode = raw.get("mm_spatial_pool_mode", "bilinear")
    if mode not in ("average", "max", "bilinear"):
        raise ValueError(f"mm_spatial_pool_mode {mode!r} is not one of average, max, bilinear")
    stride = raw.get("mm_spatial_pool_stride")
    if stride not in (None, 2):
        notes.append(
            f"mm_spatial_pool_stride={stride} is ignored, as LLaVA-NeXT's prepare_inputs_labels_for_multimodal "
            "calls get_2dPool with its default stride 2"
        )
    merge = raw.get("mm_patch_merge_type", "flat")
    position = raw.get("mm_newline_position", "one_token")
    if merge == "flat":
        position = "no_token"
    elif position == "one_token" and "unpad" not in merge:
        position = "no_token"  # LLaVA-NeXT only appends the newline with an 'unpad' merge type
    if position not in ("grid", "frame", "one_token", "no_token"):
        raise ValueError(f"mm_newline_position {position!r} is not one of grid, frame, one_token, no_token")
    notes.append(f"video layout: {mode} pooling, stride 2, newline {position} (mm_patch_merge_type {merge!r})")
    return dict(video_pool_mode=mode, video_pool_stride=2, video_newline_position=position)


def _grid_pinpoints(raw: dict[str, Any], image_size: int) -> list[list[int]] | None:
    pinpoints = raw.get("image_grid_pinpoints")
    if isinstance(pinpoints, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pinpoints):
        return [list(map(int, p)) for p in pinpoints]
    if isinstance(pinpoints, str) and "x" in pinpoints:
        # Training-argument form "(1x1),...,(6x6)": every grid from the first to the last, in tiles.
        import re

        corners = [tuple(map(int, m)) for m in re.findall(r"\((\d+)x(\d+)\)", pinpoints)]
        (r0, c0), (r1, c1) = corners[0], corners[-1]
        return [[r * image_size, c * image_size] for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    return None


def _prepare_tokenizer(directory: Path, vocab_size: int, notes: list[str]):
    from transformers import AutoTokenizer

    from ..models.tiny import CHATML_TEMPLATE

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer peeks at config.json and warns about 'llava_qwen'
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(f"{directory}: cannot read its tokenizer ({error}); the checkpoint needs its tokenizer files") from error
    finally:
        hf_logging.set_verbosity(verbosity)
    added = [token for token in ("<image>", "<video>") if token not in tokenizer.get_vocab()]
    if added:
        tokenizer.add_special_tokens({"additional_special_tokens": added}, replace_extra_special_tokens=False)
        notes.append(f"tokenizer: added {', '.join(added)} as special tokens")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ("<image>", "<video>")}
    too_large = {token: i for token, i in ids.items() if i >= vocab_size}
    if too_large:
        raise ValueError(
            f"the tokenizer gives {too_large}, beyond the embedding's {vocab_size} rows; this checkpoint has no spare "
            "vocabulary rows for the placeholder tokens"
        )
    tokenizer.chat_template = CHATML_TEMPLATE
    notes.append(f"tokenizer: <image> = {ids['<image>']}, <video> = {ids['<video>']}; ChatML template (media, newline, text)")
    return tokenizer, ids["<image>"], ids["<video>"]


@dataclass
class LlavaNextSource:
    """An original LLaVA-NeXT checkpoint, read and mapped (no tensor loaded yet).

    Attributes:
        directory: the source directory.
        raw_config: its config.json.
        config: the ``VLM2Config`` of the converted model (fusion and memory off).
        name_map: {source name: our name} of every tensor that is written.
        skipped: {source name: reason} of the tensors that are not.
        notes: what was read and decided, one line each.
    """

    directory: Path
    raw_config: dict[str, Any]
    config: Any
    tokenizer: Any | None
    name_map: dict[str, str]
    skipped: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    reader: CheckpointReader | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        vision_config: str | os.PathLike | None = None,
        weights: bool = True,
        **flags: Any,
    ) -> LlavaNextSource:
        """Read ``directory``'s config, tokenizer and tensor names; ``weights=False`` (dry run) needs
        only ``config.json`` and assumes the released tower minus its last layer."""
        from ..models.vlm2 import VLM2Config

        directory = Path(directory)
        raw = _read_config(directory)
        notes: list[str] = []
        reader = shapes = None
        if weights:
            reader = CheckpointReader(directory)
            shapes = reader.shapes()
            layer_ids = {int(n[len(_VISION_PREFIX) :].split(".")[2]) for n in shapes if n.startswith(_VISION_PREFIX + "encoder.layers.")}
            held = max(layer_ids) + 1 if layer_ids else None
            if held is None:
                raise ValueError(f"{directory}: no {_VISION_PREFIX}encoder.layers.* tensors; the vision tower is not in the checkpoint")
        else:
            shapes = {}
            tower = _vision_config(raw, vision_config, None, [])
            held = tower["num_hidden_layers"] - 1  # LLaVA-NeXT deletes the released tower's last layer
        vision = _vision_config(raw, vision_config, held, notes)
        text = _text_config(raw)
        layout = video_layout(raw, notes)
        tokenizer = None
        image_id, video_id = raw["vocab_size"] - 2, raw["vocab_size"] - 1
        if weights:
            tokenizer, image_id, video_id = _prepare_tokenizer(directory, raw["vocab_size"], notes)
        fields: dict[str, Any] = dict(
            vision_config=vision,
            text_config=text,
            image_token_index=image_id,
            video_token_index=video_id,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            projector_hidden_act="gelu",  # nn.GELU() in LLaVA-NeXT's mlp2x_gelu: the exact erf GELU
            multimodal_projector_bias=True,
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            vision_aspect_ratio=raw.get("image_aspect_ratio", "anyres_max_9"),
        )
        pinpoints = _grid_pinpoints(raw, vision["image_size"])
        if pinpoints is not None:
            fields["image_grid_pinpoints"] = pinpoints
        flags = {"use_spatial_fusion": False, "use_dual_memory": False, **layout, **flags}
        config = VLM2Config(**fields, **flags)
        if raw.get("torch_dtype") in ("float32", "bfloat16", "float16"):
            config.dtype = raw["torch_dtype"]  # what LLaVA-NeXT loads it as (--dtype overrides)
        if tokenizer is not None and tokenizer.pad_token_id is not None:
            config.pad_token_id = config.text_config.pad_token_id = tokenizer.pad_token_id
        name_map: dict[str, str] = {}
        skipped: dict[str, str] = {}
        leftovers = []
        for name in shapes:
            ours = map_llava_next_key(name)
            if _is_recomputed(name):
                skipped[name] = "rotary inv_freq buffers (recomputed from rope_theta)"
            elif ours is not None:
                name_map[name] = ours
            else:
                leftovers.append(name)
        if leftovers:
            raise ValueError(
                f"{directory}: {len(leftovers)} tensors have no place in the converted model: "
                + ", ".join(sorted(leftovers)[:6])
                + (" …" if len(leftovers) > 6 else "")
            )
        return cls(directory, raw, config, tokenizer, name_map, skipped, shapes, reader, notes)

    def produced_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.name_map[name]: shape for name, shape in self.shapes.items() if name in self.name_map}

    def tensors(self, progress: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(our name, tensor) of every mapped tensor, one source shard in memory at a time."""
        assert self.reader is not None
        for shard in self.reader.iter_shards(progress=progress):
            for name, tensor in shard.items():
                if name in self.name_map:
                    yield self.name_map[name], tensor


def processor_for(config: Any, tokenizer: Any):
    """The ``VLM2Processor`` of a converted LLaVA-Video model: LLaVA-NeXT's SigLIP preprocessing
    (384 px bicubic resize, mean = std = 0.5), the model's layout, qwen_1_5's system prompt and
    LLaVA-Video's time instruction."""
    from ..models.processing import QWEN_1_5_SYSTEM_PROMPT, VLM2Processor

    return VLM2Processor(
        tokenizer,
        image_size=config.vision_config.image_size,
        patch_size=config.vision_config.patch_size,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        resample="bicubic",
        video_pool_mode=config.video_pool_mode,
        video_pool_stride=config.video_pool_stride,
        video_newline_position=config.video_newline_position,
        system_prompt=QWEN_1_5_SYSTEM_PROMPT,
        time_instruction=True,
    )


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every tensor ``VLM2ForConditionalGeneration(config)`` loads (meta device)."""
    from ..models.vlm2 import VLM2ForConditionalGeneration

    with torch.device("meta"):
        model = VLM2ForConditionalGeneration(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def write_vlm2_directory(
    destination: str | os.PathLike,
    config: Any,
    tokenizer: Any,
    tensors: Iterator[tuple[str, Tensor]],
    produced: dict[str, tuple[int, ...]],
    report: ConversionReport,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Check ``produced`` against the model ``config`` builds, then write config, weights,
    tokenizer and processor into ``destination`` (which must not hold a checkpoint already)."""
    destination = Path(destination)
    if (destination / "config.json").exists():
        raise FileExistsError(f"{destination} already holds a checkpoint (config.json); choose an empty directory")
    expected = expected_shapes(config)
    tied = bool(config.tie_word_embeddings or config.text_config.tie_word_embeddings)
    check_against_model(produced, expected, allowed_missing=lambda name: tied and name == "lm_head.weight")
    writer = ShardWriter(destination)
    for name, tensor in tensors:
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        writer.add(name, tensor)
    writer.close()
    if dtype is not None:
        config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(destination)
    processor_for(config, tokenizer).save_pretrained(destination)
    for name, text in (extra_files or {}).items():
        (destination / name).write_text(text)
    report.destination = str(destination)
    report.parameters = sum(_numel(shape) for shape in produced.values())


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count


def convert_llava_video(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    vision_config: str | os.PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
) -> ConversionReport:
    """Convert an original LLaVA-Video / LLaVA-OneVision (LLaVA-NeXT layout) directory.

    Args:
        source: directory with ``config.json`` (``model_type: llava_qwen``), weights
            (``model.safetensors[.index.json]`` or ``pytorch_model.bin[.index.json]``) and tokenizer.
        destination: new directory; ``load_vlm2(destination)`` reads it offline.
        vision_config: a ``SiglipVisionConfig`` JSON when ``mm_vision_tower`` is not a built-in name.
        dtype: "bfloat16", "float16", "float32" or None (keep the source's).
        progress: progress bar over the source shards.
    Returns:
        The ``ConversionReport`` (``print(report.summary())``).
    """
    dtype = parse_dtype(dtype)
    src = LlavaNextSource.open(source, vision_config=vision_config)
    report = ConversionReport("LLaVA-NeXT (llava_qwen)", str(src.directory), mapped=dict(src.name_map), skipped=dict(src.skipped), notes=list(src.notes))
    write_vlm2_directory(destination, src.config, src.tokenizer, src.tensors(progress), src.produced_shapes(), report, dtype)
    return report


# lmms-lab/LLaVA-Video-7B-Qwen2's config.json fields that decide shapes (DESIGN.md, "Verified
# against the original code"), for a --dry-run without the checkpoint.
LLAVA_VIDEO_7B_QWEN2: dict[str, Any] = dict(
    architectures=["LlavaQwenForCausalLM"],
    model_type="llava_qwen",
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    hidden_act="silu",
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    tie_word_embeddings=False,
    use_sliding_window=False,
    sliding_window=131072,
    max_window_layers=28,
    bos_token_id=151643,
    eos_token_id=151645,
    mm_vision_tower="google/siglip-so400m-patch14-384",
    mm_hidden_size=1152,
    mm_projector_type="mlp2x_gelu",
    mm_patch_merge_type="spatial_unpad",
    mm_spatial_pool_mode="average",
    mm_spatial_pool_stride=2,
    mm_newline_position="grid",
    image_aspect_ratio="anyres_max_9",
)
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {"LLaVA-Video-7B-Qwen2": LLAVA_VIDEO_7B_QWEN2}


def has_checkpoint_weights(directory: str | os.PathLike) -> bool:
    try:
        CheckpointReader(directory)
    except FileNotFoundError:
        return False
    return True


def plan_llava_video(
    source: str | os.PathLike,
    vision_config: str | os.PathLike | None = None,
    frames: int = 32,
    **flags: Any,
):
    """``--dry-run``: the converted configuration's ``ModelPlan`` (meta device, nothing written).

    ``source`` is a LLaVA-NeXT directory (``config.json`` is enough) or a built-in name
    (``LLaVA-Video-7B-Qwen2``, also as ``lmms-lab/LLaVA-Video-7B-Qwen2``); ``flags`` are VLM² flags
    (``use_spatial_fusion=True, use_dual_memory=True`` for the full VLM²).
    """
    import tempfile

    from .plan import plan_model

    path = Path(source)
    builtin = BUILTIN_CONFIGS.get(str(source).split("/")[-1])
    with tempfile.TemporaryDirectory() as scratch:
        if not path.is_dir() and builtin is not None:
            path = Path(scratch)
            (path / "config.json").write_text(json.dumps(builtin))
        elif not path.is_dir():
            raise FileNotFoundError(f"{source} is neither a directory nor a built-in config ({', '.join(BUILTIN_CONFIGS)})")
        has_weights = has_checkpoint_weights(path)
        src = LlavaNextSource.open(path, vision_config=vision_config, weights=has_weights, **flags)
    notes = list(src.notes)
    if not has_weights:
        notes.append("no weights read: the vision tower is the released one minus its last layer, as LLaVA-NeXT cuts it")
    enabled = [name for name in ("use_spatial_fusion", "use_dual_memory") if getattr(src.config, name)]
    title = f"plan: {source} (LLaVA-Video layout{', ' + ', '.join(enabled) if enabled else ''}) on the meta device"
    return plan_model(src.config, frames=frames, title=title, notes=notes)
