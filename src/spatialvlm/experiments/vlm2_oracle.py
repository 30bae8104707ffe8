"""Oracle perception: what the tiny language model answers when its video tokens are perfect.

    python -m spatialvlm.experiments.vlm2_oracle --data BENCH --base checkpoints/vlm2-base-synthetic --out oracle_out

Every ablation row ties the blind one (docs/results.md). This experiment splits the blame between
perception (tower, fusion, memory, projector) and the language model. Each video token of the
base's layout — one per 2×2 block of 14-px patches after LLaVA-OneVision's stride-2 pooling, frame
after frame, one newline token at the end — is replaced by a small MLP of the renderer's ground
truth for that block:

- ``cls``: the share of each of the 14 classes (floor, ceiling, wall, the 11 object categories) of
  the block's pixels;
- ``xyz``: the block's mean surface point in the first sampled camera's frame, metres (what the
  geometry files store, so the metric-coordinate rows could in principle receive the same);
- ``none``: no feature (every video token one learnt vector): the blind control, same recipe.

A fresh language model of the base's size and the MLP are trained on the training split's VSI
questions (official prompt → gold answer, the real chat layout and tokenizer) and answer the
held-out questions by greedy decoding, scored with the official rules. A feature set whose oracle
beats the baselines shows that this language model *can* answer from such tokens and the
perception path loses the information; one whose oracle ties the blind row shows that the language
model itself is the bottleneck.

Features are rendered once per scene and setting and kept in ``OUT/features/`` (resumable); each
(row, seed) leaves ``OUT/runs/<row>/seed<s>/result.json`` and is not rerun; ``OUT/results.{json,md}``
hold the table (the ablation's format: mean ± std over seeds, bootstrap CI over questions);
with ``--validation`` the same files go under ``OUT/validation/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .vlm2_base import encode_question, encode_turn

__all__ = [
    "OracleConfig",
    "FEATURE_COLUMNS",
    "region_features",
    "OracleTokens",
    "OracleLM",
    "run_oracle",
    "main",
]

PRETRAIN_RECIPES = ("one-hop-first", "curriculum", "token-curriculum", "token-raw-first", "mixed", "token-mixed")
MIXED_RECIPES = ("mixed", "token-mixed")  # presence interleaved with the VSI steps: no stage before them

# Columns of a region's feature vector: 14 class shares, then x, y, z. "none" (no column: every
# video token the same learnt vector) is the blind control trained with the identical recipe.
FEATURE_COLUMNS: dict[str, slice] = {"cls": slice(0, 14), "xyz": slice(14, 17), "none": slice(0, 0)}


@dataclass
class OracleConfig:
    """Every knob of the oracle experiment, with its default and meaning.

    Data:
        data_dir: benchmark directory of ``spatialvlm synth`` with ``train`` and ``test`` splits.
        seed / render_frames / image_size: the seed, frames per video and frame side the benchmark
            was rendered with (the features are re-rendered from them and checked against it).
        num_frames: frames sampled per video (uniformly, as ``read_video``), i.e. video tokens.
        train_scenes / test_scenes: the first N scenes of each split.

    Model:
        base: checkpoint whose config (widths, layout) and tokenizer are used; its weights are not.
        init_range: std of the fresh language model's initial weights; None: 1/√hidden (see
            docs/decisions.md: the HF default 0.02 of a 4,096-wide model is ≈ 4× too small at 128).

        tied: add the 11 category names to the tokenizer as single tokens and add to every video
            token the share-weighted word embeddings of its classes (``vlm2_lookup.TiedTokens``'s formula:
            the token a projector aligned to the word embeddings gives) when the row has ``cls``
            (a ``none`` row stays blind, with the same tokenizer); off: the plain MLP.

    Training:
        rows: ``name=features`` pairs (features: "none", "cls", "xyz" or "cls,xyz").
        pretrain_steps: steps of balanced presence questions ("Is there a <category> in this room?",
            the VSI prompt layout) before the VSI questions; 0: none. Measured: 3,000 such steps
            teach two-token answers, and the VSI stage then cuts three-digit sizes to two digits
            (docs/results.md, "The lookup and the copy").
        pretrain_recipe: how those steps form the question-conditioned lookup (``vlm2_lookup``):
            ``"one-hop-first"``: the first 30 % end the prompt at the category word (video tokens
            then "… Is there a <category>", no chat template), the rest are the chat-layout
            question; ``"curriculum"``: chat-layout questions on 1-frame clips up to 30 %, 4-frame
            clips up to 60 %, then all frames; ``"mixed"``: the curriculum's presence steps interleaved
            evenly with the ``steps`` VSI steps in one schedule of ``steps + pretrain_steps`` (presence
            before VSI taught two-token answers that cut three-digit sizes; mixing is the fix tried);
            ``"token-mixed"``: the same interleave, the presence clips first cut to 1, then 4, 16 and
            64 region tokens (the one showing the category most, plus random others; up to 20 / 35 /
            50 / 65 % of the steps), then whole (``vlm2_lookup``'s ``token-curriculum``);
            ``"token-curriculum"``: those stages as a presence stage before the VSI steps;
            ``"token-raw-first"``: the same stages and then whole clips (up to 80 %) without the chat
            template (video tokens then the prompt, where ``vlm2_lookup`` formed the lookup in every
            seed), the last 20 % in the chat layout; a stage before the VSI steps.
        rehearsal_steps: after a presence stage (not the mixed recipes), that many whole-clip
            chat-layout presence steps interleaved evenly with the ``steps`` VSI steps (one schedule
            of both), so that a lookup formed first is still trained while the VSI answers are.
        freeze_attention_after_stage: after a presence stage (not the mixed recipes), the VSI steps
            leave the language model's attention weights (q, k, v, o) as the stage formed them, so
            the VSI answers cannot overwrite the lookup's attention pattern; the rest still trains.
        text_steps: steps of the VSI questions *without* video before everything else (each prompt's
            video cut to its newline token): the tiny LM's language stage, where it can learn the
            answer priors and the words of the question (the category a size question names, the
            option a choice question's prior favours) at ≈ 1/3 of a 16-frame step's cost; 0: none.
            The held-out VSI score after it is kept beside the result (``text_stage.json``).
        seeds: replicates (initialisation and batch order).
        steps / batch_size / learning_rate: AdamW, cosine schedule, 5 % warm-up (each stage its own
            schedule); min_pixels: a presence question's "yes" threshold.
        max_grad_norm: gradient clipping (1.0); None: none (issue 16's read-out formed only
            unclipped: from ~6 nats at the start, clipping at 1 slows it).
        num_threads / progress: torch threads; progress bars.
        eval_limit: score only the first N held-out questions (smoke runs).
        validation: score on the training split's scenes ``train_scenes`` … ``train_scenes +
            test_scenes − 1`` (never trained on) instead of the test split, so that a recipe can be
            chosen without the held-out questions.
    """

    data_dir: str = "bench"
    base: str = "checkpoints/vlm2-base-synthetic"
    out_dir: str = "oracle_out"
    seed: int = 0
    render_frames: int = 32
    image_size: int = 112
    num_frames: int = 16
    train_scenes: int = 800
    test_scenes: int = 100
    init_range: float | None = None
    tied: bool = False
    rows: tuple[str, ...] = ("oracle-none=none", "oracle-cls=cls", "oracle-cls-xyz=cls,xyz")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 2500
    text_steps: int = 0
    pretrain_steps: int = 0
    pretrain_recipe: str = "one-hop-first"
    rehearsal_steps: int = 0
    freeze_attention_after_stage: bool = False
    min_pixels: int = 100
    batch_size: int = 8
    learning_rate: float = 1e-3
    max_grad_norm: float | None = 1.0
    num_threads: int = 1
    progress: bool = True
    eval_limit: int | None = None
    validation: bool = False

    def held_out(self, scene_name: str) -> bool:
        """Whether ``scene_name`` is a held-out scene (scored, never trained on)."""
        split, index = scene_name.rsplit("_", 1)
        if self.validation:
            return split == "train" and self.train_scenes <= int(index) < self.train_scenes + self.test_scenes
        return split == "test" and int(index) < self.test_scenes

    def trained_on(self, scene_name: str) -> bool:
        """Whether ``scene_name`` is one of the training scenes."""
        split, index = scene_name.rsplit("_", 1)
        return split == "train" and int(index) < self.train_scenes

    def row_features(self) -> dict[str, tuple[str, ...]]:
        """``rows`` parsed: name → feature groups (checked)."""
        parsed = {}
        for row in self.rows:
            name, _, features = row.partition("=")
            groups = tuple(filter(None, features.split(",")))
            if (not name or not groups or any(group not in FEATURE_COLUMNS for group in groups)
                    or ("none" in groups and len(groups) > 1)):
                raise ValueError(f"rows are NAME=FEATURES with features from {sorted(FEATURE_COLUMNS)}; got {row!r}")
            parsed[name] = groups
        return parsed


def region_features(instance: np.ndarray, world_height: np.ndarray, points: np.ndarray, room_height: float,
                    categories: Sequence[int], region: int) -> np.ndarray:
    """Ground truth of each ``region``×``region`` pixel block of rendered frames.

    Args:
        instance: (T, H, W) object index, -1 for the room.
        world_height: (T, H, W) world z of each pixel's surface point (0 floor, ``room_height`` ceiling).
        points: (T, H, W, 3) surface points in the first camera's frame, metres.
        room_height: ceiling height, metres.
        categories: (N,) class index (≥ 3) of each object.
        region: block side in pixels (the pooled token's footprint: 2 × patch).

    Returns:
        (T, P, 17) float32, P = (H/region)·(W/region) blocks row-major: 14 class shares (sum 1),
        then the block's mean point (x, y, z).
    """
    from .vlm2_base import patch_labels

    depth = np.ones(instance.shape, dtype=np.float32)  # patch_labels' depth output is not used here
    shares, _, _ = patch_labels(instance, depth, world_height, room_height, region, categories)
    frames, height, width = instance.shape
    blocks = points.reshape(frames, height // region, region, width // region, region, 3).mean(axis=(2, 4))
    return np.concatenate([shares, blocks.reshape(frames, -1, 3)], axis=-1).astype(np.float32)


def _render_features(config: OracleConfig, split: str, scenes: int, region: int, cache: Path) -> dict[str, np.ndarray]:
    """(num_frames, P, 17) features of the first ``scenes`` scenes of ``split``, cached in ``cache``."""
    from tqdm.auto import tqdm

    from ..data.synthetic import CATEGORIES, SynthConfig, make_scene
    from ..data.synthetic.dataset import first_camera_geometry
    from ..data.video import uniform_frame_indices
    from .vlm2_base import NUM_ROOM_CLASSES

    stored = dict(np.load(cache)) if cache.is_file() else {}
    synth = SynthConfig(num_frames=config.render_frames, image_size=config.image_size, seed=config.seed, split=split)
    category_index = {c.name: NUM_ROOM_CLASSES + i for i, c in enumerate(CATEGORIES)}
    frames = uniform_frame_indices(config.render_frames, config.num_frames)
    missing = [index for index in range(scenes) if f"{split}_{index:05d}" not in stored]
    for count, index in enumerate(tqdm(missing, desc=f"oracle features {split}", unit="scene", disable=not config.progress)):
        item = make_scene(synth, index)
        description = Path(config.data_dir) / "synthetic" / f"{item.name}.json"
        if description.is_file():
            visible = np.asarray(json.loads(description.read_text())["visible_pixels"])
            if not np.array_equal(visible, item.frames.visible_pixels):
                raise ValueError(f"{description} is not scene {item.name} of seed {config.seed}, "
                                 f"{config.render_frames} frames, {config.image_size} px; pass the settings it was rendered with")
        points = first_camera_geometry(item.frames)[0]
        stored[item.name] = region_features(
            item.frames.instance[frames], item.frames.points[frames, ..., 2], points[frames],
            float(item.scene.room_size[2]), [category_index[o.category] for o in item.scene.objects], region,
        ).astype(np.float16)
        if (count + 1) % 100 == 0 or count + 1 == len(missing):
            np.savez(cache, **stored)  # resumable: an interrupted run keeps what it rendered
    return {f"{split}_{index:05d}": stored[f"{split}_{index:05d}"] for index in range(scenes)}


class OracleTokens(nn.Module):
    """Region features → the language model's video tokens.

    ``forward(features, shares=None, category_table=None)``: (B, T, P, F) → (B, T·P + 1, D), the
    T·P region tokens frame after frame (row-major inside a frame, as the pooled SigLIP grid), then
    the learnt newline token (LLaVA-OneVision's "one_token" layout). With ``tied``, each region
    token also gets ``shares`` (B, T, P, 14) @ [3 learnt room vectors; ``category_table`` (11, D)].
    """

    def __init__(self, num_features: int, width: int, init_range: float, tied: bool = False) -> None:
        super().__init__()
        from .vlm2_base import NUM_ROOM_CLASSES

        self.mlp = nn.Sequential(nn.Linear(num_features, width), nn.GELU(), nn.Linear(width, width))
        self.newline = nn.Parameter(torch.randn(width) * init_range)
        self.room = nn.Parameter(torch.randn(NUM_ROOM_CLASSES, width) * init_range) if tied else None

    def forward(self, features: torch.Tensor, shares: torch.Tensor | None = None,
                category_table: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.mlp(features)
        if self.room is not None:
            tokens = tokens + shares @ torch.cat([self.room, category_table])
        tokens = tokens.flatten(1, 2)
        return torch.cat([tokens, self.newline.expand(features.shape[0], 1, -1)], 1)


class OracleLM(nn.Module):
    """A fresh language model of the base's size with ``OracleTokens`` at its video positions.

    Built by :meth:`from_base` (weights fresh, std ``init_range``); ``embeddings`` puts the oracle
    tokens where the prompt's video tokens are; ``language_model`` / ``head`` run the rest.
    """

    def __init__(self, language_model: nn.Module, head: nn.Module, tokens: OracleTokens, columns: np.ndarray,
                 video_token_id: int, category_ids: Sequence[int] = ()) -> None:
        super().__init__()
        self.language_model, self.head, self.tokens = language_model, head, tokens
        self.columns, self.video_token_id, self.category_ids = columns, video_token_id, list(category_ids)

    @classmethod
    def from_base(cls, config: OracleConfig, groups: Sequence[str], seed: int) -> tuple[OracleLM, Any]:
        """``(oracle, processor)`` for feature ``groups``, seeded; checks the base's layout and frame size.
        With ``config.tied`` the processor's tokenizer has the 11 category names as added tokens."""
        from ..data.synthetic import CATEGORIES
        from ..models import VLM2ForConditionalGeneration, load_vlm2

        base, processor = load_vlm2(config.base)
        model_config = base.config
        if (model_config.video_pool_mode, model_config.video_pool_stride, model_config.video_newline_position) != ("bilinear", 2, "one_token"):
            raise ValueError("the oracle reproduces LLaVA-OneVision's layout (bilinear stride-2 pooling, one newline per "
                             f"video); {config.base} has {model_config.video_pool_mode}/{model_config.video_pool_stride}/"
                             f"{model_config.video_newline_position}")
        if config.image_size != model_config.vision_config.image_size:
            raise ValueError(f"the benchmark's frames are {config.image_size} px but {config.base} reads "
                             f"{model_config.vision_config.image_size} px; its video token count would not match")
        category_ids: list[int] = []
        if config.tied:
            names = [c.name for c in CATEGORIES]
            processor.tokenizer.add_tokens(names)  # "trash can" too: added tokens match across the space
            category_ids = processor.tokenizer.convert_tokens_to_ids(names)
            model_config.text_config.vocab_size = len(processor.tokenizer)
        width = model_config.text_config.hidden_size
        init = config.init_range if config.init_range is not None else width ** -0.5
        model_config.text_config.initializer_range = init
        model_config.initializer_range = init
        torch.manual_seed(seed)
        model = VLM2ForConditionalGeneration(model_config)
        columns = np.concatenate([np.arange(17)[FEATURE_COLUMNS[g]] for g in groups])
        # "none": one zero column; it stays blind with ``tied`` (only the tokenizer and vocabulary change).
        tokens = OracleTokens(max(1, len(columns)), width, init, tied=config.tied and "cls" in groups)
        return cls(model.model.language_model, model.lm_head, tokens, columns, processor.video_token_id, category_ids), processor

    def embeddings(self, input_ids: torch.Tensor, features: np.ndarray) -> torch.Tensor:
        """Token embeddings with the oracle tokens at the video positions.

        Args:
            input_ids: (B, L) with T·P + 1 video tokens per row.
            features: (B, T, P, 17) region features (``region_features``).
        Returns:
            (B, L, D).
        """
        embed = self.language_model.embed_tokens
        embedded = embed(input_ids)
        selected = features[..., self.columns] if len(self.columns) else np.zeros((*features.shape[:-1], 1))
        shares = torch.from_numpy(np.ascontiguousarray(features[..., :14])).float()
        table = embed.weight[self.category_ids] if self.tokens.room is not None else None
        video = self.tokens(torch.from_numpy(np.ascontiguousarray(selected)).float(), shares, table)
        return embedded.masked_scatter((input_ids == self.video_token_id)[..., None], video.to(embedded.dtype))


PRESENCE_PROMPT = "These are frames of a video.\nIs there a {category} in this room?\nPlease answer the question using a single word or phrase."


class _OraclePredictor:
    """``(item, prompt) -> answer``: greedy decoding after the question's prompt (≤ 16 tokens);
    ``text_only``: the question without its video (the text stage's layout)."""

    def __init__(self, oracle: OracleLM, processor: Any, features: dict[str, np.ndarray], num_frames: int,
                 text_only: bool = False) -> None:
        self.oracle, self.processor, self.features, self.num_frames = oracle, processor, features, num_frames
        self.text_only = text_only

    def __call__(self, item: Any, prompt: str) -> str:
        from ..train.conversation import IGNORE_INDEX

        oracle, tokenizer = self.oracle, self.processor.tokenizer
        input_ids, labels = encode_question(self.processor, item, self.num_frames, 1 if self.text_only else None)
        answer_start = int((labels != IGNORE_INDEX).nonzero()[0, 0])
        features = self.features[item.scene_name][:0] if self.text_only else self.features[item.scene_name]
        embedded = oracle.embeddings(input_ids[None, :answer_start], features[None])
        generated: list[int] = []
        with torch.no_grad():
            out = oracle.language_model(inputs_embeds=embedded, use_cache=True)
            for _ in range(16):
                token = oracle.head(out.last_hidden_state[:, -1]).argmax(-1)
                if int(token) == tokenizer.eos_token_id:
                    break
                generated.append(int(token))
                out = oracle.language_model(inputs_embeds=oracle.language_model.embed_tokens(token[None]),
                                            cache=out.cache, use_cache=True)
        return tokenizer.decode(generated)


def _train(config: OracleConfig, oracle: OracleLM, processor: Any, stages: Sequence[tuple[float, list]], steps: int,
           seed: int, desc: str) -> list[list[float]]:
    """Train ``oracle`` in place for ``steps``; returns the logged (step, mean loss) pairs.

    ``stages``: (fraction of the steps it lasts up to, examples), the last up to 1; an example is
    ``(input_ids, labels, features)`` with features (T, P, 17), T the same within a stage. Examples
    may instead be a pair of ``(share, examples)`` pools: each step draws its whole batch from one of
    them, interleaved evenly at their shares (``_interleaved_pool``; clips of different lengths never
    meet in one batch).
    """
    from tqdm.auto import tqdm

    from ..train.conversation import IGNORE_INDEX, pad_sequences

    parameters = [p for p in oracle.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    generator = torch.Generator().manual_seed(seed)
    oracle.train()
    log, running = [], []
    for step in tqdm(range(steps), desc=desc, disable=not config.progress):
        examples = next(examples for until, examples in stages if step < until * steps or until >= 1.0)
        if isinstance(examples, tuple):
            examples = _interleaved_pool(examples, step)
        batch = [examples[i] for i in torch.randint(len(examples), (config.batch_size,), generator=generator).tolist()]
        input_ids = pad_sequences([example[0] for example in batch], processor.tokenizer.pad_token_id)
        labels = pad_sequences([example[1] for example in batch], IGNORE_INDEX)
        scene_features = np.stack([example[2] for example in batch])
        # Right padding under the causal mask never reaches a real token: no attention mask needed.
        hidden = oracle.language_model(inputs_embeds=oracle.embeddings(input_ids, scene_features)).last_hidden_state
        target = labels[:, 1:]
        answer = target != IGNORE_INDEX
        loss = torch.nn.functional.cross_entropy(oracle.head(hidden[:, :-1][answer]), target[answer])
        optimizer.zero_grad()
        loss.backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            log.append([step + 1, float(np.mean(running))])
            running = []
    oracle.train(False)
    return log


def _interleaved_pool(pools: Sequence[tuple[float, list]], step: int) -> list:
    """The pool step ``step`` draws from, of two ``(share, examples)`` pools: the first at its share of
    the steps, spread evenly (step s is the first pool's when ⌊(s + 1)·f⌋ > ⌊s·f⌋, f its share)."""
    (first_share, first), (second_share, second) = pools
    fraction = first_share / (first_share + second_share)
    return first if math.floor((step + 1) * fraction) > math.floor(step * fraction) else second


def _presence_stages(config: OracleConfig, processor: Any, features: dict[str, np.ndarray], region: int,
                     seed: int) -> list[tuple[float, list]]:
    """Presence questions of the training scenes as ``_train`` stages (``config.pretrain_recipe``)."""
    from ..data.synthetic import CATEGORIES
    from ..train.conversation import IGNORE_INDEX
    from .vlm2_lookup import _token_subset, presence_items

    train = {name: value for name, value in features.items() if config.trained_on(name)}
    every = config.num_frames
    # (until, frames, layout, region tokens per clip or None for the whole clip); layouts: "chat" (the
    # VSI chat template), "raw" (video tokens then the prompt, no template: where the lookup experiment
    # formed it), "one-hop" (the raw prompt cut at the category word).
    token_stages = ((0.2, 1), (0.35, 4), (0.5, 16), (0.65, 64))
    if config.pretrain_recipe == "one-hop-first":
        stages = ((0.3, every, "one-hop", None), (1.0, every, "chat", None))
    elif config.pretrain_recipe in ("curriculum", "mixed"):
        stages = ((0.3, 1, "chat", None), (0.6, 4, "chat", None), (1.0, every, "chat", None))
    elif config.pretrain_recipe in ("token-curriculum", "token-mixed"):
        stages = (*((until, every, "chat", n) for until, n in token_stages), (1.0, every, "chat", None))
    elif config.pretrain_recipe == "token-raw-first":
        stages = (*((until, every, "raw", n) for until, n in token_stages), (0.8, every, "raw", None), (1.0, every, "chat", None))
    else:
        raise ValueError(f"pretrain_recipe is one of {', '.join(PRETRAIN_RECIPES)}; got {config.pretrain_recipe!r}")
    tokenizer = processor.tokenizer
    rng = np.random.default_rng((seed, 7))
    built = []
    for until, frames, layout, tokens in stages:
        examples = []
        for scene, stride, category, yes in presence_items(train, min(frames, config.num_frames), region, config.min_pixels, seed):
            clip = train[scene][::stride][: len(train[scene]) // stride]
            if tokens is not None:  # issue 16's read-out curriculum: the evidence token plus random others
                clip = _token_subset(clip, category, tokens, rng)
            name, answer = CATEGORIES[category].name, "yes" if yes else "no"
            if layout == "chat":
                input_ids, labels = encode_turn(processor, PRESENCE_PROMPT.format(category=name), answer, len(clip),
                                                 video_tokens=None if tokens is None else clip.shape[1] + 1)
            else:  # no template; "one-hop": the answer follows the category word itself
                text = PRESENCE_PROMPT.format(category=name)
                video = processor.num_video_tokens(len(clip)) if tokens is None else clip.shape[1] + 1
                prompt = [processor.video_token_id] * video + tokenizer.encode(
                    text.split(" in this room?")[0] if layout == "one-hop" else text)
                target = tokenizer.encode(answer)
                input_ids = torch.tensor(prompt + target)
                labels = torch.tensor([IGNORE_INDEX] * len(prompt) + target)
            examples.append((input_ids, labels, clip))
        built.append((until, examples))
    return built


def _presence_accuracy(config: OracleConfig, oracle: OracleLM, processor: Any, features: dict[str, np.ndarray],
                       region: int) -> float:
    """Held-out presence accuracy in the chat layout: the "yes" vs "no" logit at the answer's first token."""
    from ..data.synthetic import CATEGORIES
    from ..train.conversation import IGNORE_INDEX
    from .vlm2_lookup import presence_items

    test = {name: value for name, value in features.items() if config.held_out(name)}
    yes, no = processor.tokenizer.encode("yes")[0], processor.tokenizer.encode("no")[0]
    correct = 0
    items = presence_items(test, config.num_frames, region, config.min_pixels, 0)
    with torch.no_grad():
        for scene, _, category, is_yes in items:
            input_ids, labels = encode_turn(processor, PRESENCE_PROMPT.format(category=CATEGORIES[category].name),
                                             "yes" if is_yes else "no", config.num_frames)
            start = int((labels != IGNORE_INDEX).nonzero()[0, 0])
            hidden = oracle.language_model(inputs_embeds=oracle.embeddings(input_ids[None, :start], test[scene][None])).last_hidden_state
            logits = oracle.head(hidden[0, -1])
            correct += int(bool(logits[yes] > logits[no]) == is_yes)
    return correct / max(1, len(items))


def run_oracle(config: OracleConfig) -> list[Any]:
    """Every (row, seed) of ``config``, resumably; returns the ablation's ``RowSummary`` rows."""
    import transformers

    from ..data.readers import read_benchmark
    from ..eval import evaluate
    from ..eval.metrics import question_types
    from .vlm2_ablation import VariantResult, results_markdown, summarise

    for flag, value in (("rehearsal_steps", config.rehearsal_steps), ("freeze_attention_after_stage", config.freeze_attention_after_stage)):
        if value and (not config.pretrain_steps or config.pretrain_recipe in MIXED_RECIPES):
            raise ValueError(f"{flag} acts after a presence stage: it needs pretrain_steps > 0 and a recipe other than "
                             f"mixed / token-mixed (got pretrain_steps {config.pretrain_steps}, recipe {config.pretrain_recipe})")
    torch.set_num_threads(config.num_threads)
    transformers.logging.set_verbosity_error()
    rows = config.row_features()
    out = Path(config.out_dir)
    (out / "features").mkdir(parents=True, exist_ok=True)
    root = out / "validation" if config.validation else out  # runs and tables scored on validation scenes apart
    data = Path(config.data_dir)
    train_split = read_benchmark(data, "train", question_types("vsibench"))
    train_items = [i for i in train_split if config.trained_on(i.scene_name)]
    test_items = [i for i in (train_split if config.validation else read_benchmark(data, "test", question_types("vsibench")))
                  if config.held_out(i.scene_name)]
    if config.eval_limit is not None:
        test_items = test_items[: config.eval_limit]
    if not train_items or not test_items:
        raise ValueError(f"{data} has no train/test questions in the first {config.train_scenes}/{config.test_scenes} scenes")
    results = []
    for name, groups in rows.items():
        for seed in config.seeds:
            run_dir = root / "runs" / name / f"seed{seed}"
            done = run_dir / "result.json"
            if done.is_file():
                results.append(VariantResult(**json.loads(done.read_text())))
                continue
            oracle, processor = OracleLM.from_base(config, groups, seed)
            region = 2 * processor.patch_size  # a pooled token's footprint
            features = {}
            splits = ((("train", config.train_scenes + config.test_scenes),) if config.validation
                      else (("train", config.train_scenes), ("test", config.test_scenes)))
            for split, scenes in splits:
                # One cache per rendering setting, so another --num-frames never reads stale features.
                cache = out / "features" / f"{split}_seed{config.seed}_frames{config.num_frames}of{config.render_frames}_region{region}.npz"
                features.update(_render_features(config, split, scenes, region, cache))
            tick = time.perf_counter()
            presence = presence_after = text_stage = None
            if config.text_steps:  # the language stage: the same questions, no video
                text = [(*encode_question(processor, item, config.num_frames, video_tokens=1), features[item.scene_name][:0])
                        for item in train_items]
                text_log = _train(config, oracle, processor, [(1.0, text)], config.text_steps, seed, f"{name} seed {seed} text")
                text_stage = evaluate(test_items, _OraclePredictor(oracle, processor, features, config.num_frames, text_only=True),
                                      run_dir / "eval_text", "vsibench", resume=False, show_progress=config.progress,
                                      title=f"oracle text stage — {name} seed {seed}")
                (run_dir / "text_stage.json").write_text(json.dumps(
                    {"text_steps": config.text_steps, "official": text_stage.official.to_dict(), "loss_log": text_log}, indent=1) + "\n")
            vsi = [(*encode_question(processor, item, config.num_frames), features[item.scene_name]) for item in train_items]
            mixed = config.pretrain_steps and config.pretrain_recipe in MIXED_RECIPES
            if mixed:  # presence steps (their clip curriculum) interleaved with the VSI steps from the start
                stages = [(until, ((config.pretrain_steps, questions), (config.steps, vsi)))
                          for until, questions in _presence_stages(config, processor, features, region, seed)]
                log = _train(config, oracle, processor, stages, config.steps + config.pretrain_steps, seed,
                             f"{name} seed {seed} presence + VSI")
                presence = _presence_accuracy(config, oracle, processor, features, region)
            else:
                stages, rehearsal = [(1.0, vsi)], 0
                if config.pretrain_steps:  # presence first; its accuracy after that stage
                    presence_stages = _presence_stages(config, processor, features, region, seed)
                    _train(config, oracle, processor, presence_stages, config.pretrain_steps, seed, f"{name} seed {seed} presence")
                    presence = _presence_accuracy(config, oracle, processor, features, region)
                    if config.freeze_attention_after_stage:
                        for parameter_name, parameter in oracle.language_model.named_parameters():
                            if ".self_attn." in parameter_name:
                                parameter.requires_grad_(False)
                    if config.rehearsal_steps:  # the last stage is whole clips in the chat layout
                        rehearsal = config.rehearsal_steps
                        stages = [(1.0, ((rehearsal, presence_stages[-1][1]), (config.steps, vsi)))]
                log = _train(config, oracle, processor, stages, config.steps + rehearsal, seed, f"{name} seed {seed}")
                if config.pretrain_steps:
                    presence_after = _presence_accuracy(config, oracle, processor, features, region)
            train_seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            scores = evaluate(test_items, _OraclePredictor(oracle, processor, features, config.num_frames), run_dir / "eval", "vsibench",
                              resume=False, show_progress=config.progress, title=f"oracle perception — {name} seed {seed}")
            order = "interleaved with the VSI steps, then" if mixed else "first, then"
            recipe = (" tied to the category words" if config.tied else "") + (
                f", {config.text_steps} text-only VSI steps first ({text_stage.official.overall:.1f} held-out)"
                if text_stage is not None else "") + (
                f", {config.pretrain_steps} presence steps ({config.pretrain_recipe}) {order} "
                f"{100 * presence:.1f} % on held-out presence" if config.pretrain_steps else "") + (
                f"; {config.rehearsal_steps} presence steps among the VSI steps" if config.rehearsal_steps else "") + (
                "; attention frozen for the VSI steps" if config.freeze_attention_after_stage else "") + (
                f"; {100 * presence_after:.1f} % after the VSI steps" if presence_after is not None else "")
            result = VariantResult(
                name=name, description=f"fresh LM on ground-truth {'+'.join(groups)} tokens{recipe}", official=scores.official.to_dict(),
                lenient=scores.lenient.to_dict(), seed=seed, train_seconds=train_seconds,
                eval_seconds=time.perf_counter() - tick, train_loss=log[-1][1], loss_log=log,
                trainable_parameters=sum(p.numel() for p in oracle.parameters()),
            )
            done.write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n")
            results.append(result)
    summary = summarise(results, root, list(rows))
    (root / "results.json").write_text(json.dumps({
        "config": dataclasses.asdict(config), "rows": [dataclasses.asdict(row) for row in summary],
        "results": [dataclasses.asdict(result) for result in results],
    }, indent=1) + "\n")
    (root / "results.md").write_text(results_markdown(summary, results))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_oracle", description=__doc__.split("\n\n")[0])
    defaults = OracleConfig()
    parser.add_argument("--data", default=defaults.data_dir, help="benchmark directory (train and test splits)")
    parser.add_argument("--base", default=defaults.base, help="checkpoint giving the config and tokenizer")
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--rows", default=",".join(r.replace(",", "+") for r in defaults.rows),
                        help="NAME=FEATURES entries, features joined by '+' (e.g. oracle-none=none,oracle-cls-xyz=cls+xyz)")
    parser.add_argument("--seeds", default="0,1,2")
    for flag, field in (("--steps", "steps"), ("--batch-size", "batch_size"), ("--num-frames", "num_frames"),
                        ("--train-scenes", "train_scenes"), ("--test-scenes", "test_scenes"), ("--render-frames", "render_frames"),
                        ("--image-size", "image_size"), ("--seed", "seed"), ("--num-threads", "num_threads"),
                        ("--pretrain-steps", "pretrain_steps"), ("--rehearsal-steps", "rehearsal_steps"),
                        ("--text-steps", "text_steps"),
                        ("--min-pixels", "min_pixels")):
        parser.add_argument(flag, type=int, default=getattr(defaults, field))
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--init-range", type=float, default=None, help="initial weight std (default 1/sqrt(hidden))")
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm, help="gradient clipping; 0: none")
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--pretrain-recipe", default=defaults.pretrain_recipe, choices=PRETRAIN_RECIPES)
    parser.add_argument("--freeze-attention-after-stage", action="store_true",
                        help="the VSI steps after a presence stage leave the LM's attention weights as the stage formed them")
    parser.add_argument("--tied", action="store_true", help="category names as single tokens; video tokens tied to their word embeddings")
    parser.add_argument("--validation", action="store_true",
                        help="score on the training scenes after --train-scenes (choose recipes without the test split)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = OracleConfig(
        data_dir=args.data, base=args.base, out_dir=args.out,
        rows=tuple(entry.replace("+", ",") for entry in filter(None, args.rows.split(","))),
        seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()), steps=args.steps, batch_size=args.batch_size,
        num_frames=args.num_frames, train_scenes=args.train_scenes, test_scenes=args.test_scenes,
        render_frames=args.render_frames, image_size=args.image_size, seed=args.seed, num_threads=args.num_threads,
        learning_rate=args.learning_rate, init_range=args.init_range, max_grad_norm=args.max_grad_norm or None,
        eval_limit=args.eval_limit, progress=not args.no_progress,
        tied=args.tied, text_steps=args.text_steps, pretrain_steps=args.pretrain_steps, pretrain_recipe=args.pretrain_recipe,
        rehearsal_steps=args.rehearsal_steps, freeze_attention_after_stage=args.freeze_attention_after_stage,
        min_pixels=args.min_pixels, validation=args.validation,
    )
    try:
        summary = run_oracle(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    from .vlm2_ablation import results_markdown

    print(results_markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
