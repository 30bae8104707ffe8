"""SHIRG-X evidence: accuracy against token budget on the synthetic high-detail image suite.

    python -m spatialvlm.experiments.shirgx_budget --out shirgx_budget_out --figures docs/figures

One process, one row after another (a progress bar over rows, one inside each training and eval):

1. ``spatialvlm synth --images``'s generator writes a seeded train split and a held-out test split
   (other images: the split name is part of every image's seed) into ``OUT/data``.
2. One randomly initialised tiny LLaVA-OneVision (SigLIP at 672 px, patch 14 → the real 48×48 grid;
   a tiny Qwen2) is saved to ``OUT/base``; every row starts from exactly these weights.
3. Each row trains the *whole* VLM (nothing in it is pretrained) with its own selector, on the same
   questions in the same order, for the same steps, with the same budget K drawn per step from the
   training budgets (``sample_budget``: SHIRG-X's mixed-budget recipe, applied to every row). SHIRG-X
   rows train through ``ShirgXTrainingModel`` (the ``shirgx`` task's model: the mixed-budget answer
   loss and the adaptive head's budget targets); baseline rows through ``ShirgXImagePath.forward``
   with a ``BaselineSelector``. Both losses are the mean cross-entropy over answer tokens.
4. Each trained row answers every test question greedily at every evaluation budget (the vision
   tower runs once per image) and is scored with the suite's official metric (exact match, ChartQA
   relaxed accuracy, DocVQA ANLS). The SHIRG-X row is also evaluated with ``budget=None``: the
   adaptive head picks K per image ("shirgx-adaptive").
5. ``OUT/results.{json,md}`` hold the tables; ``--figures`` writes the plots.

Evaluation budgets (``eval_budgets``), as image tokens handed to the language model:

- ``0`` → 144 tokens: the 12×12 scaffold only (4×4 average pooling), the same for every row.
- ``K`` ∈ {512, 768, 1024} → K + 144 tokens. SHIRG-X: scaffold + K selected groups; a baseline spends
  all K + 144 on its own method (what a user would run instead).
- ``2304`` → every patch, no selection: SHIRG-X keeps all 2,304 patches plus the scaffold (2,448
  tokens, nothing merges when K = N); a baseline gets the 2,304 patches in raster order.

Validation points measured on the way: spatial spread of the kept tokens (12×12 scaffold cells their
source patches cover; share of the answer-region patches of ``region_patch_mask`` they cover), the
adaptive head's K against an image-complexity measure (share of non-background pixels), the token
count per budget (static: the same for every image), and the KV-cache memory per budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BudgetExperimentConfig",
    "BudgetRow",
    "BUDGET_ROWS",
    "BudgetExperimentResult",
    "kv_cache_bytes",
    "bootstrap_ci",
    "quick_config",
    "pretrain_vision_tower",
    "spatial_spread",
    "full_resolution_coverage",
    "run_budget_experiment",
    "budget_results_markdown",
    "seeds_summary_markdown",
    "plot_budget_results",
    "main",
]

# LaViDa's language model (LLaDA-8B, LLaMA-like): 32 layers, 32 KV heads of 128, bf16.
LAVIDA_KV = {"layers": 32, "kv_heads": 32, "head_dim": 128, "bytes_per_value": 2}


@dataclass(frozen=True)
class BudgetRow:
    """One row of the comparison.

    Attributes:
        name: short name used in tables, plots and folder names.
        method: "shirgx" or one of ``selection.BASELINES``.
        description: what the row is.
        selector_overrides: ``ShirgXConfig`` fields changed from the default (SHIRG-X ablations).
    """

    name: str
    method: str
    description: str
    selector_overrides: dict[str, Any] = field(default_factory=dict)


BUDGET_ROWS: tuple[BudgetRow, ...] = (
    BudgetRow("shirgx", "shirgx", "SHIRG-X, fixed K (also evaluated with the adaptive head: shirgx-adaptive)"),
    BudgetRow("shirgx-no-coord", "shirgx", "SHIRG-X without the coordinate embedding", {"add_coord_embedding": False}),
    BudgetRow("shirgx-no-merge", "shirgx", "SHIRG-X without merging (ε = 0)", {"merge_threshold": 0.0}),
    BudgetRow("pool", "pool", "uniform average pooling to K + 144, after the projector (LaViDa's pooling order)"),
    BudgetRow("random", "random", "K + 144 patches uniformly at random"),
    BudgetRow("bipartite", "bipartite", "post-hoc bipartite soft matching (ToMe's rule) on final features to K + 144"),
    BudgetRow("tome", "tome", "ToMe inside SigLIP: r per layer, keys as metric, proportional attention, to K + 144"),
    BudgetRow("visionzip", "visionzip", "VisionZip: layer attention received (dominant) + key-similarity contextual merging"),
    BudgetRow("divprune", "divprune", "DivPrune max-min diversity on the projected tokens"),
)


@dataclass
class BudgetExperimentConfig:
    """Every knob of the experiment, with the defaults the documented run used.

    Attributes:
        out_dir: where data, the base checkpoint and results go.
        rows: names of ``BUDGET_ROWS`` to run, in order.
        train_images, test_images: images per split (``questions_per_image`` questions each).
        questions_per_image: questions per image.
        families: image families (``data.synthetic_images.FAMILIES``).
        vision_width, vision_layers: tiny SigLIP (heads: 2; MLP 2×width).
        text_width, text_layers: tiny Qwen2 (4 heads, 2 KV heads; MLP 2×width).
        epochs, batch_size, learning_rate, weight_decay: AdamW over every parameter.
        train_budgets: K drawn per optimiser step (``sample_budget``).
        eval_budgets: 0 = scaffold only, 2304 = every patch, others K (+ 144 scaffold).
        budget_target_every: steps between the adaptive head's target computations (SHIRG-X rows).
        max_new_tokens: greedy answer length.
        seed: data, initialisation, order and budget draws.
        threads: torch CPU threads.
        show_progress: tqdm bars.
        pretrain_steps: optimiser steps pretraining the vision tower on the generator's exact
            per-patch labels (``data.synthetic_images.patch_labels``: colour, glyph, frame) before any
            row; 0 = off (the tower starts random and trains with each row).
        pretrain_batch_size, pretrain_learning_rate: that pretraining's batch and AdamW rate.
        freeze_vision: keep the (pretrained) vision tower fixed while rows train the projector, the
            language model and the selector's own parts.
        objective: "ar" (next-token cross-entropy, greedy decoding) or "diffusion" (the tiny LM
            becomes a bidirectional masked-diffusion LM: LaViDa's complementary-masking loss of
            ``train.tasks.shirgx`` and the masked-diffusion decoder).
        diffusion_loss_weighting: "lavida" or "elbo" (``ShirgXTrainingConfig``).
        bootstrap_samples: resamples of the questions for each accuracy's 95 % percentile CI.
    """

    out_dir: str = "shirgx_budget_out"
    rows: tuple[str, ...] = tuple(row.name for row in BUDGET_ROWS)
    train_images: int = 140
    test_images: int = 64
    questions_per_image: int = 2
    families: tuple[str, ...] = ("marks", "glyphs", "bars", "layout")
    vision_width: int = 32
    vision_layers: int = 2  # ToMe halves at most per layer: 2304 → K + 144 needs two
    text_width: int = 64
    text_layers: int = 2
    epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    train_budgets: tuple[int, ...] = (512, 768, 1024)
    eval_budgets: tuple[int, ...] = (0, 512, 768, 1024, 2304)
    budget_target_every: int = 4
    max_new_tokens: int = 6
    seed: int = 0
    threads: int = 1
    show_progress: bool = True
    pretrain_steps: int = 0
    pretrain_batch_size: int = 4
    pretrain_learning_rate: float = 3e-3
    freeze_vision: bool = False
    objective: str = "ar"
    diffusion_loss_weighting: str = "lavida"
    bootstrap_samples: int = 1000


def quick_config(**overrides: Any) -> BudgetExperimentConfig:
    """``--quick``: the detail families only (answers that 2×2 pooling erases), a pretrained frozen
    tower, diffusion objective, SHIRG-X against LaViDa's pooling; sized for ≤ 15 min on 2 CPU cores."""
    from ..data.synthetic_images import DETAIL_FAMILIES

    values: dict[str, Any] = dict(
        rows=("shirgx", "pool"), train_images=160, test_images=36, questions_per_image=1,
        families=DETAIL_FAMILIES, epochs=2, pretrain_steps=100, freeze_vision=True, objective="diffusion",
        learning_rate=3e-3, max_new_tokens=4,  # "purple" is 3 tiny-tokenizer tokens, then the end token
    )
    values.update(overrides)
    return BudgetExperimentConfig(**values)


@dataclass
class BudgetExperimentResult:
    """Everything measured (``OUT/results.json``).

    Attributes:
        config: the ``BudgetExperimentConfig`` as a dict.
        accuracy: row → budget (str) → official score in percent (mean over questions).
        family_accuracy: row → budget → question type → percent.
        adaptive: the adaptive head's evaluation: accuracy, mean K, per-image K and complexity.
        spread: row → budget → {"cells_covered", "region_coverage", "region_full_res"} means over
            test images (``spatial_spread``; ``full_resolution_coverage``).
        token_counts: row → budget → sorted distinct image-token counts seen (one value: static).
        seconds: row → {"train", "eval"} wall seconds; ``prefill_ms`` row → budget → mean ms of
            selection + projection + greedy decoding of one answer (the vision tower excluded).
        memory: budget → {"tokens", "tiny_kv_bytes", "lavida_kv_bytes"}.
        train_losses: row → mean answer loss of each epoch.
        accuracy_ci: row → budget → [low, high] 95 % bootstrap CI of ``accuracy`` (percent).
        scores: row → budget → per-question scores (0..1, test-file order; seeds pool these).
        selector_ms: row → budget → mean ms of selection + projection alone (vision tower and
            decoding excluded; ToMe: its tower pass, which is where it selects).
        pretrain: the vision tower's pretraining: losses, and per-patch accuracy on the test images
            (colour of coloured patches, glyph of one-character patches, frame recall).
        predictions: row → budget → decoded answers (test-file order), for failure analysis.
    """

    config: dict[str, Any]
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    family_accuracy: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    adaptive: dict[str, Any] = field(default_factory=dict)
    spread: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    token_counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    prefill_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    train_losses: dict[str, list[float]] = field(default_factory=dict)
    accuracy_ci: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    selector_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def bootstrap_ci(scores: Sequence[float], samples: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI (percent) of the mean of ``scores`` (0..1), resampling questions."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return [math.nan, math.nan]
    draws = np.random.default_rng(seed).integers(values.size, size=(samples, values.size))
    means = values[draws].mean(1)
    tail = (1 - level) / 2
    return [100 * float(np.quantile(means, tail)), 100 * float(np.quantile(means, 1 - tail))]


def kv_cache_bytes(tokens: int, layers: int, kv_heads: int, head_dim: int, bytes_per_value: int) -> int:
    """Bytes of a key/value cache holding ``tokens`` positions (keys and values, every layer)."""
    return 2 * layers * kv_heads * head_dim * bytes_per_value * tokens


def spatial_spread(source_index, is_scaffold, grid: int, pool: int, region_masks, max_group: int = 5):
    """Where the kept *fine* tokens come from.

    A fine token is a non-scaffold token averaging at most ``max_group`` patches (5: SHIRG-X's
    largest merged group, a patch and its four neighbours); coarser ones (a pooled cell, a big ToMe or
    VisionZip contextual group) are left out, as is the scaffold: every patch is the source of *some*
    token under pooling or merging, so only fine tokens say where detail was kept.

    Args:
        source_index: (B, T, W) patch indices each token averages, −1 padded.
        is_scaffold: (B, T) bool.
        grid: patch grid side (48); pool: scaffold cell side in patches (4 → 12×12 cells).
        region_masks: (B, grid·grid) bool, the answer-region patches.
        max_group: most patches a fine token may average.

    Returns:
        ``(cells_covered, region_coverage)``: (B,) number of scaffold cells holding a source patch of a
        fine token, and (B,) share of the answer-region patches that are a source of a fine token
        (NaN where an image has no region).
    """
    import torch

    batch = source_index.shape[0]
    fine = ~is_scaffold & ((source_index >= 0).sum(-1) <= max_group)
    sources = source_index.masked_fill(~fine[..., None], -1).flatten(1)
    covered = torch.zeros(batch, grid * grid + 1, dtype=torch.bool, device=sources.device)
    covered.scatter_(1, torch.where(sources < 0, grid * grid, sources), True)
    covered = covered[:, : grid * grid]
    cells = covered.view(batch, grid // pool, pool, grid // pool, pool).any(dim=4).any(dim=2).flatten(1).sum(1)
    hits = (covered & region_masks).sum(1).float()
    return cells, hits / region_masks.sum(1).float()


def pretrain_vision_tower(vlm, train_set, test_set, config: BudgetExperimentConfig) -> dict[str, Any]:
    """Train ``vlm``'s SigLIP tower in place on exact per-patch labels, through three linear heads
    (colour: none + palette; glyph: none + ``GLYPH_ALPHABET``; frame: no/yes) on the feature layer
    the projector reads, then drop the heads. Cross-entropy per head, mean over labelled patches;
    the frame head's positive class is weighted by the patch count (one framed patch per image).

    Args:
        vlm: the LLaVA-OneVision model (its ``model.vision_tower`` trains).
        train_set, test_set: ``(pixels (I, 3, S, S), labels {"color", "glyph", "frame"}: (I, G·G))``.
        config: ``pretrain_steps``, ``pretrain_batch_size``, ``pretrain_learning_rate``, ``seed``.

    Returns:
        ``{"losses": per-step loss, "test_accuracy": {"color", "glyph", "frame_recall"} percent}``.
    """
    import numpy as np
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from ..data.synthetic_images import GLYPH_ALPHABET, IGNORE_LABEL, PALETTE

    tower = vlm.model.vision_tower
    layer = vlm.config.vision_feature_layer
    width = vlm.config.vision_config.hidden_size
    torch.manual_seed(config.seed)
    heads = nn.ModuleDict({
        "color": nn.Linear(width, 1 + len(PALETTE)), "glyph": nn.Linear(width, 1 + len(GLYPH_ALPHABET)),
        "frame": nn.Linear(width, 2),
    })
    patches = train_set[1]["color"].shape[1]
    frame_weight = torch.tensor([1.0, float(patches) ** 0.5])

    def features(pixels):
        return tower(pixels, output_hidden_states=True).hidden_states[layer]

    def losses(hidden, labels):
        total = 0.0
        for key, head in heads.items():
            logits = head(hidden).flatten(0, 1)
            target = labels[key].flatten()
            if not (target != IGNORE_LABEL).any():
                continue
            weight = frame_weight if key == "frame" else None
            total = total + nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_LABEL)
        return total

    parameters = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.pretrain_learning_rate)
    steps = config.pretrain_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10) * (1 - step / steps))
    rng = np.random.default_rng(config.seed)
    pixels, labels = train_set
    history = []
    tower.train()
    bar = tqdm(range(steps), desc="pretrain vision tower", unit="step", disable=not config.show_progress, leave=False)
    for _ in bar:
        chosen = torch.from_numpy(rng.choice(len(pixels), size=min(config.pretrain_batch_size, len(pixels)), replace=False))
        loss = losses(features(pixels[chosen]), {key: value[chosen] for key, value in labels.items()})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    tower.eval()
    hits = {"color": [0, 0], "glyph": [0, 0], "frame_recall": [0, 0]}
    with torch.no_grad():
        test_pixels, test_labels = test_set
        for start in range(0, len(test_pixels), 8):
            hidden = features(test_pixels[start : start + 8])
            for key, name in (("color", "color"), ("glyph", "glyph"), ("frame", "frame_recall")):
                target = test_labels[key][start : start + 8]
                predicted = heads[key](hidden).argmax(-1)
                scored = target > 0  # the patches that hold a colour / character / the frame
                hits[name][0] += int((predicted[scored] == target[scored]).sum())
                hits[name][1] += int(scored.sum())
    return {
        "losses": history,
        "test_accuracy": {name: 100 * right / total if total else math.nan for name, (right, total) in hits.items()},
    }


def full_resolution_coverage(source_index, region_masks):
    """Share of the answer-region patches kept at full resolution: the *only* source of some token.

    ``spatial_spread`` counts a 2×2-pooled token as covering its four patches; on the detail
    families that is exactly the token whose average has lost the answer, so this stricter measure
    sits beside it.

    Args:
        source_index: (B, T, W) patch indices each token averages, −1 padded.
        region_masks: (B, G·G) bool.
    Returns:
        (B,) share (NaN where an image has no region).
    """
    import torch

    batch, patches = region_masks.shape
    single = (source_index >= 0).sum(-1) == 1
    sources = torch.where(single, source_index[..., 0], patches)
    kept = torch.zeros(batch, patches + 1, dtype=torch.bool, device=source_index.device)
    kept.scatter_(1, sources.clamp(min=0), True)
    hits = (kept[:, :patches] & region_masks).sum(1).float()
    return hits / region_masks.sum(1).float()


def _ink_fraction(image) -> float:
    """Image complexity independent of any model: share of pixels that are not the background."""
    import numpy as np

    from ..data.synthetic_images import BACKGROUND

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - np.asarray(BACKGROUND, dtype=np.int16)).sum(-1) > 24).mean())


class _Experiment:
    """The state one run shares across rows: data, tokenizer, base checkpoint, tokenised items."""

    def __init__(self, config: BudgetExperimentConfig) -> None:
        from ..data.synthetic_images import ImageSuiteConfig, generate_image_suite
        from ..models.tiny import build_tiny_tokenizer, tiny_llava_onevision_config
        from ..selection import ShirgXConfig

        self.config = config
        self.out = Path(config.out_dir)
        data = self.out / "data"
        self.paths = {}
        for split, count in (("train", config.train_images), ("test", config.test_images)):
            suite = ImageSuiteConfig(
                num_images=count, seed=config.seed, split=split,
                questions_per_image=config.questions_per_image, families=tuple(config.families),
            )
            self.paths[split] = generate_image_suite(data, suite, show_progress=config.show_progress)
        self.tokenizer = build_tiny_tokenizer()
        width = config.vision_width
        self.vlm_config = tiny_llava_onevision_config(
            vision_config={"hidden_size": width, "intermediate_size": 2 * width,
                           "num_hidden_layers": config.vision_layers, "image_size": 672},
            text_config={"hidden_size": config.text_width, "intermediate_size": 2 * config.text_width,
                         "num_hidden_layers": config.text_layers},
        )
        if config.objective not in ("ar", "diffusion"):
            raise ValueError(f"objective must be 'ar' or 'diffusion'; got {config.objective!r}")
        if config.objective == "diffusion":
            # What `spatialvlm convert lavida` marks: a bidirectional masked-diffusion LM.
            from ..models.diffusion import DIFFUSION_ATTENTION_KEY

            setattr(self.vlm_config.text_config, DIFFUSION_ATTENTION_KEY, "bidirectional")
            self.vlm_config.text_config.mask_token_id = self.tokenizer.mask_token_id
        self.selector_config = ShirgXConfig(
            vision_dim=width, grid=(48, 48), budgets=tuple(config.train_budgets),
            default_budget=config.train_budgets[len(config.train_budgets) // 2],
        )
        self.base_dir = self.out / "base"
        self.train_items, self.train_records = self._items("train")
        self.test_items, self.test_records = self._items("test")
        self.pretrain: dict[str, Any] = {}
        self._save_base()

    def _save_base(self) -> None:
        import torch

        from ..models.shirgx_vlm import build_shirgx_base

        torch.manual_seed(self.config.seed)
        vlm = build_shirgx_base(self.vlm_config)
        if self.config.pretrain_steps > 0:
            self.pretrain = pretrain_vision_tower(
                vlm, self._patch_label_set("train"), self._patch_label_set("test"), self.config,
            )
        vlm.save_pretrained(self.base_dir)

    def _patch_label_set(self, split: str):
        """(pixels (I, 3, S, S), {"color", "glyph", "frame"}: (I, G·G) long) over a split's images."""
        import torch

        items = self.train_items if split == "train" else self.test_items
        records = self.train_records if split == "train" else self.test_records
        pixels, labels, seen = [], {"color": [], "glyph": [], "frame": []}, set()
        for item, record in zip(items, records):
            if record["image"] in seen:
                continue
            seen.add(record["image"])
            description = json.loads((self.paths[split].parent / record["image"]).with_suffix(".json").read_text())
            pixels.append(item["pixel_values"])
            for key in labels:
                labels[key].append(torch.tensor(description["patch_labels"][key]).flatten())
        return torch.stack(pixels), {key: torch.stack(value) for key, value in labels.items()}

    def training_config(self, row: BudgetRow):
        from ..train.tasks.shirgx import ShirgXTrainingConfig

        selector = dataclasses.replace(self.selector_config, **row.selector_overrides)
        return ShirgXTrainingConfig(
            selector=selector, image_size=672, budget_target_every=self.config.budget_target_every,
            diffusion_loss_weighting=self.config.diffusion_loss_weighting,
        )

    def _items(self, split: str):
        """Tokenised items of a split (``ImageQADataset``; one pixel tensor per image) and its raw rows."""
        from ..eval.image_prompts import ImagePromptConfig
        from ..train.arguments import DataArguments
        from ..train.tasks.shirgx import ImageQADataset, load_image_qa_records

        path = self.paths[split]
        records = load_image_qa_records(path, ImagePromptConfig().post_prompt)
        data_args = DataArguments(data_path=str(path), model_max_length=4096)
        dataset = ImageQADataset(
            records, self.tokenizer, self.vlm_config.image_token_id, self.training_config(BUDGET_ROWS[0]),
            data_args, path.parent,
        )
        pixels: dict[str, Any] = {}
        items = []
        for index, record in enumerate(records):
            item = dataset[index]
            # Questions of one image share its pixel tensor (5.4 MB each at 672 px).
            item["pixel_values"] = pixels.setdefault(record["image"], item["pixel_values"])
            items.append(item)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return items, rows

    def model_for(self, row: BudgetRow):
        """``(trainable module, ShirgXImagePath)`` of a row, from the shared base weights."""
        from ..models.shirgx_vlm import ShirgXImagePath, load_shirgx_base
        from ..selection import BaselineSelector, ShirgXSelector
        import torch

        from ..train.tasks.shirgx import ShirgXTrainingModel

        vlm = load_shirgx_base(self.base_dir)
        if self.config.freeze_vision:
            vlm.model.vision_tower.requires_grad_(False)
        torch.manual_seed(self.config.seed)
        training_config = self.training_config(row)
        if row.method == "shirgx":
            model = ShirgXTrainingModel(vlm, ShirgXSelector(training_config.selector), training_config)
            return model, model.image_path()
        selector = BaselineSelector(row.method, training_config.selector, seed=self.config.seed)
        path = ShirgXImagePath(vlm, selector, training_config.image_config())
        return path, path


def _train_row(experiment: _Experiment, row: BudgetRow, model, path) -> list[float]:
    """Train every parameter of ``model`` on the train split; returns each epoch's mean answer loss."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..train.tasks.shirgx import ImageQACollator, sample_budget

    config = experiment.config
    collate = ImageQACollator(experiment.tokenizer.pad_token_id)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    order_rng = np.random.default_rng(config.seed)
    items = experiment.train_items
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10) * (1 - step / total))
    model.train()
    losses: list[float] = []
    step = 0
    bar = tqdm(total=total, desc=f"train {row.name}", unit="step", disable=not config.show_progress, leave=False)
    for _ in range(config.epochs):
        order = order_rng.permutation(len(items))
        epoch_losses = []
        for start in range(0, len(items), config.batch_size):
            batch = collate([items[i] for i in order[start : start + config.batch_size]])
            budget = sample_budget(config.train_budgets, config.seed, step)
            if row.method == "shirgx":
                every = config.budget_target_every
                output = model(**batch, budget=budget, compute_budget_target=every > 0 and step % every == 0)
                loss, answer_loss = output.loss, output.answer_loss
            elif config.objective == "diffusion":
                loss = _baseline_diffusion_loss(path, batch, budget, experiment.training_config(row))
                answer_loss = loss.detach()
            else:
                loss = path(**batch, budget=budget).loss
                answer_loss = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            epoch_losses.append(float(answer_loss))
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}", K=budget)
        losses.append(sum(epoch_losses) / len(epoch_losses))
    bar.close()
    model.eval()
    return losses


def _baseline_diffusion_loss(path, batch, budget: int, training_config) -> Any:
    """LaViDa's complementary-masking loss for a baseline row: the same masking, copies, attention and
    weighting as ``ShirgXTrainingModel`` (whose forward also needs SHIRG-X's budget head), reusing its
    two-copy forward on this path's image tokens."""
    from types import SimpleNamespace

    import torch

    from ..models.diffusion import checkpoint_diffusion_attention
    from ..train.conversation import IGNORE_INDEX
    from ..train.tasks.shirgx import ShirgXTrainingModel, diffusion_answer_mask, masked_diffusion_loss

    model = path.model
    input_ids, labels = batch["input_ids"], batch["labels"]
    labels = torch.where(batch["attention_mask"] == 0, input_ids, labels)  # padding is answer (LLaDA SFT)
    attention_mask = torch.ones_like(batch["attention_mask"])
    text_answer = labels != IGNORE_INDEX
    masked, ratio = diffusion_answer_mask(text_answer, training_config.diffusion_mask_eps)
    question_embeds = model.get_input_embeddings()(batch["question_ids"])
    features = path.image_features(batch["pixel_values"], None, question_embeds, batch["question_mask"].bool(), budget)
    inputs = path.build_inputs(input_ids, features.tokens, attention_mask, labels)
    expanded_labels = inputs.pop("labels")
    answer = expanded_labels != IGNORE_INDEX
    expanded_masked = torch.zeros_like(answer)
    expanded_masked[answer] = masked[text_answer]
    shim = SimpleNamespace(
        model=model, mask_token_id=model.config.text_config.mask_token_id,
        diffusion_attention=checkpoint_diffusion_attention(model.config),
    )
    logits = ShirgXTrainingModel._diffusion_logits(shim, inputs, answer, expanded_masked)
    loss, _ = masked_diffusion_loss(
        logits, expanded_labels, expanded_masked, ratio, training_config.diffusion_loss_weighting,
        training_config.diffusion_mask_eps,
    )
    return loss


def _image_tokens(path, scaffold_path, hidden_states, question_embeds, budget: int, smallest: int, pixel_values=None):
    """Projected image tokens and the selection at an evaluation budget (see the module docstring)."""
    if budget == 0:
        features = scaffold_path.select_and_project(hidden_states, question_embeds, None, smallest)
        count = features.selection.is_scaffold[0].sum()
        return features.tokens[:, :count], None
    if budget >= 2304 and not hasattr(path.selector, "budget_head"):
        # A baseline's K + 144 = every patch: K = N − 144.
        budget = 2304 - path.selector.config.num_scaffold
    if getattr(path.selector, "method", None) == "tome":
        # ToMe merges inside SigLIP: the tower runs again per budget, from the pixels.
        features = path.image_features(pixel_values, budget=budget)
    else:
        features = path.select_and_project(hidden_states, question_embeds, None, budget)
    return features.tokens, features.selection


@dataclass
class _RowEval:
    scores: dict[str, list[float]]
    families: dict[str, dict[str, list[float]]]
    cells: dict[str, list[float]]
    region: dict[str, list[float]]
    counts: dict[str, set[int]]
    prefill: dict[str, list[float]]
    adaptive_k: list[int]
    complexity: list[float]
    selector: dict[str, list[float]] = field(default_factory=dict)
    full_res: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[str, list[str]] = field(default_factory=dict)


def _evaluate_row(experiment: _Experiment, row: BudgetRow, path, adaptive: bool) -> _RowEval:
    """Greedy answers to every test question at every evaluation budget (plus the adaptive head)."""
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from ..data.synthetic_images import region_patch_mask
    from ..eval.image_metrics import score_image_prediction
    from ..models.shirgx_vlm import ShirgXImagePath
    from ..selection import BaselineSelector
    from ..train.conversation import IGNORE_INDEX

    config = experiment.config
    tokenizer = experiment.tokenizer
    selector_config = path.selector.config
    # Scaffold-only input: the scaffold SHIRG-X rows hand on (coordinate embedding included); for a
    # baseline the plain 12×12 pooled scaffold.
    scaffold_path = path if row.method == "shirgx" else ShirgXImagePath(
        path.model, BaselineSelector("pool", selector_config, keep_scaffold=True), path.config
    )
    budgets = [str(b) for b in config.eval_budgets] + (["adaptive"] if adaptive else [])
    result = _RowEval({b: [] for b in budgets}, {b: {} for b in budgets}, {}, {}, {}, {}, [], [])
    embeddings = path.model.get_input_embeddings()
    diffusion_generator = None
    if config.objective == "diffusion":
        from ..models.diffusion import DiffusionConfig, MaskedDiffusionGenerator

        diffusion_generator = MaskedDiffusionGenerator.from_model(path.model, DiffusionConfig(
            mask_token_id=tokenizer.mask_token_id, answer_length=config.max_new_tokens,
        ))
    bar = tqdm(total=len(experiment.test_items), desc=f"eval {row.name}", unit="q", disable=not config.show_progress, leave=False)
    for item, record in zip(experiment.test_items, experiment.test_records):
        labelled = (item["labels"] != IGNORE_INDEX).nonzero()
        prompt_ids = item["input_ids"][: int(labelled[0, 0])][None]
        question_embeds = embeddings(item["question_ids"][None])
        regions = torch.from_numpy(region_patch_mask(record["regions"])).flatten()[None]
        with torch.no_grad():
            hidden_states = path.vision_hidden_states(item["pixel_values"][None])
            for budget in budgets:
                started = time.perf_counter()
                if budget == "adaptive":
                    features = path.select_and_project(hidden_states, question_embeds, None, None)
                    tokens, selection = features.tokens, features.selection
                    result.adaptive_k.append(int(selection.budget))
                    with Image.open(experiment.paths["test"].parent / record["image"]) as image:
                        result.complexity.append(_ink_fraction(image))
                else:
                    tokens, selection = _image_tokens(
                        path, scaffold_path, hidden_states, question_embeds, int(budget), min(config.train_budgets),
                        item["pixel_values"][None],
                    )
                result.selector.setdefault(budget, []).append(time.perf_counter() - started)
                inputs = path.build_inputs(prompt_ids, tokens)
                if diffusion_generator is not None:
                    answer = diffusion_generator.generate(
                        prompt_embeds=inputs["inputs_embeds"], prompt_attention_mask=inputs["attention_mask"],
                    ).sequences[0]
                else:
                    answer = path.model.generate(
                        **inputs, max_new_tokens=config.max_new_tokens, do_sample=False,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    )[0]
                result.prefill.setdefault(budget, []).append(time.perf_counter() - started)
                stops = (answer == tokenizer.eos_token_id).nonzero()
                answer = answer[: int(stops[0, 0])] if len(stops) else answer
                prediction = tokenizer.decode(answer, skip_special_tokens=True).strip()
                score = score_image_prediction({**record, "prediction": prediction})
                result.scores[budget].append(score)
                result.predictions.setdefault(budget, []).append(prediction)
                result.families[budget].setdefault(record["question_type"], []).append(score)
                result.counts.setdefault(budget, set()).add(int(tokens.shape[1]))
                if selection is not None:
                    cells, coverage = spatial_spread(
                        selection.source_index, selection.is_scaffold, selector_config.grid[0],
                        selector_config.scaffold_pool, regions,
                    )
                    result.cells.setdefault(budget, []).append(float(cells[0]))
                    result.region.setdefault(budget, []).append(float(coverage[0]))
                    full = full_resolution_coverage(selection.source_index, regions)
                    result.full_res.setdefault(budget, []).append(float(full[0]))
        bar.update()
    bar.close()
    return result


def run_budget_experiment(config: BudgetExperimentConfig | None = None) -> BudgetExperimentResult:
    """Run every row (see the module docstring); writes ``OUT/results.{json,md}``."""
    import torch
    from tqdm.auto import tqdm

    config = config or BudgetExperimentConfig()
    unknown = sorted(set(config.rows) - {row.name for row in BUDGET_ROWS})
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {[row.name for row in BUDGET_ROWS]}")
    if "tome" in config.rows:
        from ..selection import tome_schedule

        for budget in config.train_budgets:  # raises with the reason when the tower is too shallow
            tome_schedule(2304, budget + 144, config.vision_layers)
    if any(b != 0 and b != 2304 and b not in config.train_budgets for b in config.eval_budgets):
        raise ValueError(f"eval_budgets {config.eval_budgets} must be 0, 2304 or one of train_budgets {config.train_budgets}")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        experiment = _Experiment(config)
        result = BudgetExperimentResult(config=dataclasses.asdict(config), pretrain=experiment.pretrain)
        rows = [row for row in BUDGET_ROWS if row.name in config.rows]
        for row in tqdm(rows, desc="rows", unit="row", disable=not config.show_progress):
            model, path = experiment.model_for(row)
            started = time.perf_counter()
            result.train_losses[row.name] = _train_row(experiment, row, model, path)
            trained = time.perf_counter()
            adaptive = row.name == "shirgx"
            evaluation = _evaluate_row(experiment, row, path, adaptive)
            result.seconds[row.name] = {"train": trained - started, "eval": time.perf_counter() - trained}
            _record(result, row.name, evaluation)
            if adaptive:
                adaptive_scores = evaluation.scores.pop("adaptive")
                result.adaptive = {
                    "accuracy": 100 * sum(adaptive_scores) / len(adaptive_scores),
                    "mean_budget": sum(evaluation.adaptive_k) / len(evaluation.adaptive_k),
                    "budgets": evaluation.adaptive_k,
                    "complexity": evaluation.complexity,
                    "question_types": [r["question_type"] for r in experiment.test_records],
                }
                result.accuracy[row.name].pop("adaptive")
        tiny = experiment.vlm_config.text_config
        tiny_kv = dict(layers=tiny.num_hidden_layers, kv_heads=tiny.num_key_value_heads,
                       head_dim=tiny.hidden_size // tiny.num_attention_heads, bytes_per_value=4)
        for budget in config.eval_budgets:
            tokens = 144 if budget == 0 else (2304 if budget == 2304 else budget + 144)
            result.memory[str(budget)] = {
                "tokens": tokens,
                "tiny_kv_bytes": kv_cache_bytes(tokens, **tiny_kv),
                "lavida_kv_bytes": kv_cache_bytes(tokens, **LAVIDA_KV),
            }
        out = Path(config.out_dir)
        (out / "results.json").write_text(json.dumps(dataclasses.asdict(result), indent=1))
        (out / "results.md").write_text(budget_results_markdown(result))
        return result
    finally:
        torch.set_num_threads(threads)


def _record(result: BudgetExperimentResult, name: str, evaluation: _RowEval) -> None:
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    result.accuracy[name] = {b: 100 * mean(v) for b, v in evaluation.scores.items()}
    result.family_accuracy[name] = {
        b: {kind: 100 * mean(v) for kind, v in sorted(kinds.items())} for b, kinds in evaluation.families.items()
    }
    result.spread[name] = {
        b: {"cells_covered": mean(evaluation.cells[b]), "region_coverage": 100 * mean(evaluation.region[b]),
            "region_full_res": 100 * mean(evaluation.full_res[b])}
        for b in evaluation.cells
    }
    result.token_counts[name] = {b: sorted(v) for b, v in evaluation.counts.items()}
    result.prefill_ms[name] = {b: 1000 * mean(v) for b, v in evaluation.prefill.items()}
    result.selector_ms[name] = {b: 1000 * mean(v) for b, v in evaluation.selector.items()}
    result.scores[name] = {b: list(v) for b, v in evaluation.scores.items()}
    result.predictions[name] = evaluation.predictions
    samples, seed = result.config["bootstrap_samples"], result.config["seed"]
    result.accuracy_ci[name] = {b: bootstrap_ci(v, samples, seed) for b, v in evaluation.scores.items()}


def _budget_label(budget: str) -> str:
    return {"0": "144 (scaffold)", "2304": "all 2304"}.get(budget, f"{budget}+144")


def budget_results_markdown(result: BudgetExperimentResult) -> str:
    """The accuracy, spread, token-count and memory tables as markdown."""
    budgets = [str(b) for b in result.config["eval_budgets"]]
    lines = ["| row | " + " | ".join(_budget_label(b) for b in budgets) + " | train s | eval s |",
             "|---|" + "---:|" * (len(budgets) + 2)]
    for name, scores in result.accuracy.items():
        seconds = result.seconds[name]
        lines.append(f"| {name} | " + " | ".join(f"{scores[b]:.1f}" for b in budgets)
                     + f" | {seconds['train']:.0f} | {seconds['eval']:.0f} |")
    if result.adaptive:
        lines.append(f"| shirgx-adaptive | mean K = {result.adaptive['mean_budget']:.0f}: "
                     f"{result.adaptive['accuracy']:.1f} |" + " |" * (len(budgets) + 1))
    if result.accuracy_ci:
        lines += ["", "95 % bootstrap CI of the accuracy (questions resampled)", "",
                  "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for name, intervals in result.accuracy_ci.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{intervals[b][0]:.0f}–{intervals[b][1]:.0f}" if b in intervals else "–" for b in budgets) + " |")
    if result.selector_ms:
        lines += ["", "Selector latency: ms per image of selection + projection (tower and decoding excluded)", "",
                  "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for name, timings in result.selector_ms.items():
            lines.append(f"| {name} | " + " | ".join(f"{timings[b]:.1f}" if b in timings else "–" for b in budgets) + " |")
    if result.pretrain:
        accuracy = result.pretrain["test_accuracy"]
        lines += ["", f"Vision tower pretrained on per-patch labels ({len(result.pretrain['losses'])} steps, final loss "
                  f"{result.pretrain['losses'][-1]:.3f}); held-out patch accuracy: colour {accuracy['color']:.1f} %, "
                  f"glyph {accuracy['glyph']:.1f} %, frame recall {accuracy['frame_recall']:.1f} %"]
    lines += ["", "Spatial spread of the kept fine tokens (non-scaffold, ≤ 5 patches each): 12×12 cells covered / % of answer-region patches covered"
              " / % of answer-region patches kept at full resolution (a token of that one patch)",
              "", "| row | " + " | ".join(_budget_label(b) for b in budgets[1:]) + " |", "|---|" + "---:|" * (len(budgets) - 1)]
    for name, spread in result.spread.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{spread[b]['cells_covered']:.0f} / {spread[b]['region_coverage']:.0f}% / {spread[b]['region_full_res']:.0f}%"
            if b in spread else "–"
            for b in budgets[1:]) + " |")
    lines += ["", "Image tokens per budget (distinct counts over all test images; one value = static token set)", "",
              "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for name, counts in result.token_counts.items():
        lines.append(f"| {name} | " + " | ".join(",".join(map(str, counts.get(b, []))) for b in budgets) + " |")
    lines += ["", "| budget | tokens | tiny KV cache | LaViDa (LLaDA-8B, bf16) KV cache |", "|---|---:|---:|---:|"]
    for budget, memory in result.memory.items():
        lines.append(f"| {_budget_label(budget)} | {memory['tokens']} | {memory['tiny_kv_bytes'] / 2**20:.2f} MiB "
                     f"| {memory['lavida_kv_bytes'] / 2**20:.0f} MiB |")
    return "\n".join(lines) + "\n"


def plot_budget_results(result: BudgetExperimentResult, folder: str | Path) -> list[Path]:
    """Accuracy vs tokens, spatial spread vs budget, adaptive K vs complexity: PNGs in ``folder``."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    budgets = [str(b) for b in result.config["eval_budgets"]]
    tokens = [result.memory[b]["tokens"] for b in budgets]
    paths = []

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, scores in result.accuracy.items():
        style = "-o" if name.startswith("shirgx") else "--s"
        axis.plot(tokens, [scores[b] for b in budgets], style, label=name, linewidth=2 if name == "shirgx" else 1)
    if result.adaptive:
        axis.plot([result.adaptive["mean_budget"] + 144], [result.adaptive["accuracy"]], "k*", markersize=14,
                  label="shirgx-adaptive (mean K)")
    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xticks(tokens, [str(t) for t in tokens])
    axis.set_xlabel("image tokens handed to the language model")
    axis.set_ylabel("accuracy (%; official metrics)")
    axis.set_title("Synthetic high-detail suite: accuracy vs token budget (tiny VLMs, CPU)")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    paths.append(folder / "shirgx_accuracy_vs_budget.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    figure, (cells_axis, region_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, spread in result.spread.items():
        kept = [b for b in budgets if b in spread and b != "2304"]
        x = [result.memory[b]["tokens"] for b in kept]
        cells_axis.plot(x, [spread[b]["cells_covered"] for b in kept], "-o", label=name)
        region_axis.plot(x, [spread[b]["region_coverage"] for b in kept], "-o", label=name)
    cells_axis.set_ylabel("12×12 cells holding a fine kept token (of 144)")
    region_axis.set_ylabel("% of answer-region patches in a fine kept token")
    for axis in (cells_axis, region_axis):
        axis.set_xlabel("image tokens")
    region_axis.legend(fontsize=7)
    figure.tight_layout()
    paths.append(folder / "shirgx_spatial_spread.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    if result.adaptive:
        figure, axis = plt.subplots(figsize=(6, 4))
        kinds = result.adaptive["question_types"]
        for kind in sorted(set(kinds)):
            chosen = [i for i, k in enumerate(kinds) if k == kind]
            axis.scatter([result.adaptive["complexity"][i] for i in chosen],
                         [result.adaptive["budgets"][i] for i in chosen], label=kind, alpha=0.7)
        axis.set_xlabel("image complexity (share of non-background pixels)")
        axis.set_ylabel("K chosen by the adaptive head")
        axis.legend(fontsize=7)
        figure.tight_layout()
        paths.append(folder / "shirgx_adaptive_budget.png")
        figure.savefig(paths[-1], dpi=110)
        plt.close(figure)
    return paths


def seeds_summary_markdown(results: Sequence[BudgetExperimentResult]) -> str:
    """Accuracy (mean over seeds, 95 % CI from resampling the pooled per-question scores) and
    answer-region coverage per row and budget, over several seeds' results."""
    import numpy as np

    budgets = [str(b) for b in results[0].config["eval_budgets"]]
    samples = results[0].config["bootstrap_samples"]
    seeds = [r.config["seed"] for r in results]
    lines = [f"Seeds {seeds}: accuracy % (mean over seeds) [95 % CI, pooled questions] / % of answer-region patches kept"
             " at full resolution", "",
             "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for name in results[0].accuracy:
        cells = []
        for budget in budgets:
            pooled = [score for r in results for score in r.scores[name].get(budget, [])]
            low, high = bootstrap_ci(pooled, samples, 0)
            mean = float(np.mean([r.accuracy[name][budget] for r in results]))
            coverage = [r.spread[name][budget]["region_full_res"] for r in results if budget in r.spread.get(name, {})]
            cells.append(f"{mean:.1f} [{low:.0f}–{high:.0f}]" + (f" / {np.mean(coverage):.0f}" if coverage else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    adaptive = [r.adaptive for r in results if r.adaptive]
    if adaptive:
        lines.append(f"| shirgx-adaptive | mean K {np.mean([a['mean_budget'] for a in adaptive]):.0f}: "
                     f"{np.mean([a['accuracy'] for a in adaptive]):.1f} |" + " |" * (len(budgets) - 1))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SHIRG-X accuracy vs token budget, beside the baselines (tiny, CPU).")
    parser.add_argument("--quick", action="store_true",
                        help="the ≤ 15 min run: detail families, pretrained frozen tower, diffusion, 3 rows (quick_config)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--rows", default=None, help="comma list of rows")
    parser.add_argument("--families", default=None, help="comma list of image families (data.synthetic_images.ALL_FAMILIES)")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None, help="AdamW rate of the rows")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--seeds", default=None, help="comma list: one run per seed in OUT/seed<S>, plus OUT/seeds.md")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="vision-tower pretraining steps on patch labels")
    parser.add_argument("--freeze-vision", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--objective", choices=("ar", "diffusion"), default=None)
    parser.add_argument("--diffusion-loss-weighting", choices=("lavida", "elbo"), default=None)
    parser.add_argument("--figures", default=None, help="folder for the PNG plots")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in {
        "out_dir": args.out, "rows": tuple(args.rows.split(",")) if args.rows else None,
        "families": tuple(args.families.split(",")) if args.families else None,
        "train_images": args.train_images, "test_images": args.test_images, "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "threads": args.threads, "seed": args.seed, "pretrain_steps": args.pretrain_steps,
        "freeze_vision": args.freeze_vision, "objective": args.objective,
        "diffusion_loss_weighting": args.diffusion_loss_weighting,
    }.items() if value is not None}
    config = quick_config(**overrides) if args.quick else BudgetExperimentConfig(**overrides)
    if args.seeds:
        results = []
        for seed in (int(value) for value in args.seeds.split(",")):
            seeded = dataclasses.replace(config, seed=seed, out_dir=str(Path(config.out_dir) / f"seed{seed}"))
            results.append(run_budget_experiment(seeded))
            print(budget_results_markdown(results[-1]))
        summary = seeds_summary_markdown(results)
        (Path(config.out_dir) / "seeds.md").write_text(summary)
        print(summary)
        result = results[0]
    else:
        result = run_budget_experiment(config)
        print(budget_results_markdown(result))
    if args.figures:
        for path in plot_budget_results(result, args.figures):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
