"""Converters from the checkpoints people have to directories ``load_vlm2`` reads offline.

One module per source format:

- :mod:`.llava_video`: original LLaVA-NeXT-layout LLaVA-Video / LLaVA-OneVision (``llava_qwen``);
- :mod:`.vlm3r`: a VLM-3R release (peft LoRA + ``non_lora_trainables.bin``) on its LLaVA-Video base;
- :mod:`.lavida`: a LaViDa-LLaDA release (``llava_llada``) into a LLaVA-OneVision directory for the
  SHIRG-X image path (bidirectional LLaDA as LLaMA, SigLIP, projector, LaViDa's prompt and tokens);
- :mod:`.llada`: a plain LLaDA checkpoint into a LLaMA/Qwen2 stand-in;
- :mod:`.plan`: ``--dry-run``: the real configuration on the meta device, parameters and memory.

``spatialvlm convert FORMAT …`` runs them (``spatialvlm/commands/convert.py``).
"""

from .common import CheckpointReader, ConversionReport
from .llava_video import (
    BUILTIN_CONFIGS,
    KNOWN_VISION_TOWERS,
    LlavaNextSource,
    convert_llava_video,
    map_llava_next_key,
    plan_llava_video,
)
from .plan import ModelPlan, plan_model
from .vlm3r import IMPLEMENTED_FUSION_BLOCKS, VLM3R_FUSION_BLOCKS, VLM3RRelease, convert_vlm3r, plan_vlm3r
from .lavida import convert_lavida
from .llada import convert_llada_checkpoint

__all__ = [
    "CheckpointReader",
    "IMPLEMENTED_FUSION_BLOCKS",
    "VLM3R_FUSION_BLOCKS",
    "VLM3RRelease",
    "convert_vlm3r",
    "plan_vlm3r",
    "ConversionReport",
    "BUILTIN_CONFIGS",
    "KNOWN_VISION_TOWERS",
    "ModelPlan",
    "LlavaNextSource",
    "convert_llava_video",
    "convert_lavida",
    "convert_llada_checkpoint",
    "map_llava_next_key",
    "plan_llava_video",
    "plan_model",
]
