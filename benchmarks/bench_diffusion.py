"""Masked-diffusion decoding with the SHIRG-X image path: step time with/without the prefix cache,
stage shares (vision, selection, prefix, denoising) and peak memory per budget.

    python benchmarks/bench_diffusion.py            # tiny + real vision dims (~3-4 min on 2 cores)
    python benchmarks/bench_diffusion.py --quick    # tiny + real dims with one budget and fewer steps

Sizes:
- tiny: the tiny LLaVA-OneVision (SigLIP 32-d, Qwen2 64-d), 224 px / 16×16 grid / 16 scaffold tokens,
  budgets {32, 48, 64}.
- real: SigLIP so400m dims (1152-d, 27 layers, 672 px → 48×48 = 2,304 patches), the real selector
  (144 scaffold, K ∈ {512, 768, 1024}), a Qwen2-0.5B-width language model (896-d, 14 heads, 2 KV
  heads, MLP 4864) cut to 4 layers and a 512-token vocabulary so it fits this CPU's budget; step times
  grow about linearly with depth, the cache ratio does not depend on it.

Peak memory: the process's peak RSS (VmHWM) is reset (/proc/self/clear_refs) before the vision pass
and before each budget's selection + prefix + denoising, and reported minus the RSS before it: the
extra memory that stage needed beyond the weights and what the allocator already holds. The vision
pass runs once per size (its cost does not depend on K) and counts in every budget's shares.
"""

from __future__ import annotations

import argparse
import sys
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.diagnostics.profiling import StageTimer
from spatialvlm.models.diffusion import DiffusionConfig, MaskedDiffusionGenerator
from spatialvlm.models.shirgx_vlm import ShirgXImageConfig, ShirgXImagePath
from spatialvlm.models.tiny import build_tiny_tokenizer, tiny_llava_onevision_config
from spatialvlm.selection import ShirgXConfig, ShirgXSelector

ANSWER_LENGTH = 32
QUESTION = "What is the distance between the bed and the door?"


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux), so each stage's peak is its own.
    Path("/proc/self/clear_refs").write_text("5")


def build(size: str):
    torch.manual_seed(0)
    if size == "tiny":
        config = tiny_llava_onevision_config()
        selector_config = ShirgXConfig(vision_dim=32, grid=(16, 16), scaffold_pool=4, budgets=(32, 48, 64), default_budget=48)
        image_size = 224
    else:
        config = tiny_llava_onevision_config(
            vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                               image_size=384),
            text_config=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=4, num_attention_heads=14,
                             num_key_value_heads=2),
        )
        selector_config = ShirgXConfig()
        image_size = 672
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    selector = ShirgXSelector(selector_config).eval()
    path = ShirgXImagePath(model, selector, ShirgXImageConfig(image_size=image_size))
    return model, path, selector_config


@torch.no_grad()
def run_size(size: str, tokenizer, budgets, steps: int, step_reps: int, nocache_reps: int) -> list[str]:
    model, path, selector_config = build(size)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    prompt_ids = tokenizer(path.prompt(QUESTION, tokenizer), return_tensors="pt").input_ids
    question = model.get_input_embeddings()(tokenizer(QUESTION, return_tensors="pt").input_ids)
    pixels = path.preprocess(image)["pixel_values"]
    weights_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    path.vision_hidden_states(pixels)  # warm-up
    vision_timer = StageTimer()
    _reset_peak()
    before = _rss_kib("VmRSS")
    hidden_states = path.vision_hidden_states(pixels, vision_timer)
    vision_peak = (_rss_kib("VmHWM") - before) / 1024
    print(f"{size}: weights {weights_mib:.0f} MiB; vision {vision_timer.totals['vision']:.2f} s, "
          f"peak +{vision_peak:.0f} MiB over the RSS before it (shared by every budget)", flush=True)
    lines = []
    for budget in budgets:
        _reset_peak()
        before = _rss_kib("VmRSS")
        timer = StageTimer()
        timer.totals["vision"], timer.calls["vision"] = vision_timer.totals["vision"], 1
        features = path.select_and_project(hidden_states, question, budget=budget, timer=timer)
        inputs = path.build_inputs(prompt_ids, features.tokens)
        # LaViDa's cached inference: prefix-DLM attention, the prefix's KV computed once.
        config = DiffusionConfig(mask_token_id=tokenizer.mask_token_id, answer_length=ANSWER_LENGTH, steps=steps,
                                 attention="prefix_dlm")
        generator = MaskedDiffusionGenerator.from_model(model, config)
        generator.generate(prompt_embeds=inputs["inputs_embeds"], timer=timer)
        peak_mib = (_rss_kib("VmHWM") - before) / 1024

        # Per-step time, side by side: the cached step runs L tokens, the uncached one P + L.
        cached = generator.encode_prefix(prompt_embeds=inputs["inputs_embeds"])
        uncached = MaskedDiffusionGenerator.from_model(
            model, DiffusionConfig(mask_token_id=tokenizer.mask_token_id, answer_length=ANSWER_LENGTH,
                                   attention="prefix_dlm", use_prefix_cache=False)
        ).encode_prefix(prompt_embeds=inputs["inputs_embeds"])
        answer = torch.full((1, ANSWER_LENGTH), tokenizer.mask_token_id)
        step_times = {}
        for name, prefix, reps in (("cache", cached, step_reps), ("no cache", uncached, nocache_reps)):
            generator.answer_logits(prefix, answer)  # warm-up
            start = time.perf_counter()
            for _ in range(reps):
                generator.answer_logits(prefix, answer)
            step_times[name] = (time.perf_counter() - start) / reps

        # Every stage the path timed (vision, the selector's own stages, projector, prefix, denoise).
        stages = tuple(timer.totals)
        total = sum(timer.totals[s] for s in stages)
        shares = " ".join(f"{s} {timer.totals[s] / total:6.1%}" for s in stages)
        prefix_length = inputs["inputs_embeds"].shape[1]
        lines.append(
            f"{size:<5} K={budget:<5} tokens={features.tokens.shape[1]:<5} P={prefix_length:<5} "
            f"step cache {1e3 * step_times['cache']:8.2f} ms | no cache {1e3 * step_times['no cache']:9.2f} ms | "
            f"x{step_times['no cache'] / step_times['cache']:5.1f} || total {total:6.2f} s ({steps} steps): {shares} "
            f"|| peak +{peak_mib:7.1f} MiB"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one real-dims budget, 10 steps")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from threads import configure_threads

    configure_threads()  # OMP_NUM_THREADS, default 2
    tokenizer = build_tiny_tokenizer()
    print(f"answer length {ANSWER_LENGTH}; times fp32 on {torch.get_num_threads()} threads")
    run_size("tiny", tokenizer, (32, 48, 64), steps=30, step_reps=20, nocache_reps=20)
    real_budgets = (768,) if args.quick else (512, 768, 1024)
    run_size("real", tokenizer, real_budgets, steps=10 if args.quick else 30, step_reps=5, nocache_reps=2)


if __name__ == "__main__":
    main()
