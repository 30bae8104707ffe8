"""Tiny checkpoints in the original LLaVA-NeXT layout, and a reference LLaVA-Video forward.

Key names and config fields are LLaVA-NeXT's (``llava_qwen.py``: ``LlavaQwenForCausalLM`` is a
``Qwen2ForCausalLM`` whose ``model`` also holds ``vision_tower.vision_tower`` (``SigLipVisionModel``
with the last encoder layer deleted and head = Identity), ``mm_projector`` (``nn.Sequential``
Linear, GELU, Linear) and ``image_newline``). The reference forward is written here from
``llava_arch.py``: ``hidden_states[-1]`` of the shortened tower → projector → ``get_2dPool``
(``avg_pool2d`` stride 2) → ``add_token_per_grid`` (a newline after each row) → Qwen2.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from spatialvlm.models.tiny import build_tiny_tokenizer

VOCAB = 512
TEXT = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
    tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False, sliding_window=4096,
    max_window_layers=2, bos_token_id=0, eos_token_id=2,
)
# A 5×5 patch grid (70 px / 14): odd, so average pooling's floor (5 → 2) differs from bilinear's ceil (3).
# The released config names 3 layers; the checkpoint holds 2 (LLaVA-NeXT deletes the last).
VISION = dict(
    hidden_size=36, intermediate_size=72, num_hidden_layers=3, num_attention_heads=2, image_size=70,
    patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
)


class OriginalLlavaVideo(nn.Module):
    """The original model's modules, in its attribute layout (state_dict names as LLaVA-NeXT saves)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.language = Qwen2ForCausalLM(Qwen2Config(**TEXT))
        held = dict(VISION, num_hidden_layers=VISION["num_hidden_layers"] - 1)
        self.vision = SiglipVisionModel(SiglipVisionConfig(**held, vision_use_head=False))
        self.mm_projector = nn.Sequential(nn.Linear(36, 64), nn.GELU(), nn.Linear(64, 64))
        self.image_newline = nn.Parameter(torch.randn(64))
        with torch.no_grad():  # non-trivial norms so a wrong mapping shows
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0, 0.2)

    def original_state_dict(self) -> dict[str, torch.Tensor]:
        state = {name: t for name, t in self.language.state_dict().items()}  # model.*, lm_head.*
        # LLaVA-NeXT's SigLipVisionModel holds the transformer under .vision_model (transformers 5's does not)
        state.update({f"model.vision_tower.vision_tower.vision_model.{n}": t for n, t in self.vision.state_dict().items()})
        state.update({f"model.mm_projector.{n}": t for n, t in self.mm_projector.state_dict().items()})
        state["model.image_newline"] = self.image_newline.detach()
        return state

    @torch.no_grad()
    def video_tokens(self, pixel_values: torch.Tensor, fuse=None) -> torch.Tensor:
        """(T, 3, S, S) → (T · 2 · 3, 64): LLaVA-NeXT's video path for one video."""
        features = self.vision(pixel_values, output_hidden_states=True).hidden_states[-1]  # no post-layernorm
        if fuse is not None:
            features = fuse(features)
        features = self.mm_projector(features)
        frames, tokens, width = features.shape
        side = int(tokens**0.5)
        grid = features.view(frames, side, side, width).permute(0, 3, 1, 2)
        grid = nn.functional.avg_pool2d(grid, 2).permute(0, 2, 3, 1)  # (T, 2, 2, D): floor
        rows = []
        for frame in grid:  # add_token_per_grid: each row's tokens, then the newline
            for row in frame:
                rows += [row, self.image_newline[None]]
        return torch.cat(rows)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, video_token_id: int, video: torch.Tensor) -> torch.Tensor:
        """Qwen2 on the prompt with its video placeholders replaced by ``video`` tokens, in order."""
        embeds = self.language.get_input_embeddings()(input_ids.clamp_max(VOCAB - 1))
        positions = (input_ids[0] == video_token_id).nonzero()[:, 0]
        assert positions.numel() == video.shape[0], (positions.numel(), video.shape)
        embeds[0, positions] = video
        return self.language(inputs_embeds=embeds).logits


def llava_next_config(**overrides) -> dict:
    """config.json of a LLaVA-Video checkpoint: flat Qwen2 fields plus the mm_* fields."""
    config = dict(
        architectures=["LlavaQwenForCausalLM"], model_type="llava_qwen", torch_dtype="float32", **TEXT,
        mm_vision_tower="google/siglip-so400m-patch14-384", mm_hidden_size=36, mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_patch_merge_type="spatial_unpad",
        mm_spatial_pool_mode="average", mm_spatial_pool_stride=2, mm_newline_position="grid",
        image_aspect_ratio="anyres_max_9", image_grid_pinpoints=[[70, 70], [70, 140], [140, 70], [140, 140]],
        mm_use_im_start_end=False, mm_use_im_patch_token=False, use_mm_proj=True, add_faster_video=False,
    )
    config.update(overrides)
    return config


def write_original_llava_video(directory: Path, seed: int = 0, extra: dict | None = None) -> OriginalLlavaVideo:
    """Write a tiny LLaVA-Video directory: config.json, two safetensors shards + index, a
    ``rotary_emb.inv_freq`` buffer (older transformers saved them), the tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    original = OriginalLlavaVideo(seed)
    state = {name: t.contiguous().clone() for name, t in original.original_state_dict().items()}
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    state.update(extra or {})
    names = sorted(state)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for number, part in enumerate(halves, start=1):
        file = f"model-{number:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(llava_next_config()))
    build_tiny_tokenizer().save_pretrained(directory)
    return original


def write_vision_config(path: Path) -> Path:
    """A SiglipVisionConfig JSON for --vision-config (the tiny tower is no built-in name)."""
    path.write_text(json.dumps(dict(model_type="siglip_vision_model", **VISION)))
    return path
