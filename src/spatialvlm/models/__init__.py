"""Hugging Face integration: the VLM² video model, its processor, streaming and loading helpers.

This is the only package that imports transformers' model classes.

    from spatialvlm.models import load_vlm2, answer_video_question
    model, processor = load_vlm2("checkpoints/vlm2")
    answer = answer_video_question(model, processor, "scene.mp4", "How many chairs?", geometry="geo/")
"""

from .diffusion import DiffusionConfig, DiffusionOutput, MaskedDiffusionGenerator
from .inference import (
    EncodedVideo,
    VideoAnswer,
    answer_video_question,
    ask_video,
    encode_video,
    generate_answer,
    load_video_geometry,
    load_vlm2,
)
from .llada import convert_llada_checkpoint
from .processing import VLM2Processor, collate_video_geometry
from .lavida_image import LavidaViews, lavida_anyres_tokens, lavida_anyres_views
from .shirgx_vlm import (
    ImageAnswer,
    ShirgXImageConfig,
    ShirgXImageModel,
    ShirgXImagePath,
    load_shirgx_image_model,
    question_token_ids,
)
from .siglip import LayerAttention, ToMeSiglipOutput, layer_attention, tome_siglip_forward
from .streaming import VLM2StreamingSession
from .tiny import build_tiny_processor, build_tiny_tokenizer, tiny_llava_onevision_config
from .vlm2 import (
    GEOMETRY_INPUT_NAMES,
    VideoGeometryInputs,
    VLM2Config,
    VLM2ForConditionalGeneration,
    VLM2Model,
    VLM2VideoOutput,
    patch,
    tiny_vlm2_config,
)

__all__ = [
    "DiffusionConfig",
    "DiffusionOutput",
    "ImageAnswer",
    "LayerAttention",
    "LavidaViews",
    "MaskedDiffusionGenerator",
    "ShirgXImageConfig",
    "ShirgXImagePath",
    "ShirgXImageModel",
    "load_shirgx_image_model",
    "ToMeSiglipOutput",
    "convert_llada_checkpoint",
    "GEOMETRY_INPUT_NAMES",
    "VLM2Config",
    "VLM2ForConditionalGeneration",
    "VLM2Model",
    "VLM2Processor",
    "VLM2StreamingSession",
    "VLM2VideoOutput",
    "EncodedVideo",
    "VideoAnswer",
    "VideoGeometryInputs",
    "answer_video_question",
    "ask_video",
    "encode_video",
    "build_tiny_processor",
    "build_tiny_tokenizer",
    "collate_video_geometry",
    "generate_answer",
    "lavida_anyres_tokens",
    "lavida_anyres_views",
    "layer_attention",
    "load_video_geometry",
    "load_vlm2",
    "patch",
    "question_token_ids",
    "tiny_llava_onevision_config",
    "tiny_vlm2_config",
    "tome_siglip_forward",
]
