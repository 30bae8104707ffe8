"""The synthetic-pretrained base every VLM² ablation row starts from (the tiny "LLaVA-Video" stage).

    python -m spatialvlm.experiments.vlm2_base --data BENCH --out base_out [--quick]

A real VLM² is fine-tuned from a pretrained VLM. At tiny scale the pretraining is done here, on
the synthetic renderer's own knowledge, in two stages that never see 3D inputs:

(a) **Vision tower**: the tiny SigLIP learns the renderer's exact per-patch labels — the share of
    each of 14 classes in the patch (floor, wall, ceiling and the 11 object categories), the
    patch's mean log depth and its mean height above the floor — from frames of the training split
    (decoded from its mp4s, so the pixels are the ones the model sees later), through a linear head
    on the layer the projector reads. The head is dropped afterwards.
(b) **Projector + language model** (vision tower frozen, no fusion, no memory): trained on the
    training split's VSI-Bench questions (official prompt → gold answer) and one scene description
    per video ("Describe the objects in this room in the order they appear." → "chair, 3 tv, ..."),
    video frames only.

With ``--text-steps N`` a language stage runs between them: the language model alone (built fresh)
learns the training split's VSI questions with their video cut out, as a real VLM's LLM comes
from text pretraining; stage (b) then starts from it (issue 15's seventh look found the tiny LM
learns the question's words there, and not beside the video).

Both stages log training and held-out losses (held-out: frames / questions of the test split's
first scenes, never used to choose anything) to ``OUT/base_training.json``; ``OUT/base`` is a
``load_vlm2`` checkpoint with ``synthetic_base.json`` (config, command, losses). Reruns reuse a
finished stage (``OUT/stage_a``), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BaseConfig", "NUM_PATCH_CLASSES", "patch_labels", "describe_scene", "encode_turn", "encode_question", "build_base", "main"]

# floor, wall, ceiling, then the object categories in ``CATEGORIES`` order.
NUM_ROOM_CLASSES = 3


NUM_PATCH_CLASSES = NUM_ROOM_CLASSES + 11  # 11 = len(CATEGORIES), checked in the tests
DESCRIPTION_PROMPT = "Describe the objects in this room in the order they appear."


@dataclass
class BaseConfig:
    """Every knob of the base, with its default and meaning.

    Data:
        data_dir: benchmark directory holding the ``train`` split (``spatialvlm synth``) and, for
            held-out losses, the ``test`` split.
        out_dir: where stages, logs and the base checkpoint go.
        seed: seed of the split (must be the one ``data_dir`` was rendered with) and of training.
        num_frames / image_size: frames per video and frame side (a multiple of the patch, 14).

    Tiny model (``tiny_vlm2_config``):
        vision_hidden_size / vision_layers, text_hidden_size / text_layers.

    Stage (a), vision tower on per-patch labels:
        vision_scenes: training scenes whose frames are used; vision_frames_per_scene of each.
        vision_steps / vision_batch_frames / vision_learning_rate: AdamW, cosine, 5 % warm-up.
        stage_a_from: a ``load_vlm2`` checkpoint of the same tower shape whose vision tower is taken
            instead of training stage (a) (every later stage keeps the tower frozen, so a base's
            tower is its stage (a)); the other weights are this seed's fresh initialisation.

    Language stage (between (a) and (b); only with ``text_steps`` > 0):
        text_steps: steps of the training split's VSI questions (the ``lm_train_scenes``) without
            their video (the turn's video tokens removed), the language model and its head alone,
            built fresh at std 1/√width (docs/decisions.md); 0: no language stage.
        text_learning_rate: AdamW, cosine, 5 % warm-up, gradients clipped at 1, batch
            ``lm_batch_size`` (the oracle's text-stage settings, chosen on validation scenes).

    Stage (b), projector + language model:
        lm_epochs / lm_max_steps (> 0 overrides epochs) / lm_batch_size / lm_learning_rate.
        lm_train_scenes: training scenes whose questions are used (None: all).
        held_out_scenes: test scenes for held-out losses (both stages).
        num_threads: torch threads.
    """

    data_dir: str = "bench"
    out_dir: str = "vlm2_base_out"
    seed: int = 0
    num_frames: int = 32
    image_size: int = 112
    vision_hidden_size: int = 64
    vision_layers: int = 2
    text_hidden_size: int = 128
    text_layers: int = 2
    vision_scenes: int = 300
    vision_frames_per_scene: int = 8
    vision_steps: int = 600
    vision_batch_frames: int = 32
    vision_learning_rate: float = 2e-3
    lm_epochs: float = 1.0
    lm_max_steps: int = -1
    lm_batch_size: int = 8
    lm_learning_rate: float = 2e-3
    lm_train_scenes: int | None = None
    text_steps: int = 0
    text_learning_rate: float = 1e-3
    stage_a_from: str | None = None
    held_out_scenes: int = 10
    num_threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.image_size % 14:
            raise ValueError(f"image_size must be a multiple of the patch size 14, got {self.image_size}")
        if self.text_steps < 0:
            raise ValueError(f"text_steps must be >= 0, got {self.text_steps}")


QUICK = dict(vision_scenes=60, vision_steps=150, lm_max_steps=120, lm_train_scenes=120, held_out_scenes=4)


def encode_turn(processor: Any, prompt: str, answer: str, num_frames: int, video_tokens: int | None = None):
    """``(input_ids, labels)`` (L,) of one prompt → answer turn after ``num_frames`` frames of video,
    in the processor's chat layout (``video_tokens``: that many video positions instead, e.g. a clip
    cut to a few region tokens + newline, or 0: the turn without its video)."""
    from ..train.conversation import add_video_prompt, to_chat_messages, tokenize_conversation

    conversation = [{"from": "human", "value": "<video>\n" + prompt}, {"from": "gpt", "value": answer}]
    messages = to_chat_messages(conversation, processor.video_token, aliases=(processor.image_token,))
    messages = add_video_prompt(messages, processor.video_token, processor.system_prompt, None)
    count = processor.num_video_tokens(num_frames) if video_tokens is None else video_tokens
    return tokenize_conversation(processor.tokenizer, messages, {processor.video_token_id: count})


def encode_question(processor: Any, item: Any, num_frames: int, video_tokens: int | None = None):
    """``(input_ids, labels)`` of one benchmark question exactly as the ablation trains it (official
    prompt, gold answer, chat layout, video token count); ``video_tokens`` as in ``encode_turn``."""
    from ..eval import build_prompt
    from ..eval.baselines import gold_answer

    return encode_turn(processor, build_prompt(item, "vsibench"), gold_answer(item), num_frames, video_tokens)


def patch_labels(instance: np.ndarray, depth: np.ndarray, height: np.ndarray, room_height: float, patch: int,
                 categories: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-patch targets of rendered frames.

    Args:
        instance: (T, H, W) object index, -1 for the room.
        depth: (T, H, W) z-depth, metres.
        height: (T, H, W) world z of each pixel's surface point, metres.
        room_height: ceiling height (pixels of the room at it are ceiling, at 0 floor, else wall).
        patch: patch side in pixels.
        categories: (N,) class index of each object (≥ ``NUM_ROOM_CLASSES``).

    Returns:
        classes (T, P, C) float32 pixel share of each class per patch (rows sum to 1), log depth
        (T, P) and height (T, P) patch means, P = (H/patch)·(W/patch) row-major.
    """
    frames, rows, cols = instance.shape
    lookup = np.concatenate([np.asarray(categories, dtype=np.int64), [0]])  # index -1 → last → overwritten
    label = lookup[instance]
    room = instance < 0
    label = np.where(room & (height < 1e-3), 0, label)
    label = np.where(room & (height > room_height - 1e-3), 2, label)
    label = np.where(room & (height >= 1e-3) & (height <= room_height - 1e-3), 1, label)
    onehot = np.eye(NUM_PATCH_CLASSES, dtype=np.float32)[label]  # (T, H, W, C)

    def pool(values: np.ndarray) -> np.ndarray:
        shaped = values.reshape(frames, rows // patch, patch, cols // patch, patch, *values.shape[3:])
        return shaped.mean(axis=(2, 4)).reshape(frames, (rows // patch) * (cols // patch), *values.shape[3:])

    return pool(onehot), pool(np.log(np.maximum(depth, 1e-3))), pool(height)


def describe_scene(scene: Any, visible_pixels: np.ndarray) -> str:
    """The categories in order of first appearance, each with its count ("2 chair, sofa, 3 lamp")."""
    seen = visible_pixels > 0
    counts = scene.counts()
    first: dict[str, int] = {}
    for index, obj in enumerate(scene.objects):
        if seen[:, index].any():
            frame = int(np.argmax(seen[:, index]))
            first[obj.category] = min(first.get(obj.category, frame), frame)
    ordered = sorted(first, key=lambda name: (first[name], name))
    return ", ".join(name if counts[name] == 1 else f"{counts[name]} {name}" for name in ordered)


def _frames_and_labels(config: BaseConfig, split: str, scenes: int, frames_per_scene: int):
    """Decoded video frames (the model's pixels) and rendered per-patch labels of ``scenes`` scenes."""
    from ..data.synthetic import CATEGORIES, SynthConfig, make_scene
    from ..data.video import read_video

    category_index = {c.name: NUM_ROOM_CLASSES + i for i, c in enumerate(CATEGORIES)}
    synth = SynthConfig(num_frames=config.num_frames, image_size=config.image_size, seed=config.seed, split=split)
    pixels, classes, depths, heights = [], [], [], []
    from tqdm.auto import tqdm

    for index in tqdm(range(scenes), desc=f"labels {split}", unit="scene", disable=not config.progress):
        item = make_scene(synth, index)
        chosen = np.linspace(0, config.num_frames - 1, frames_per_scene).astype(np.int64)
        video = Path(config.data_dir) / "synthetic" / f"{item.name}.mp4"
        # Only a finished split's videos (its jsonl is written last) are read; else the rendering.
        if video.is_file() and (Path(config.data_dir) / f"{split}.jsonl").is_file():
            frames = read_video(video, num_frames=None).frames
            if not np.abs(frames[0].astype(float) - item.frames.rgb[0]).mean() < 12:
                raise ValueError(f"{video} does not match scene {item.name} of seed {config.seed}; pass the seed it was rendered with")
        else:
            frames = item.frames.rgb
        cats = [category_index[o.category] for o in item.scene.objects]
        c, d, h = patch_labels(item.frames.instance[chosen], item.frames.depth[chosen], item.frames.points[chosen, ..., 2],
                               float(item.scene.room_size[2]), 14, cats)
        pixels.append(frames[chosen])
        classes.append(c)
        depths.append(d)
        heights.append(h)
    return np.concatenate(pixels), np.concatenate(classes), np.concatenate(depths), np.concatenate(heights)


def tiny_model_config(config: Any):
    """The tiny VLM² config (every VLM² module off) of an experiment config; ``config`` needs
    ``vision_hidden_size``, ``vision_layers``, ``image_size``, ``text_hidden_size``, ``text_layers``
    (``BaseConfig`` and the ablation's ``AblationConfig`` both have them)."""
    from ..models import tiny_vlm2_config

    vision_heads = max(1, config.vision_hidden_size // 16)
    return tiny_vlm2_config(
        vision_config=dict(
            hidden_size=config.vision_hidden_size,
            intermediate_size=2 * config.vision_hidden_size,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=vision_heads,
            image_size=config.image_size,
        ),
        text_config=dict(
            hidden_size=config.text_hidden_size,
            intermediate_size=2 * config.text_hidden_size,
            num_hidden_layers=config.text_layers,
            num_attention_heads=max(1, config.text_hidden_size // 16),
            num_key_value_heads=max(1, config.text_hidden_size // 32),
        ),
        use_spatial_fusion=False,
        use_dual_memory=False,
        memory_num_heads=vision_heads,
        fusion_num_heads=vision_heads,
    )


def _warmup_cosine(optimizer: Any, steps: int) -> Any:
    """Linear warm-up over the first 5 % of ``steps``, then a cosine decay to 0 (both base stages)."""
    import torch

    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )


def _clipped_step(loss: Any, optimizer: Any, schedule: Any, parameters: list) -> float:
    """One update with the gradient norm clipped to 1; returns the loss as a float for the log."""
    import torch

    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def _train_logged(
    steps: int, step_loss: Any, update: Any, held_out: Any, curve: dict, held_key: str, description: str,
    progress: bool, postfix: Any,
) -> None:
    """``steps`` updates ``update(step_loss())``; ten times (and at the end) the mean training loss
    since the last entry and ``held_out()`` are appended to ``curve`` (``step``, ``train_loss``,
    ``held_key``), and the bar shows them (``postfix(curve)`` adds the stage's own figure)."""
    from tqdm.auto import tqdm

    running: list[float] = []
    bar = tqdm(range(steps), desc=description, disable=not progress)
    for step in bar:
        running.append(update(step_loss()))
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            curve["step"].append(step + 1)
            curve["train_loss"].append(float(np.mean(running)))
            curve[held_key].append(held_out())
            running = []
            bar.set_postfix(loss=f"{curve['train_loss'][-1]:.3f}", **postfix(curve))


def _stage_a(config: BaseConfig, model: Any, processor: Any, log: dict) -> None:
    """Train ``model``'s vision tower (in place) on per-patch labels."""
    import torch

    train = _frames_and_labels(config, "train", config.vision_scenes, config.vision_frames_per_scene)
    held = _frames_and_labels(config, "test", config.held_out_scenes, config.vision_frames_per_scene)
    train_pixels = processor.preprocess_frames(train[0])
    held_pixels = processor.preprocess_frames(held[0])
    targets = [torch.from_numpy(np.ascontiguousarray(a)).float() for a in train[1:]]
    held_targets = [torch.from_numpy(np.ascontiguousarray(a)).float() for a in held[1:]]
    width = model.config.vision_config.hidden_size
    head = torch.nn.Linear(width, NUM_PATCH_CLASSES + 2)
    tower = model.model
    parameters = list(tower.vision_tower.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.vision_learning_rate, weight_decay=0.01)
    schedule = _warmup_cosine(optimizer, config.vision_steps)
    layer, strategy = model.config.vision_feature_layer, model.config.vision_feature_select_strategy

    def losses(pixels, classes, depth, height):
        features = tower.encode_frames_vision(pixels, layer, strategy)
        out = head(features)
        log_probs = out[..., :NUM_PATCH_CLASSES].log_softmax(-1)
        class_loss = -(classes * log_probs).sum(-1).mean()
        depth_loss = (out[..., NUM_PATCH_CLASSES] - depth).pow(2).mean()
        height_loss = (out[..., NUM_PATCH_CLASSES + 1] - height).pow(2).mean()
        accuracy = (log_probs.argmax(-1) == classes.argmax(-1)).float().mean()
        return class_loss, depth_loss, height_loss, accuracy

    def held_out() -> dict[str, float]:
        tower.eval()
        with torch.no_grad():
            parts = [losses(held_pixels[i:i + 64], *(t[i:i + 64] for t in held_targets)) for i in range(0, len(held_pixels), 64)]
        tower.train()
        names = ("class_ce", "log_depth_mse", "height_mse", "patch_accuracy")
        return {name: float(np.mean([float(p[k]) for p in parts])) for k, name in enumerate(names)}

    generator = torch.Generator().manual_seed(config.seed)
    curve = {"step": [], "train_loss": [], "held_out": []}
    log["stage_a"] = curve
    log["stage_a_before"] = held_out()
    tower.train()

    def step_loss():
        batch = torch.randint(len(train_pixels), (config.vision_batch_frames,), generator=generator)
        class_loss, depth_loss, height_loss, _ = losses(train_pixels[batch], *(t[batch] for t in targets))
        return class_loss + 0.5 * depth_loss + 0.5 * height_loss

    _train_logged(
        config.vision_steps, step_loss, lambda loss: _clipped_step(loss, optimizer, schedule, parameters), held_out,
        curve, "held_out", "stage a: vision tower", config.progress,
        lambda curve: {"acc": f"{curve['held_out'][-1]['patch_accuracy']:.2f}"},
    )
    tower.eval()


def _question_items(config: BaseConfig, split: str, scenes: int | None) -> list[Any]:
    """The VSI-Bench questions of the first ``scenes`` scenes of ``split`` (None: all)."""
    from ..data.readers import read_benchmark
    from ..eval.metrics import question_types

    items = read_benchmark(Path(config.data_dir), split, question_types("vsibench"))
    if scenes is None:
        return items
    keep = set(sorted({item.scene_name for item in items})[:scenes])
    return [item for item in items if item.scene_name in keep]


def _text_loss(model: Any, examples: Sequence[tuple[Any, Any]], pad_token_id: int):
    """Mean answer-token loss of a batch of ``(input_ids, labels)`` through the language model alone."""
    from ..train.conversation import IGNORE_INDEX, pad_sequences

    input_ids = pad_sequences([example[0] for example in examples], pad_token_id)
    labels = pad_sequences([example[1] for example in examples], IGNORE_INDEX)
    # Right padding under the causal mask never reaches a real token; no pixel values: text only.
    return model(input_ids=input_ids, labels=labels).loss


def _stage_text(config: BaseConfig, model: Any, processor: Any, log: dict) -> None:
    """The language stage (in place): a fresh language model on the VSI turns without their video."""
    import torch

    from ..models import VLM2ForConditionalGeneration

    width = model.config.text_config.hidden_size
    fresh_config = copy.deepcopy(model.config)
    fresh_config.initializer_range = fresh_config.text_config.initializer_range = width ** -0.5
    torch.manual_seed(config.seed)
    fresh = VLM2ForConditionalGeneration(fresh_config)
    model.model.language_model.load_state_dict(fresh.model.language_model.state_dict())
    model.lm_head.load_state_dict(fresh.lm_head.state_dict())
    del fresh

    train = [encode_question(processor, item, config.num_frames, video_tokens=0)
             for item in _question_items(config, "train", config.lm_train_scenes)]
    held = [encode_question(processor, item, config.num_frames, video_tokens=0)
            for item in _question_items(config, "test", config.held_out_scenes)]
    pad = processor.tokenizer.pad_token_id

    def held_out() -> float:
        model.eval()
        with torch.no_grad():
            total = sum(float(_text_loss(model, held[i:i + 64], pad)) * len(held[i:i + 64]) for i in range(0, len(held), 64))
        model.train()
        return total / max(1, len(held))

    parameters = list(model.model.language_model.parameters()) + list(model.lm_head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.text_learning_rate, weight_decay=0.0)
    steps = config.text_steps
    schedule = _warmup_cosine(optimizer, steps)
    generator = torch.Generator().manual_seed(config.seed)
    curve: dict[str, Any] = {"step": [], "train_loss": [], "held_out_loss": [], "held_out_loss_before": held_out(),
                             "train_examples": len(train), "held_out_examples": len(held)}
    log["stage_text"] = curve
    model.train()

    def step_loss():
        batch = [train[i] for i in torch.randint(len(train), (config.lm_batch_size,), generator=generator).tolist()]
        return _text_loss(model, batch, pad)

    _train_logged(
        steps, step_loss, lambda loss: _clipped_step(loss, optimizer, schedule, parameters), held_out,
        curve, "held_out_loss", "language stage: VSI questions without video", config.progress,
        lambda curve: {"held_out": f"{curve['held_out_loss'][-1]:.3f}"},
    )
    model.eval()


def _records(config: BaseConfig, split: str, scenes: int | None) -> list[dict]:
    """VSI-Bench questions + one description per scene, as LLaVA records (video only)."""
    from ..data.readers import read_benchmark
    from ..data.synthetic import Scene
    from ..eval.metrics import question_types
    from .vlm2_ablation import llava_records

    data = Path(config.data_dir)
    items = read_benchmark(data, split, question_types("vsibench"))
    names = sorted({item.scene_name for item in items})
    if scenes is not None:
        keep = set(names[:scenes])
        items = [item for item in items if item.scene_name in keep]
        names = [name for name in names if name in keep]
    records = llava_records(items, geometry=False)
    for name in names:
        description = json.loads((data / "synthetic" / f"{name}.json").read_text())
        text = describe_scene(Scene.from_dict(description), np.asarray(description["visible_pixels"]))
        records.append({
            "id": f"{name}_description",
            "video": f"synthetic/{name}.mp4",
            "conversations": [{"from": "human", "value": "<video>\n" + DESCRIPTION_PROMPT}, {"from": "gpt", "value": text}],
        })
    return records


def _stage_b(config: BaseConfig, start_dir: Path, out: Path, log: dict) -> Path:
    """Projector + LM on questions and descriptions, from ``start_dir`` (stage (a) or the language
    stage); returns the final checkpoint directory."""
    import torch
    from transformers import TrainingArguments

    from ..train import DataArguments, ModelArguments, prepare_training
    from ..train.tasks import get_task

    data = Path(config.data_dir)
    train_path, held_path = data / "base_train_llava.json", data / "base_held_out_llava.json"
    train_path.write_text(json.dumps(_records(config, "train", config.lm_train_scenes)))
    held_path.write_text(json.dumps(_records(config, "test", config.held_out_scenes)))
    torch.manual_seed(config.seed)
    model_args = ModelArguments(model_name_or_path=str(start_dir), mm_tunable_parts="mm_mlp_adapter,mm_language_model")
    data_args = DataArguments(data_path=str(train_path), num_frames=config.num_frames)
    training_args = TrainingArguments(
        output_dir=str(out / "stage_b_train"), num_train_epochs=config.lm_epochs, max_steps=config.lm_max_steps,
        per_device_train_batch_size=config.lm_batch_size, per_device_eval_batch_size=config.lm_batch_size,
        learning_rate=config.lm_learning_rate, warmup_steps=0.05, lr_scheduler_type="cosine", logging_steps=10,
        logging_nan_inf_filter=False, save_strategy="no", report_to="none", seed=config.seed, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=not config.progress, prediction_loss_only=True,
    )
    run = prepare_training(model_args, data_args, training_args, task="vlm2")
    # Each video carries about ten questions: decode it once (float16 frames, ≈ 2.4 MB per video).
    run.trainer.train_dataset.video_cache = {}
    held_data = DataArguments(data_path=str(held_path), num_frames=config.num_frames)
    held, collator = get_task("vlm2").build_train_data(run.trainer.processing_class, held_data, run.trainer.model.config)
    held.video_cache = {}
    before = held_out_loss(run.trainer.model, held, collator, config.lm_batch_size)
    run.trainer.train()
    after = held_out_loss(run.trainer.model, held, collator, config.lm_batch_size)
    log["stage_b"] = {
        "train_log": [entry for entry in run.trainer.state.log_history if "loss" in entry],
        "held_out_loss_before": before, "held_out_loss_after": after,
        "train_records": len(run.trainer.train_dataset), "held_out_records": len(held), "start": str(start_dir),
    }
    final = out / "base"
    if final.exists():
        import shutil

        shutil.rmtree(final)
    run.trainer.model.save_pretrained(final)
    run.trainer.processing_class.save_pretrained(final)
    return final


def held_out_loss(model: Any, dataset: Any, collator: Any, batch_size: int) -> float:
    """Mean answer-token loss of ``model`` over ``dataset`` (eval mode, no gradients), weighted by batch."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(begin, min(len(dataset), begin + batch_size))]
            batch = collator(items)
            total += float(model(**batch).loss) * len(items)
            count += len(items)
    model.train(was_training)
    return total / max(1, count)


def _tower_from(model: Any, directory: str) -> None:
    """Copy the vision tower of the checkpoint at ``directory`` into ``model`` (in place)."""
    from ..models import load_vlm2

    source, _ = load_vlm2(directory)
    try:
        model.model.vision_tower.load_state_dict(source.model.vision_tower.state_dict())
    except RuntimeError as error:  # strict loading: missing, unexpected or reshaped weights
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise ValueError(
            f"--stage-a-from {directory}: its vision tower does not match this base's "
            f"(vision_hidden_size / vision_layers / image_size): {first}"
        ) from None


def build_base(config: BaseConfig, command: str = "", stage_a_only: bool = False) -> Path:
    """Run stage (a) (unless ``OUT/stage_a`` exists; with ``stage_a_from`` its tower is copied), the
    language stage (with ``text_steps``, unless ``OUT/stage_text`` exists) and stage (b); returns
    ``OUT/base`` (``OUT/stage_a`` with ``stage_a_only``)."""
    import torch
    import transformers

    from ..models import VLM2ForConditionalGeneration, build_tiny_processor

    torch.set_num_threads(config.num_threads)
    transformers.logging.set_verbosity_error()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "base_training.json"
    log: dict[str, Any] = json.loads(log_path.read_text()) if log_path.is_file() else {}
    log["config"] = dataclasses.asdict(config)
    start = time.perf_counter()
    stage_a_dir = out / "stage_a"
    if not (stage_a_dir / "config.json").is_file():
        torch.manual_seed(config.seed)
        model_config = tiny_model_config(config)
        model = VLM2ForConditionalGeneration(model_config)
        processor = build_tiny_processor(model_config)
        if config.stage_a_from:
            _tower_from(model, config.stage_a_from)
            for key in ("stage_a", "stage_a_before"):  # no curve of its own: a rerun into OUT may hold one
                log.pop(key, None)
            log["stage_a_from"] = config.stage_a_from
        else:
            _stage_a(config, model, processor, log)
        model.save_pretrained(stage_a_dir)
        processor.save_pretrained(stage_a_dir)
        log["stage_a_seconds"] = time.perf_counter() - start
        log_path.write_text(json.dumps(log, indent=1))
    if stage_a_only:
        return stage_a_dir
    start_dir = stage_a_dir
    if config.text_steps:
        start_dir = out / "stage_text"
        if not (start_dir / "config.json").is_file():
            from ..models import load_vlm2

            tick = time.perf_counter()
            model, processor = load_vlm2(stage_a_dir)
            _stage_text(config, model, processor, log)
            model.save_pretrained(start_dir)
            processor.save_pretrained(start_dir)
            log["stage_text_seconds"] = time.perf_counter() - tick
            log_path.write_text(json.dumps(log, indent=1))
    tick = time.perf_counter()
    final = _stage_b(config, start_dir, out, log)
    log["stage_b_seconds"] = time.perf_counter() - tick
    log_path.write_text(json.dumps(log, indent=1))
    (final / "synthetic_base.json").write_text(json.dumps({
        "command": command, "config": dataclasses.asdict(config),
        "synth": {"num_frames": config.num_frames, "image_size": config.image_size, "seed": config.seed},
        "stage_a_from": config.stage_a_from,
        "stage_a_held_out": log.get("stage_a", {}).get("held_out", [None])[-1],
        "stage_a_before": log.get("stage_a_before"),
        "stage_text_held_out_loss": ({"before": log["stage_text"]["held_out_loss_before"],
                                      "after": log["stage_text"]["held_out_loss"][-1]} if config.text_steps else None),
    }, indent=1) + "\n")
    return final


def build_parser() -> argparse.ArgumentParser:
    defaults = BaseConfig()
    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_base", description=__doc__.split("\n")[0])
    for item in dataclasses.fields(BaseConfig):
        if item.name in ("progress", "lm_train_scenes", "data_dir", "out_dir", "stage_a_from"):
            continue
        value = getattr(defaults, item.name)
        parser.add_argument("--" + item.name.replace("_", "-"), type=type(value), default=value, help=f"default {value}")
    parser.add_argument("--data", dest="data_dir", required=True, help="benchmark directory with train (and test) splits")
    parser.add_argument("--out", dest="out_dir", default=defaults.out_dir)
    parser.add_argument("--lm-train-scenes", type=int, help="training scenes whose questions are used; default all")
    parser.add_argument("--quick", action="store_true", help=f"a smaller run: {QUICK}")
    parser.add_argument("--stage-a-only", action="store_true", help="stop after the vision tower (stage a)")
    parser.add_argument("--stage-a-from", metavar="CKPT", help="take the vision tower of this checkpoint instead of training stage (a)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    if args.pop("quick"):
        args.update(QUICK)
    args["progress"] = not args.pop("no_progress")
    stage_a_only = args.pop("stage_a_only")
    command = " ".join(["python -m spatialvlm.experiments.vlm2_base", *(argv or sys.argv[1:])])
    final = build_base(BaseConfig(**args), command=command, stage_a_only=stage_a_only)
    print(f"base checkpoint: {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
