"""LLaDA -> LLaMA/Qwen2 conversion, checked against a naive LLaDA forward written from its modeling code."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM

from spatialvlm.models.diffusion import DiffusionConfig, MaskedDiffusionGenerator, additive_mask, attention_allowed
from spatialvlm.convert.llada import convert_llada_checkpoint, llada_parameter_name, llada_to_hf_config

D_MODEL, N_HEADS, N_KV_HEADS, N_LAYERS, HIDDEN, VOCAB, THETA = 32, 4, 2, 2, 48, 40, 500000.0


def _write_llada_checkpoint(folder, qkv_bias=False, weight_tying=False, shards=2):
    """A tiny checkpoint in LLaDA's format: its parameter names, its config keys, several shards."""
    torch.manual_seed(0)
    head_dim = D_MODEL // N_HEADS
    config = {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "d_model": D_MODEL, "n_heads": N_HEADS,
        "n_kv_heads": N_KV_HEADS, "n_layers": N_LAYERS, "mlp_hidden_size": HIDDEN, "mlp_ratio": 4,
        "vocab_size": VOCAB, "embedding_size": VOCAB, "rope_theta": THETA, "rms_norm_eps": 1e-5,
        "max_sequence_length": 128, "block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu",
        "include_bias": False, "include_qkv_bias": qkv_bias, "weight_tying": weight_tying, "rope": True,
        "alibi": False, "mask_token_id": VOCAB - 1, "eos_token_id": 1, "pad_token_id": 1,
    }
    weights = {"model.transformer.wte.weight": torch.randn(VOCAB, D_MODEL),
               "model.transformer.ln_f.weight": 1 + 0.1 * torch.randn(D_MODEL)}
    if not weight_tying:
        weights["model.transformer.ff_out.weight"] = torch.randn(VOCAB, D_MODEL) / 4
    for n in range(N_LAYERS):
        p = f"model.transformer.blocks.{n}."
        shapes = {"q_proj": (D_MODEL, D_MODEL), "k_proj": (N_KV_HEADS * head_dim, D_MODEL),
                  "v_proj": (N_KV_HEADS * head_dim, D_MODEL), "attn_out": (D_MODEL, D_MODEL),
                  "ff_proj": (HIDDEN, D_MODEL), "up_proj": (HIDDEN, D_MODEL), "ff_out": (D_MODEL, HIDDEN)}
        for name, shape in shapes.items():
            weights[p + name + ".weight"] = torch.randn(shape) / math.sqrt(shape[1])
        if qkv_bias:
            for name in ("q_proj", "k_proj", "v_proj"):
                weights[p + name + ".bias"] = 0.1 * torch.randn(shapes[name][0])
        weights[p + "attn_norm.weight"] = 1 + 0.1 * torch.randn(D_MODEL)
        weights[p + "ff_norm.weight"] = 1 + 0.1 * torch.randn(D_MODEL)
    names = sorted(weights)
    for shard in range(shards):
        part = {name: weights[name].contiguous() for name in names[shard::shards]}
        save_file(part, str(folder / f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return config, weights


def _naive_llada_logits(weights, config, ids, allowed):
    """LLaDA's forward as modeling_llada.py writes it, with an explicit (T, T) attention pattern."""
    head_dim = config["d_model"] // config["n_heads"]
    groups = config["n_heads"] // config["n_kv_heads"]

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + config["rms_norm_eps"]))

    def rotate(t, sin, cos):
        t1, t2 = t[..., : head_dim // 2], t[..., head_dim // 2:]
        return t * cos + torch.cat([-t2, t1], -1) * sin

    def linear(x, prefix):
        bias = weights.get(prefix + ".bias")
        return x @ weights[prefix + ".weight"].T + (0 if bias is None else bias)

    seq = ids.shape[1]
    inv_freq = 1.0 / (config["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.arange(seq).float()[:, None] * inv_freq[None]
    angles = torch.cat([freqs, freqs], -1)
    sin, cos = angles.sin(), angles.cos()
    x = weights["model.transformer.wte.weight"][ids]
    for n in range(config["n_layers"]):
        p = f"model.transformer.blocks.{n}."
        h = rms(x, weights[p + "attn_norm.weight"])
        q = linear(h, p + "q_proj").view(1, seq, -1, head_dim).transpose(1, 2)
        k = linear(h, p + "k_proj").view(1, seq, -1, head_dim).transpose(1, 2)
        v = linear(h, p + "v_proj").view(1, seq, -1, head_dim).transpose(1, 2)
        q, k = rotate(q, sin, cos), rotate(k, sin, cos)
        k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, seq, -1)
        x = x + att @ weights[p + "attn_out.weight"].T
        h = rms(x, weights[p + "ff_norm.weight"])
        gate, up = h @ weights[p + "ff_proj.weight"].T, h @ weights[p + "up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ weights[p + "ff_out.weight"].T
    x = rms(x, weights["model.transformer.ln_f.weight"])
    head = weights.get("model.transformer.ff_out.weight", weights["model.transformer.wte.weight"])
    return x @ head.T


@pytest.mark.parametrize("qkv_bias,weight_tying", [(False, False), (True, True)])
def test_converted_model_matches_naive_llada_forward(tmp_path, qkv_bias, weight_tying):
    config, weights = _write_llada_checkpoint(tmp_path, qkv_bias=qkv_bias, weight_tying=weight_tying)
    model = convert_llada_checkpoint(tmp_path, output_dir=tmp_path / "converted")
    assert isinstance(model, Qwen2ForCausalLM if qkv_bias else LlamaForCausalLM)
    assert model.config.mask_token_id == VOCAB - 1
    ids = torch.randint(0, VOCAB - 1, (1, 11))
    positions = torch.arange(11)[None]
    # LLaDA proper is fully bidirectional: no causal mask at all.
    full = torch.ones(1, 11, 11, dtype=torch.bool)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=additive_mask(full, torch.float32), position_ids=positions).logits
    expected = _naive_llada_logits(weights, config, ids, full[0])
    torch.testing.assert_close(logits[0], expected[0], atol=2e-4, rtol=2e-4)
    # The causal default would differ: the bidirectional mask really is in effect.
    causal = _naive_llada_logits(weights, config, ids, torch.ones(11, 11, dtype=torch.bool).tril())
    assert (causal[0, :-1] - expected[0, :-1]).abs().max() > 1e-2

    # save_pretrained round trip gives the same model.
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "converted")
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=additive_mask(full, torch.float32), position_ids=positions).logits
    torch.testing.assert_close(again, logits)


@pytest.mark.parametrize("attention", [None, "prefix_dlm"])
def test_converted_model_drives_diffusion_like_naive(tmp_path, attention):
    config, weights = _write_llada_checkpoint(tmp_path, shards=1)
    model = convert_llada_checkpoint(tmp_path)
    prompt = torch.randint(0, VOCAB - 1, (1, 6))
    generator = MaskedDiffusionGenerator.from_model(
        model, DiffusionConfig(mask_token_id=VOCAB - 1, answer_length=4, steps=4, attention=attention)
    )
    # LLaDA is trained bidirectionally: that is the default; prefix-DLM (with its cache) only when asked.
    assert generator.config.attention == (attention or "bidirectional")
    assert generator.config.use_prefix_cache == (attention == "prefix_dlm")
    out = generator.generate(prompt, output_logits=True)
    # Step 0 sees prompt + 4 masks under that pattern: compare with the naive forward.
    ids = torch.cat([prompt, torch.full((1, 4), VOCAB - 1)], 1)
    allowed = attention_allowed(torch.ones(1, 6, dtype=torch.bool), 4, generator.config.attention)[0]
    expected = _naive_llada_logits(weights, config, ids, allowed)[0, 6:]
    torch.testing.assert_close(out.step_logits[0][0], expected, atol=2e-4, rtol=2e-4)


def test_names_and_config_errors():
    assert llada_parameter_name("model.transformer.blocks.7.attn_out.weight") == "model.layers.7.self_attn.o_proj.weight"
    assert llada_parameter_name("model.transformer.blocks.0.ff_proj.weight") == "model.layers.0.mlp.gate_proj.weight"
    assert llada_parameter_name("model.transformer.ff_out.weight") == "lm_head.weight"
    with pytest.raises(ValueError, match="unknown LLaDA parameter"):
        llada_parameter_name("model.transformer.blocks.0.att_proj.weight")
    base = {"d_model": 32, "n_heads": 4, "n_layers": 1, "vocab_size": 10, "rope_theta": 1e4}
    assert llada_to_hf_config(base).intermediate_size == 128  # mlp_ratio 4 by default
    with pytest.raises(ValueError, match="block_type"):
        llada_to_hf_config({**base, "block_type": "sequential"})
    with pytest.raises(ValueError, match="include_bias"):
        llada_to_hf_config({**base, "include_bias": True})
