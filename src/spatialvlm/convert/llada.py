"""Convert LLaDA checkpoints to a transformers LLaMA/Qwen2-architecture stand-in.

Hugging Face has no LLaDA class; LLaDA's checkpoints (``GSAI-ML/LLaDA-8B-*``) ship their own
``modeling_llada.py``. Its ``LLaDALlamaBlock`` is a LLaMA block run with bidirectional attention:

=====================================================  ==========================================
LLaDA parameter                                        transformers parameter
=====================================================  ==========================================
``model.transformer.wte.weight``                       ``model.embed_tokens.weight``
``model.transformer.blocks.N.attn_norm.weight``        ``model.layers.N.input_layernorm.weight``
``model.transformer.blocks.N.{q,k,v}_proj.*``          ``model.layers.N.self_attn.{q,k,v}_proj.*``
``model.transformer.blocks.N.attn_out.weight``         ``model.layers.N.self_attn.o_proj.weight``
``model.transformer.blocks.N.ff_norm.weight``          ``model.layers.N.post_attention_layernorm.weight``
``model.transformer.blocks.N.ff_proj.weight``          ``model.layers.N.mlp.gate_proj.weight`` (SiLU)
``model.transformer.blocks.N.up_proj.weight``          ``model.layers.N.mlp.up_proj.weight``
``model.transformer.blocks.N.ff_out.weight``           ``model.layers.N.mlp.down_proj.weight``
``model.transformer.ln_f.weight``                      ``model.norm.weight``
``model.transformer.ff_out.weight``                    ``lm_head.weight`` (tied to wte if
                                                       ``weight_tying``)
=====================================================  ==========================================

``convert_lavida`` (``spatialvlm.convert.lavida``) builds on this module for LaViDa's VLM layout.

LLaDA's rotary embedding is LLaMA's (``rotate_half``, ``rope_theta``, head dim ``d_model / n_heads``)
and its RMSNorm is LLaMA's, so the mapping is a renaming. The converted model is causal by default in
transformers: run it through ``MaskedDiffusionGenerator`` (which passes a bidirectional mask).
Variants with no LLaMA equivalent (fused ``att_proj`` sequential blocks, biases on every linear,
LayerNorm, GELU, q/k norms, ALiBi, scaled embeddings or logits) are refused with a clear error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

__all__ = [
    "llada_to_hf_config",
    "llada_parameter_name",
    "convert_llada_state_dict",
    "convert_llada_checkpoint",
    "LLADA_BLOCK_RENAMES",
]

LLADA_BLOCK_RENAMES = {
    "attn_norm": "input_layernorm",
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_norm": "post_attention_layernorm",
    "ff_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}
_TOP_RENAMES = {
    "model.transformer.wte.weight": "model.embed_tokens.weight",
    "model.transformer.ln_f.weight": "model.norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",
}
_BLOCK_PATTERN = re.compile(r"^model\.transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)$")

# Config values whose LLaDA meaning has no LLaMA counterpart: (key, value LLaMA needs).
_REQUIRED = (
    ("block_type", "llama"),
    ("layer_norm_type", "rms"),
    ("activation_type", "silu"),
    ("include_bias", False),
    ("alibi", False),
    ("rope", True),
    ("attention_layer_norm", False),
    ("input_emb_norm", False),
    ("scale_logits", False),
    ("block_group_size", 1),
)


def llada_to_hf_config(llada_config: Mapping[str, Any]) -> LlamaConfig | Qwen2Config:
    """LLaDA ``config.json`` contents -> the stand-in's config.

    LLaMA when q/k/v carry no bias; Qwen2 (which has q/k/v biases and none elsewhere) when
    ``include_qkv_bias`` is set. ``mask_token_id`` is kept on the config for the diffusion decoder.
    """
    for key, needed in _REQUIRED:
        if key in llada_config and llada_config[key] != needed:
            raise ValueError(
                f"LLaDA config has {key}={llada_config[key]!r}; only {needed!r} maps onto a LLaMA/Qwen2 block"
            )
    d_model, n_heads = llada_config["d_model"], llada_config["n_heads"]
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    n_kv_heads = llada_config.get("n_kv_heads") or n_heads
    hidden = llada_config.get("mlp_hidden_size") or llada_config.get("mlp_ratio", 4) * d_model
    common = dict(
        vocab_size=llada_config.get("embedding_size") or llada_config["vocab_size"],
        hidden_size=d_model,
        intermediate_size=hidden,
        num_hidden_layers=llada_config["n_layers"],
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=d_model // n_heads,
        hidden_act="silu",
        max_position_embeddings=llada_config.get("max_sequence_length", 4096),
        rms_norm_eps=llada_config.get("rms_norm_eps", 1e-5),
        rope_parameters={"rope_type": "default", "rope_theta": float(llada_config.get("rope_theta", 10000.0))},
        tie_word_embeddings=bool(llada_config.get("weight_tying", False)),
        pad_token_id=llada_config.get("pad_token_id"),
        eos_token_id=llada_config.get("eos_token_id"),
        bos_token_id=llada_config.get("bos_token_id"),
    )
    if llada_config.get("include_qkv_bias", False):
        config = Qwen2Config(**common)
    else:
        config = LlamaConfig(attention_bias=False, mlp_bias=False, **common)
    config.mask_token_id = llada_config.get("mask_token_id")
    # LLaDA is trained fully bidirectional; the diffusion decoder and the training task read this.
    config.diffusion_training_attention = "bidirectional"
    return config


def llada_parameter_name(name: str) -> str:
    """One LLaDA parameter name -> its transformers name (see the module table)."""
    if name in _TOP_RENAMES:
        return _TOP_RENAMES[name]
    match = _BLOCK_PATTERN.match(name)
    if match is None or match.group(2) not in LLADA_BLOCK_RENAMES:
        raise ValueError(f"unknown LLaDA parameter {name!r}")
    layer, module, kind = match.groups()
    return f"model.layers.{layer}.{LLADA_BLOCK_RENAMES[module]}.{kind}"


def convert_llada_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a LLaDA state dict to the stand-in's names (tensors are shared, not copied)."""
    return {llada_parameter_name(name): tensor for name, tensor in state_dict.items()}


def _iter_llada_tensors(checkpoint_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    shards = sorted(checkpoint_dir.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors files in {checkpoint_dir}")
    for shard in shards:
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)


def convert_llada_checkpoint(
    checkpoint_dir: str | Path,
    output_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """Load a LLaDA checkpoint (``config.json`` + safetensors shards) as a LLaMA/Qwen2 model.

    The model is built on the meta device and the renamed tensors are assigned shard by shard, so
    memory holds one copy of the weights. With ``output_dir`` the result is also written with
    ``save_pretrained`` (then loadable with ``AutoModelForCausalLM.from_pretrained``).

    Args:
        checkpoint_dir: folder with LLaDA's ``config.json`` and ``*.safetensors``.
        output_dir: where to save the converted model, or ``None``.
        dtype: cast weights to this dtype (default: keep the checkpoint's).

    Returns:
        a ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` in eval mode.
    """
    checkpoint_dir = Path(checkpoint_dir)
    config_path = checkpoint_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {checkpoint_dir}")
    config = llada_to_hf_config(json.loads(config_path.read_text()))
    model_class = Qwen2ForCausalLM if isinstance(config, Qwen2Config) else LlamaForCausalLM
    with torch.device("meta"):
        model = model_class(config)
    state = {}
    for name, tensor in _iter_llada_tensors(checkpoint_dir):
        state[llada_parameter_name(name)] = tensor if dtype is None else tensor.to(dtype)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"LLaDA checkpoint does not match its config: missing {missing}, unexpected {unexpected}")
    # Rotary frequencies are computed buffers, not weights: rebuild them off the meta device.
    model.model.rotary_emb = type(model.model.rotary_emb)(config)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    if output_dir is not None:
        model.save_pretrained(output_dir)
    return model
