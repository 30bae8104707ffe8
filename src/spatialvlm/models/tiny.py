"""Tiny, download-free stand-ins for LLaVA-OneVision / LLaVA-Video: tokenizer, configs, processor.

Everything here is built locally from code, so tests, examples and benchmarks run offline. The
shapes follow the real models (SigLIP patch 14, Qwen2 decoder, ChatML template, LLaVA-OneVision's
2×2 video pooling); only the widths and depths are small.

Tiny sizes (defaults):

- SigLIP: hidden 32, 2 layers, 2 heads, patch 14, image 56 px → a 4×4 patch grid (16 tokens/frame),
  pooled to 2×2 = 4 language tokens per frame (+1 newline token per video).
- Qwen2: hidden 64, 2 layers, 4 heads (2 KV heads), vocabulary ``TINY_VOCAB_SIZE``.
"""

from __future__ import annotations

from typing import Any

from transformers import LlavaOnevisionConfig, PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_VOCAB_SIZE",
    "CHATML_TEMPLATE",
    "build_tiny_tokenizer",
    "tiny_llava_onevision_config",
    "build_tiny_processor",
    "tiny_frame_geometry",
    "make_tiny_video_sample",
]

# Special tokens take the first ids, in this order, so configs can name them without a tokenizer.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",  # 0: padding (as in Qwen2)
    "<|im_start|>",  # 1
    "<|im_end|>",  # 2: end of a turn, the generation stop token
    "<image>",  # 3
    "<video>",  # 4
    "<|mdm_mask|>",  # 5: mask token for masked-diffusion decoding
)
PAD_TOKEN_ID, IM_START_ID, IM_END_ID, IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, MASK_TOKEN_ID = range(6)

# Embedding rows; the tokenizer uses at most this many ids (the BPE trainer stops earlier when the
# built-in corpus has no more merges), so every id it emits has an embedding.
TINY_VOCAB_SIZE = 512

# LLaVA-OneVision's template shape (media first, then text) in Qwen2's ChatML.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Merges are learnt from this fixed text, so the tokenizer is the same on every machine.
_CORPUS = """
How many chairs are in the room? How many tables are there? What is the size of the sofa in meters?
What is the distance between the bed and the door? Which object is closer to the camera, the lamp or
the plant? If I stand by the window facing the desk, is the chair to my left, right or behind me?
What is the room size in square meters? Which object appeared first in the video: the tv, the sink or
the cabinet? How many steps does the route take from the fridge to the oven? Answer with a number.
Answer with the option's letter from the given choices directly. A. left B. right C. back D. front
the a an of to in on at by for with from and or is are was were be this that these those it its
red green blue yellow white black gray brown orange purple small large big tiny long short tall
cube sphere cylinder cone box ball table chair sofa bed door window lamp plant desk shelf toilet
camera frame video image scene object objects question answer yes no one two three four five six
seven eight nine ten zero meter meters centimeter centimeters square distance size count direction
0 1 2 3 4 5 6 7 8 9 10 12 15 20 25 30 32 50 64 100 0.5 1.5 2.5 3.14
The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!
""" * 4


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen2-style) built locally, no download.

    Byte-level BPE covers every byte, so ``decode(encode(x)) == x`` for any text; the merges, learnt
    from a small built-in corpus of spatial questions and common words, only shorten sequences.
    Special tokens have the fixed ids of ``SPECIAL_TOKENS`` and the ChatML chat template is set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256}, got {vocab_size}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        mask_token="<|mdm_mask|>",
        additional_special_tokens=["<|im_start|>", "<image>", "<video>"],
        clean_up_tokenization_spaces=False,
        chat_template=CHATML_TEMPLATE,
        model_max_length=32768,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_llava_onevision_config(**overrides: Any) -> LlavaOnevisionConfig:
    """A LLaVA-OneVision config with tiny SigLIP and Qwen2 towers (see the module docstring).

    Keyword overrides: top-level fields (e.g. ``projector_hidden_act``) are set directly;
    ``vision_config`` / ``text_config`` dicts are merged into the tiny defaults, so
    ``tiny_llava_onevision_config(vision_config={"hidden_size": 1152})`` keeps the other fields.
    """
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
        vision_use_head=False,
    )
    text = dict(
        model_type="qwen2",
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=PAD_TOKEN_ID,
        eos_token_id=IM_END_ID,
        tie_word_embeddings=False,
    )
    vision.update(overrides.pop("vision_config", {}) or {})
    text.update(overrides.pop("text_config", {}) or {})
    fields: dict[str, Any] = dict(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN_ID,
        video_token_index=VIDEO_TOKEN_ID,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[vision["image_size"], vision["image_size"]]],
        tie_word_embeddings=False,
    )
    fields.update(overrides)
    config = LlavaOnevisionConfig(**fields)
    config.pad_token_id = PAD_TOKEN_ID
    config.eos_token_id = IM_END_ID
    return config


def build_tiny_processor(config: LlavaOnevisionConfig | None = None):
    """The tiny tokenizer wrapped in a ``VLM2Processor`` sized for ``config`` (default: the tiny one).

    Returns:
        ``spatialvlm.models.processing.VLM2Processor``.
    """
    from .processing import LAYOUT_FIELDS, VLM2Processor

    config = config if config is not None else tiny_llava_onevision_config()
    layout = {name: getattr(config, name) for name in LAYOUT_FIELDS if hasattr(config, name)}
    return VLM2Processor(
        tokenizer=build_tiny_tokenizer(config.text_config.vocab_size),
        image_size=config.vision_config.image_size,
        patch_size=config.vision_config.patch_size,
        **layout,
    )


def tiny_frame_geometry(
    num_frames: int,
    height: int = 32,
    width: int = 48,
    geometry_tokens: int = 9,
    geometry_dim: int = 24,
    view_dim: int = 16,
    seed: int = 0,
) -> list:
    """Random but plausible per-frame geometry for tests: a camera moving along x in front of a
    wall of points, plus random geometry and camera tokens (widths of ``tiny_vlm2_config``).

    Returns:
        ``num_frames`` unbatched ``spatialvlm.geometry.FrameGeometry`` with points (H, W, 3),
        confidence (H, W), geometry_tokens (M, Dg), camera_token (Dv) and pose (4, 4).
    """
    import torch

    from ..geometry import FrameGeometry

    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1.5, 1.5, width), indexing="ij")
    frames = []
    for index in range(num_frames):
        pose = torch.eye(4)
        pose[0, 3] = 0.1 * index
        depth = 2.0 + 0.2 * torch.rand(height, width, generator=generator)
        points = torch.stack([xs * depth / 2 + pose[0, 3], ys * depth / 2, depth], dim=-1)
        frames.append(
            FrameGeometry(
                points=points,
                confidence=torch.rand(height, width, generator=generator) + 0.5,
                geometry_tokens=torch.randn(geometry_tokens, geometry_dim, generator=generator),
                camera_token=torch.randn(view_dim, generator=generator),
                pose=pose,
            )
        )
    return frames


def make_tiny_video_sample(
    directory, num_frames: int = 8, height: int = 32, width: int = 48, seed: int = 0
) -> tuple:
    """Write ``directory/video.mp4`` and ``directory/geometry/frame_XXXXX.safetensors`` for tests.

    Returns:
        ``(video_path, geometry_dir, frames)`` with frames (T, H, W, 3) uint8 as written.
    """
    from pathlib import Path

    import numpy as np

    from ..data.video import write_video
    from ..geometry import frame_filename, save_frame_geometry

    directory = Path(directory)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    video_path = write_video(directory / "video.mp4", frames, fps=5)
    geometry_dir = directory / "geometry"
    for index, frame in enumerate(tiny_frame_geometry(num_frames, height, width, seed=seed)):
        save_frame_geometry(geometry_dir / frame_filename(index), frame)
    return video_path, geometry_dir, frames
