"""Tunable parts and LoRA: gradients reach exactly the parts that train, LoRA sits on Qwen2's linears."""

from __future__ import annotations

import json

import pytest
import torch

from spatialvlm.models.processing import VLM2Processor
from spatialvlm.models.vlm2 import VLM2ForConditionalGeneration, tiny_vlm2_config
from spatialvlm.train import DataArguments, language_model_lora_config, prepare_tunable_model
from spatialvlm.train.arguments import QWEN2_LORA_TARGETS
from spatialvlm.train.tasks.vlm2 import VLM2_PART_MAP, VideoConversationCollator, VideoConversationDataset
from train_fixtures import save_tiny_base, write_dataset

FLAGS = dict(use_spatial_fusion=True, use_dual_memory=True)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A real training batch: two videos of different lengths with geometry, through the dataset."""
    root = tmp_path_factory.mktemp("tunable")
    save_tiny_base(root / "base", **FLAGS)
    data = write_dataset(root, num_samples=2, frame_counts=[4, 3])
    processor = VLM2Processor.from_pretrained(root / "base")
    records = json.loads(data.read_text())
    dataset = VideoConversationDataset(records, processor, DataArguments(num_frames=4), tiny_vlm2_config(**FLAGS), root)
    batch = VideoConversationCollator(processor.tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert batch["video_frame_mask"].tolist() == [[True] * 4, [True, True, True, False]]
    return batch


def fresh_model() -> VLM2ForConditionalGeneration:
    torch.manual_seed(0)
    return VLM2ForConditionalGeneration(tiny_vlm2_config(**FLAGS))


def lora_config():
    return language_model_lora_config("model.language_model", QWEN2_LORA_TARGETS, r=4, alpha=8, dropout=0.0)


def expected_trainable(model, parts, lora: bool) -> set[str]:
    """Names that should train, computed from the module tree rather than the part machinery."""
    modules = {
        "fusion": model.model.spatial_fusion,
        "dual_memory": model.model.dual_memory,
        "mm_mlp_adapter": model.model.multi_modal_projector,
        "mm_vision_tower": model.model.vision_tower,
    }
    prefix = {"fusion": "model.spatial_fusion.", "dual_memory": "model.dual_memory.",
              "mm_mlp_adapter": "model.multi_modal_projector.", "mm_vision_tower": "model.vision_tower."}
    names = set()
    for part in parts:
        if part == "mm_language_model":
            continue
        names |= {prefix[part] + name for name, _ in modules[part].named_parameters()}
        if part == "mm_mlp_adapter":
            names.add("model.image_newline")
    if "mm_language_model" in parts and not lora:
        names |= {"model.language_model." + n for n, _ in model.model.language_model.named_parameters()}
        names.add("lm_head.weight")
    return names


@pytest.fixture(scope="module")
def reference_gradients(batch):
    """Every parameter's gradient with the whole model trainable (None: the forward skips it, e.g.
    SigLIP's unused post-layernorm or the pose encoder when camera tokens are given)."""
    model = fresh_model().eval()
    model(**batch).loss.backward()
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    "parts, lora",
    [
        (("fusion", "dual_memory", "mm_mlp_adapter"), True),
        (("dual_memory",), False),
        (("mm_language_model",), False),
        (("fusion", "mm_vision_tower"), False),
    ],
)
def test_gradients_reach_exactly_the_tunable_parts(batch, reference_gradients, parts, lora):
    base = fresh_model()
    expected = expected_trainable(base, parts, lora)
    model, summary = prepare_tunable_model(base, parts, VLM2_PART_MAP, lora_config=lora_config() if lora else None)
    model.eval()  # no dropout, so gradients compare exactly with the reference run
    model(**batch).loss.backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    base_trainable = {n.removeprefix("base_model.model.").replace(".base_layer", "") for n in trainable if ".lora_" not in n}
    assert base_trainable == expected
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None, name
        elif ".lora_" in name:
            assert parameter.grad is not None, name
            # B starts at zero, so only B moves on the first step (A's gradient is B-weighted).
            if "lora_B" in name:
                assert bool(parameter.grad.abs().sum() > 0), name
        else:
            reference = reference_gradients[name.removeprefix("base_model.model.")]
            if reference is None:
                assert parameter.grad is None, name
            else:
                # Freezing other parts (or adding zero-initialised adapters) leaves this gradient unchanged.
                assert parameter.grad is not None, f"{name} trains but got no gradient"
                torch.testing.assert_close(parameter.grad, reference, rtol=1e-4, atol=1e-6)
    used = {n for n in base_trainable if reference_gradients[n] is not None and bool(reference_gradients[n].abs().sum() > 0)}
    for part in parts:
        if part != "mm_language_model" or not lora:
            assert any(n.startswith(VLM2_PART_MAP[part]) for n in used), f"no gradient signal reaches {part}"
    assert bool(set(n for n in trainable if ".lora_" in n)) == lora
    assert summary.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_lora_sits_on_every_qwen2_linear_and_nowhere_else():
    model, summary = prepare_tunable_model(fresh_model(), ("mm_mlp_adapter",), VLM2_PART_MAP, lora_config=lora_config())
    adapted = {
        name.removeprefix("base_model.model.") for name, module in model.named_modules() if hasattr(module, "lora_A")
    }
    layers = model.get_base_model().config.text_config.num_hidden_layers
    expected = {
        f"model.language_model.layers.{layer}.{block}.{name}"
        for layer in range(layers)
        for block, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")), ("mlp", ("gate_proj", "up_proj", "down_proj")))
        for name in names
    }
    assert adapted == expected  # SigLIP's q_proj/k_proj/v_proj and the fusion's linears get none
    # r * (in + out) per adapted linear.
    lora_count = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert summary.trainable_per_part["mm_language_model"] == lora_count
    text = model.get_base_model().config.text_config
    kv = text.num_key_value_heads * text.hidden_size // text.num_attention_heads
    h, i = text.hidden_size, text.intermediate_size
    per_layer = 4 * ((h + h) + (h + kv) + (h + kv) + (h + h)) + 4 * ((h + i) + (h + i) + (i + h))
    assert lora_count == layers * per_layer


def test_parts_the_model_lacks_are_refused():
    model = VLM2ForConditionalGeneration(tiny_vlm2_config(use_spatial_fusion=False, use_dual_memory=False))
    with pytest.raises(ValueError, match="dual_memory"):
        prepare_tunable_model(model, ("dual_memory",), VLM2_PART_MAP)
    with pytest.raises(ValueError, match="unknown tunable parts"):
        prepare_tunable_model(model, ("projector",), VLM2_PART_MAP)
