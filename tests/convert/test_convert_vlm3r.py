"""`spatialvlm convert vlm3r`: a VLM-3R release (peft LoRA on full LLaVA-NeXT module names,
non_lora_trainables.bin with the projector and fusion block) on its LLaVA-Video base, checked
against a reference forward written here from VLM-3R's code: SigLIP → CrossAttentionFusion over
[camera; patches] → projector → 2×2 average pooling → a newline per row → Qwen2 with LoRA."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from llava_next_fixtures import write_original_llava_video, write_vision_config
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
from vlm3r_reference import VLM3RCrossAttentionFusion  # noqa: E402

from spatialvlm.convert import convert_vlm3r  # noqa: E402
from spatialvlm.models.inference import load_vlm2  # noqa: E402

RANK, ALPHA, GEOMETRY = 4, 8, 24
TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def write_release(folder, select_feature="all", fusion_block="cross_attention", seed=5):
    """What VLM-3R's train.py saves with --lora_enable: adapter (peft keys, full module names as
    find_all_linear_names collects them), non_lora_trainables.bin, config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    fusion = VLM3RCrossAttentionFusion(36, GEOMETRY)
    with torch.no_grad():
        for module in fusion.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    projector = nn.Sequential(nn.Linear(36, 64), nn.GELU(), nn.Linear(64, 64))
    lora, targets = {}, []
    shapes = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
              "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64), "mlp.down_proj": (64, 128)}
    for layer in range(2):
        for target in TARGETS:
            name = f"model.layers.{layer}.{target}"
            out_features, in_features = shapes[target]
            targets.append(name)
            lora[f"base_model.model.{name}.lora_A.weight"] = torch.randn(RANK, in_features) / 8
            lora[f"base_model.model.{name}.lora_B.weight"] = torch.randn(out_features, RANK) / 8
    save_file(lora, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = dict(peft_type="LORA", task_type="CAUSAL_LM", r=RANK, lora_alpha=ALPHA, lora_dropout=0.05,
                          bias="none", target_modules=targets, base_model_name_or_path="LLaVA-Video-7B-Qwen2",
                          fan_in_fan_out=False, use_rslora=False, use_dora=False, modules_to_save=None)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    non_lora = {f"base_model.model.model.mm_projector.{n}": t for n, t in projector.state_dict().items()}
    non_lora.update({f"base_model.model.model.fusion_block.{n}": t for n, t in fusion.state_dict().items()})
    torch.save(non_lora, folder / "non_lora_trainables.bin")
    from llava_next_fixtures import llava_next_config

    config = llava_next_config(fusion_block=fusion_block, spatial_tower="cut3r", spatial_tower_select_feature=select_feature,
                               spatial_feature_dim=GEOMETRY, tune_fusion_block=True)
    (folder / "config.json").write_text(json.dumps(config))
    return fusion.eval(), projector, lora


def reference_logits(original, fusion, projector, lora, input_ids, video_token_id, frames, camera, patches, with_camera=True):
    """VLM-3R's forward: fusion before the projector, the release's projector, LoRA on the LM."""
    original.mm_projector.load_state_dict(projector.state_dict())
    keys = torch.cat([camera, patches], 1) if with_camera else patches  # llava_arch: [camera_tokens, patch_tokens]
    hooks = []
    for name, module in original.language.named_modules():
        a = lora.get(f"base_model.model.{name}.lora_A.weight")
        if a is not None:
            b = lora[f"base_model.model.{name}.lora_B.weight"]
            hooks.append(module.register_forward_hook(lambda m, args, out, a=a, b=b: out + ALPHA / RANK * F.linear(F.linear(args[0], a), b)))
    try:
        video = original.video_tokens(frames, fuse=lambda features: fusion(features, keys))
        return original.logits(input_ids, video_token_id, video)
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm3r")
    original = write_original_llava_video(root / "base")
    write_vision_config(root / "siglip.json")
    fusion, projector, lora = write_release(root / "release")
    torch.manual_seed(2)
    inputs = dict(frames=torch.rand(2, 3, 70, 70) * 2 - 1, camera=torch.randn(2, 1, GEOMETRY), patches=torch.randn(2, 25, GEOMETRY))
    return root, original, fusion, projector, lora, inputs


def _logits(model, processor, inputs):
    batch = processor(processor.video_prompt("How far is the chair from the door?"), videos=inputs["frames"])
    logits = model(**batch, geometry_tokens=inputs["patches"][None], camera_tokens=inputs["camera"][:, 0][None]).logits
    return batch, logits


def test_merged_release_matches_vlm3r(setup):
    root, original, fusion, projector, lora, inputs = setup
    result = subprocess.run(
        [sys.executable, "-m", "spatialvlm.cli", "convert", "vlm3r", root / "merged", "--base", root / "base",
         "--adapter", root / "release", "--vision-config", root / "siglip.json", "--merge-lora"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "LoRA on 14 modules (scale α/r = 2): merged" in result.stdout and "[camera; patches]" in result.stdout
    model, processor = load_vlm2(root / "merged")
    assert model.config.use_spatial_fusion and not model.config.use_viewpoint_alignment
    assert model.vlm2_new_weights == []  # the fusion block came from the release
    batch, logits = _logits(model, processor, inputs)
    reference = reference_logits(original, fusion, projector, lora, batch["input_ids"], processor.video_token_id, **inputs)
    assert (logits - reference).abs().max() < 1e-4
    # without the LoRA (or with the base projector) the outputs differ: the test can fail
    plain = original.logits(batch["input_ids"], processor.video_token_id, original.video_tokens(inputs["frames"]))
    assert (logits - plain).abs().max() > 1e-2
    # trained over [camera; patches]: a forward without camera tokens is refused, not run on patches alone
    with pytest.raises(ValueError, match=r"camera_tokens \(B, T, 24\) are missing"):
        model(**batch, geometry_tokens=inputs["patches"][None])


def test_adapter_kept_on_our_names_and_applied_at_load(setup):
    root, original, fusion, projector, lora, inputs = setup
    convert_vlm3r(root / "base", root / "release", root / "adapter", vision_config=root / "siglip.json", progress=False)
    adapter = json.loads((root / "adapter" / "lora_adapter" / "adapter_config.json").read_text())
    assert "model.language_model.layers.1.mlp.down_proj" in adapter["target_modules"] and len(adapter["target_modules"]) == 14
    model, processor = load_vlm2(root / "adapter")
    batch, logits = _logits(model, processor, inputs)
    reference = reference_logits(original, fusion, projector, lora, batch["input_ids"], processor.video_token_id, **inputs)
    assert (logits - reference).abs().max() < 1e-4
    # the weights alone are the base LM; peft attaches the adapter on our module names
    from peft import PeftModel

    from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration

    bare = VLM2ForConditionalGeneration.from_pretrained(root / "adapter", load_adapter=False).eval()
    assert (_logits(bare, processor, inputs)[1] - reference).abs().max() > 1e-3
    attached = PeftModel.from_pretrained(bare, root / "adapter" / "lora_adapter").eval()
    assert (_logits(attached.base_model.model, processor, inputs)[1] - reference).abs().max() < 1e-4


def test_patch_tokens_release_on_a_converted_base(setup, tmp_path):
    root, original, _, _, _, inputs = setup
    from spatialvlm.convert import convert_llava_video

    convert_llava_video(root / "base", tmp_path / "converted_base", vision_config=root / "siglip.json", progress=False)
    fusion, projector, lora = write_release(tmp_path / "release", select_feature="patch_tokens", seed=6)
    convert_vlm3r(tmp_path / "converted_base", tmp_path / "release", tmp_path / "out", merge_lora=True, progress=False)
    model, processor = load_vlm2(tmp_path / "out")
    assert model.config.fusion_camera_as_key is False
    batch = processor(processor.video_prompt("Where?"), videos=inputs["frames"])
    logits = model(**batch, geometry_tokens=inputs["patches"][None]).logits
    reference = reference_logits(original, fusion, projector, lora, batch["input_ids"], processor.video_token_id, **inputs, with_camera=False)
    assert (logits - reference).abs().max() < 1e-4


@pytest.mark.parametrize("fusion_block", ["transformer", "concat_mlp"])
def test_unimplemented_fusion_types_fail_naming_them(setup, tmp_path, fusion_block):
    root = setup[0]
    write_release(tmp_path / "release", fusion_block=fusion_block)
    with pytest.raises(ValueError, match=f"fusion_block '{fusion_block}' is not implemented"):
        convert_vlm3r(root / "base", tmp_path / "release", tmp_path / "out", vision_config=root / "siglip.json")


def test_release_folder_is_refused_by_the_loader(setup):
    root = setup[0]
    with pytest.raises(ValueError, match="spatialvlm convert vlm3r --base"):
        load_vlm2(root / "release")


def test_ask_a_converted_vlm3r_with_its_precomputed_features(setup, tmp_path):
    """The user's path: convert, then `spatialvlm ask --geometry scene.pt` (VLM-3R's feature file)."""
    root = setup[0]
    from spatialvlm.models.tiny import make_tiny_video_sample

    if not (root / "merged" / "config.json").exists():
        convert_vlm3r(root / "base", root / "release", root / "merged", vision_config=root / "siglip.json", merge_lora=True, progress=False)
    video, _, _ = make_tiny_video_sample(tmp_path, num_frames=8)
    torch.save({"camera_tokens": torch.randn(4, 1, GEOMETRY), "patch_tokens": torch.randn(4, 25, GEOMETRY)}, tmp_path / "scene.pt")
    result = subprocess.run(
        [sys.executable, "-m", "spatialvlm.cli", "ask", "--video", video, "--geometry", tmp_path / "scene.pt",
         "--model", root / "merged", "--num-frames", "4", "--max-new-tokens", "3", "--no-progress", "How many chairs?"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_vlm3r_dry_run_plans_the_fusion(setup):
    root, _, fusion, _, _, _ = setup
    from spatialvlm.convert import plan_vlm3r

    plan = plan_vlm3r(root / "base", root / "release", vision_config=root / "siglip.json", frames=2)
    assert plan.parameters["spatial_fusion"] == sum(p.numel() for p in fusion.parameters())
    assert plan.video_tokens == 2 * 6
