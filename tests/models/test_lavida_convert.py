"""`spatialvlm convert lavida`: a tiny checkpoint in LaViDa's layout (key names from LaViDa's code),
converted, checked against independent forwards written here from LaViDa's / LLaDA's modeling code:
the bidirectional LLaDA language model, the (layer-deleted) SigLIP tower and the mlp2x_gelu projector."""

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from spatialvlm.convert.lavida import LAVIDA_SYSTEM_PROMPT, convert_lavida, lavida_parameter_name
from spatialvlm.models.diffusion import additive_mask

D, HEADS, KV_HEADS, LAYERS, MLP, VOCAB, THETA = 32, 4, 2, 2, 48, 300, 500000.0
V_WIDTH, V_HEADS, V_MLP, V_LAYERS_ORIGINAL, PATCH, IMAGE = 24, 2, 40, 3, 14, 42
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|mdm_mask|>"]
MASK_ID = 5  # <|mdm_mask|>'s id in the tiny tokenizer (LaViDa's is 126336)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["What is in the image? A dog on the grass."] * 8, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=SPECIALS[2:])


def _write_lavida(folder, extra=None, drop=None):
    """config.json (LLaDA fields + LLaVA mm_* fields), two safetensors shards + index, tokenizer."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlavaLladaForMaskedDiffusion"], "model_type": "llava_llada", "d_model": D,
        "n_heads": HEADS, "n_kv_heads": KV_HEADS, "n_layers": LAYERS, "mlp_hidden_size": MLP, "vocab_size": VOCAB,
        "embedding_size": VOCAB, "rope_theta": THETA, "rms_norm_eps": 1e-5, "max_sequence_length": 256,
        "block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu", "include_bias": False,
        "include_qkv_bias": False, "weight_tying": False, "rope": True, "alibi": False, "mask_token_id": MASK_ID,
        "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": V_WIDTH, "mm_vision_select_layer": -2,
        "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres", "image_grid_pinpoints": "[(42, 84), (84, 42), (84, 84)]",
    }
    w = {"model.transformer.wte.weight": torch.randn(VOCAB, D),
         "model.transformer.ln_f.weight": 1 + 0.1 * torch.randn(D),
         "model.transformer.ff_out.weight": torch.randn(VOCAB, D) / 4,
         "model.mm_projector.0.weight": torch.randn(D, V_WIDTH) / 5, "model.mm_projector.0.bias": 0.1 * torch.randn(D),
         "model.mm_projector.2.weight": torch.randn(D, D) / 6, "model.mm_projector.2.bias": 0.1 * torch.randn(D),
         "model.image_newline": torch.randn(D)}
    head_dim = D // HEADS
    for n in range(LAYERS):
        p = f"model.transformer.blocks.{n}."
        for name, shape in {"q_proj": (D, D), "k_proj": (KV_HEADS * head_dim, D), "v_proj": (KV_HEADS * head_dim, D),
                            "attn_out": (D, D), "ff_proj": (MLP, D), "up_proj": (MLP, D), "ff_out": (D, MLP)}.items():
            w[p + name + ".weight"] = torch.randn(shape) / math.sqrt(shape[1])
        w[p + "attn_norm.weight"] = 1 + 0.1 * torch.randn(D)
        w[p + "ff_norm.weight"] = 1 + 0.1 * torch.randn(D)
    v = "model.vision_tower.vision_tower.vision_model."
    w[v + "embeddings.patch_embedding.weight"] = torch.randn(V_WIDTH, 3, PATCH, PATCH) / 20
    w[v + "embeddings.patch_embedding.bias"] = 0.1 * torch.randn(V_WIDTH)
    w[v + "embeddings.position_embedding.weight"] = torch.randn((IMAGE // PATCH) ** 2, V_WIDTH) / 3
    # LaViDa deletes so400m's last layer before saving: the checkpoint holds original − 1 layers.
    for n in range(V_LAYERS_ORIGINAL - 1):
        p = f"{v}encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[p + f"self_attn.{name}.weight"] = torch.randn(V_WIDTH, V_WIDTH) / math.sqrt(V_WIDTH)
            w[p + f"self_attn.{name}.bias"] = 0.1 * torch.randn(V_WIDTH)
        w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"] = torch.randn(V_MLP, V_WIDTH) / 5, 0.1 * torch.randn(V_MLP)
        w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"] = torch.randn(V_WIDTH, V_MLP) / 6, 0.1 * torch.randn(V_WIDTH)
        for norm in ("layer_norm1", "layer_norm2"):
            w[p + norm + ".weight"], w[p + norm + ".bias"] = 1 + 0.1 * torch.randn(V_WIDTH), 0.1 * torch.randn(V_WIDTH)
    w[v + "post_layernorm.weight"], w[v + "post_layernorm.bias"] = torch.ones(V_WIDTH), torch.zeros(V_WIDTH)
    w.update(extra or {})
    for name in drop or ():
        w.pop(name)
    names = sorted(w)
    weight_map = {}
    for shard in range(2):
        file = f"model-{shard + 1:05d}-of-00002.safetensors"
        save_file({n: w[n].contiguous() for n in names[shard::2]}, str(folder / file))
        weight_map.update(dict.fromkeys(names[shard::2], file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    _tokenizer().save_pretrained(folder)
    vision_file = folder / "siglip_config.json"
    vision_file.write_text(json.dumps({
        "model_type": "siglip_vision_model", "hidden_size": V_WIDTH, "intermediate_size": V_MLP,
        "num_attention_heads": V_HEADS, "num_hidden_layers": V_LAYERS_ORIGINAL, "patch_size": PATCH,
        "image_size": IMAGE, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}))
    return config, w, vision_file


def _llada_logits(w, embeds):
    """LLaDA's LLaDALlamaBlock stack (modeling_llada.py): RMSNorm, RoPE on all positions, no mask."""
    head_dim, groups, seq = D // HEADS, HEADS // KV_HEADS, embeds.shape[1]

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    inv_freq = 1.0 / (THETA ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.arange(seq).float()[:, None] * inv_freq[None]
    angles = torch.cat([angles, angles], -1)

    def rope(t):
        half = head_dim // 2
        return t * angles.cos() + torch.cat([-t[..., half:], t[..., :half]], -1) * angles.sin()

    x = embeds
    for n in range(LAYERS):
        p = f"model.transformer.blocks.{n}."
        h = rms(x, w[p + "attn_norm.weight"])
        q, k, v = (
            (h @ w[p + f"{name}.weight"].T).view(1, seq, -1, head_dim).transpose(1, 2)
            for name in ("q_proj", "k_proj", "v_proj")
        )
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(head_dim)).softmax(-1) @ v
        x = x + att.transpose(1, 2).reshape(1, seq, D) @ w[p + "attn_out.weight"].T
        h = rms(x, w[p + "ff_norm.weight"])
        x = x + (F.silu(h @ w[p + "ff_proj.weight"].T) * (h @ w[p + "up_proj.weight"].T)) @ w[p + "ff_out.weight"].T
    return rms(x, w["model.transformer.ln_f.weight"]) @ w["model.transformer.ff_out.weight"].T


def _lavida_image_features(w, pixels):
    """LaViDa's SigLipVisionTower (last layer deleted, hidden_states[-1]) then mm_projector (mlp2x_gelu)."""
    v = "model.vision_tower.vision_tower.vision_model."
    x = F.conv2d(pixels, w[v + "embeddings.patch_embedding.weight"], w[v + "embeddings.patch_embedding.bias"],
                 stride=PATCH).flatten(2).transpose(1, 2)
    x = x + w[v + "embeddings.position_embedding.weight"]
    head_dim, seq = V_WIDTH // V_HEADS, x.shape[1]
    for n in range(V_LAYERS_ORIGINAL - 1):
        p = f"{v}encoder.layers.{n}."

        def lin(t, name):
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        h = F.layer_norm(x, (V_WIDTH,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], 1e-6)
        q, k, val = (lin(h, f"self_attn.{m}").view(1, seq, V_HEADS, head_dim).transpose(1, 2) for m in ("q_proj", "k_proj", "v_proj"))
        att = ((q @ k.transpose(-1, -2)) * head_dim**-0.5).softmax(-1) @ val
        x = x + lin(att.transpose(1, 2).reshape(1, seq, V_WIDTH), "self_attn.out_proj")
        h = F.layer_norm(x, (V_WIDTH,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], 1e-6)
        x = x + lin(F.gelu(lin(h, "mlp.fc1"), approximate="tanh"), "mlp.fc2")
    h = F.gelu(x @ w["model.mm_projector.0.weight"].T + w["model.mm_projector.0.bias"])
    return h @ w["model.mm_projector.2.weight"].T + w["model.mm_projector.2.bias"]


def test_cli_converts_lavida_and_matches_reference_forwards(tmp_path):
    from transformers import AutoTokenizer

    from spatialvlm.models.shirgx_vlm import load_shirgx_base

    _, w, vision_file = _write_lavida(tmp_path / "lavida")
    result = subprocess.run(
        [sys.executable, "-m", "spatialvlm.cli", "convert", "lavida", str(tmp_path / "lavida"), str(tmp_path / "hf"),
         "--vision-config", str(vision_file)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "LaViDa" in result.stdout and "hidden_states[2]" in result.stdout

    model = load_shirgx_base(tmp_path / "hf").eval()  # offline, the SHIRG-X path's own loader
    config = model.config
    assert config.vision_config.num_hidden_layers == 2 and config.vision_feature_layer == 2
    assert config.text_config.mask_token_id == MASK_ID
    assert config.text_config.diffusion_training_attention == "bidirectional"

    ids = torch.randint(0, 280, (1, 13))
    full = torch.ones(1, 13, 13, dtype=torch.bool)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=additive_mask(full, torch.float32),
                       position_ids=torch.arange(13)[None]).logits
    torch.testing.assert_close(logits, _llada_logits(w, w["model.transformer.wte.weight"][ids]), atol=1e-4, rtol=1e-4)

    pixels = torch.randn(1, 3, IMAGE, IMAGE)
    with torch.no_grad():
        hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
        features = model.model.multi_modal_projector(hidden[config.vision_feature_layer])
    torch.testing.assert_close(features, _lavida_image_features(w, pixels), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.model.image_newline, w["model.image_newline"])

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    # The first id past the source vocabulary, a row of the embedding table no text uses.
    assert config.image_token_id == image_id == len(_tokenizer()) and image_id < VOCAB
    assert tokenizer.mask_token_id == MASK_ID and tokenizer.eos_token == "<|eot_id|>"
    assert model.generation_config.eos_token_id[0] == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    # conv_llava_llada: system prompt, LLaMA-3 headers, "<image>\n" + question, assistant header open.
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    expected = ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n" + LAVIDA_SYSTEM_PROMPT
                + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected


def test_every_tensor_carried_or_conversion_fails(tmp_path):
    _, _, vision_file = _write_lavida(tmp_path / "extra", extra={"model.vision_resampler.proj.weight": torch.ones(2)})
    with pytest.raises(ValueError, match="model.vision_resampler.proj.weight"):
        convert_lavida(tmp_path / "extra", tmp_path / "out1", vision_config=vision_file, progress=False)
    missing = "model.transformer.blocks.1.up_proj.weight"
    _, _, vision_file = _write_lavida(tmp_path / "missing", drop=[missing])
    with pytest.raises(ValueError, match="layers.1.mlp.up_proj"):
        convert_lavida(tmp_path / "missing", tmp_path / "out2", vision_config=vision_file, progress=False)
    # Not so400m and no --vision-config: the heads cannot be read from the weights.
    _write_lavida(tmp_path / "novision")
    with pytest.raises(ValueError, match="--vision-config"):
        convert_lavida(tmp_path / "novision", tmp_path / "out3", progress=False)
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_names():
    assert lavida_parameter_name("model.transformer.blocks.3.ff_proj.weight") == \
        "model.language_model.layers.3.mlp.gate_proj.weight"
    assert lavida_parameter_name("model.transformer.ff_out.weight") == "lm_head.weight"
    assert lavida_parameter_name("model.mm_projector.2.bias") == "model.multi_modal_projector.linear_2.bias"
    assert lavida_parameter_name("model.vision_tower.vision_tower.vision_model.post_layernorm.weight") == \
        "model.vision_tower.vision_model.post_layernorm.weight"
    with pytest.raises(ValueError, match="unknown LaViDa tensor"):
        lavida_parameter_name("model.mm_projector.1.weight")


def test_real_lavida_dims_map_onto_the_model_on_the_meta_device():
    """LaViDa-LLaDA-8B's shapes (LLaDA-8B-Instruct config, so400m minus its last layer): every tensor
    has a place of the right shape, the tower is inferred as so400m, the projector reads layer 26."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from spatialvlm.convert.common import check_against_model
    from spatialvlm.convert.lavida import LavidaLayout, lavida_to_hf_config, lavida_vision_config

    d, layers, mlp, vocab = 4096, 32, 12288, 126464
    shapes = {"model.transformer.wte.weight": (vocab, d), "model.transformer.ln_f.weight": (d,),
              "model.transformer.ff_out.weight": (vocab, d), "model.mm_projector.0.weight": (d, 1152),
              "model.mm_projector.0.bias": (d,), "model.mm_projector.2.weight": (d, d),
              "model.mm_projector.2.bias": (d,), "model.image_newline": (d,)}
    for n in range(layers):
        p = f"model.transformer.blocks.{n}."
        shapes.update({p + "attn_norm.weight": (d,), p + "ff_norm.weight": (d,), p + "q_proj.weight": (d, d),
                       p + "k_proj.weight": (d, d), p + "v_proj.weight": (d, d), p + "attn_out.weight": (d, d),
                       p + "ff_proj.weight": (mlp, d), p + "up_proj.weight": (mlp, d), p + "ff_out.weight": (d, mlp)})
    v = "model.vision_tower.vision_tower.vision_model."
    shapes.update({v + "embeddings.patch_embedding.weight": (1152, 3, 14, 14), v + "embeddings.patch_embedding.bias": (1152,),
                   v + "embeddings.position_embedding.weight": (729, 1152), v + "post_layernorm.weight": (1152,),
                   v + "post_layernorm.bias": (1152,)})
    for n in range(26):
        p = f"{v}encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{name}.weight"], shapes[p + f"self_attn.{name}.bias"] = (1152, 1152), (1152,)
        shapes.update({p + "mlp.fc1.weight": (4304, 1152), p + "mlp.fc1.bias": (4304,), p + "mlp.fc2.weight": (1152, 4304),
                       p + "mlp.fc2.bias": (1152,), p + "layer_norm1.weight": (1152,), p + "layer_norm1.bias": (1152,),
                       p + "layer_norm2.weight": (1152,), p + "layer_norm2.bias": (1152,)})
    llada = {"model_type": "llava_llada", "d_model": d, "n_heads": 32, "n_kv_heads": 32, "n_layers": layers,
             "mlp_hidden_size": mlp, "vocab_size": vocab, "embedding_size": vocab, "rope_theta": 500000.0,
             "rms_norm_eps": 1e-5, "max_sequence_length": 4096, "block_type": "llama", "weight_tying": False,
             "mask_token_id": 126336, "mm_projector_type": "mlp2x_gelu",
             "image_grid_pinpoints": "[(384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152)]"}
    siglip, original = lavida_vision_config(shapes)
    assert (siglip.num_hidden_layers, original, siglip.num_attention_heads, siglip.image_size) == (26, 27, 16, 384)
    config = lavida_to_hf_config(llada, siglip, original, image_token_id=126349)
    assert config.vision_feature_layer == 26 and config.text_config.mask_token_id == 126336
    assert config.image_grid_pinpoints[-1] == [384, 1152]
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    layout = LavidaLayout.of(model)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    check_against_model({lavida_parameter_name(n, layout): s for n, s in shapes.items()}, expected, lambda name: False)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == sum(p.numel() for p in model.parameters())
