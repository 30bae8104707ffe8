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
    "paired_gap_ci",
    "spearman",
    "patch_label_words",
    "label_word_targets",
    "align_projector",
    "pretrain_reader",
    "budget_head_targets",
    "fit_budget_head",
    "save_reader",
    "quick_config",
    "reader_config",
    "reader_quick_config",
    "PRESETS",
    "pretrain_vision_tower",
    "spatial_spread",
    "full_resolution_coverage",
    "run_budget_experiment",
    "budget_results_markdown",
    "seeds_summary_markdown",
    "load_results",
    "plot_budget_results",
    "plot_seeds_accuracy",
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
    BudgetRow("shirgx-no-spread", "shirgx", "SHIRG-X without spreading (w_nbr = 0: plain top-K of the score)",
              {"neighbour_weight": 0.0}),
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
        answer_words_as_tokens: add the palette's colour names and "frame" to the tiny tokenizer as
            whole tokens (its BPE splits "purple" into 3), so every detail answer and every patch
            label is one token (``patch_label_words``).
        align_steps: optimiser steps of the projector's alignment stage after the tower's
            pretraining (``align_projector``: each patch's projected token regressed onto the sum of
            the LM input embeddings of its label words; LLaVA's stage 1 with exact labels for
            captions); 0 = off. Needs ``answer_words_as_tokens``.
        align_learning_rate: that stage's AdamW rate.
        freeze_projector: keep the (aligned) projector and the language model's input embeddings
            (what it was aligned to, and what question relevance reads) fixed while rows train.
        reader: "per-row" (every row trains its own model from the base: its selector's tokens
            only) or "shared" (one model per seed, trained on a mixture of ``reader_rows``' token
            sets, one row drawn per step; every evaluation row then reads with it, so no row gets a
            reader tuned to itself).
        reader_rows: the shared reader's training mixture: names of ``BUDGET_ROWS`` methods'
            rows, or "all" (every patch in raster order, no selection).
        reader_stages: the language model's read-out curriculum before any row (``pretrain_reader``):
            image-token counts n, one stage each: the answer-region patches plus n − |region| random
            others; () = off.
        reader_stage_steps, reader_learning_rate: optimiser steps per stage and their AdamW rate.
        reader_end_stages: the answer-end pass (shared reader only): after the base and before the
            mixture, the curriculum again at these image-token counts, each answer padded to
            ``max_new_tokens`` positions (the layout the masked-diffusion decoder fills) and its end
            (end token, newline, padding) scored beside the content; () = off.
        reader_end_steps, reader_end_learning_rate: that pass's steps per stage and AdamW rate.
        reader_scaffold_share: share of the curriculum's and the answer-end pass's training steps whose
            image tokens come after the 144-token scaffold (4×4 average pools of the projected patches,
            raster order), the layout SHIRG-X hands the language model; the other steps, and every
            per-stage test, give the patches alone, the layout of the baselines. 0 = never (the
            curriculum then never shows the scaffold: docs/results.md, issue 16 seventh look).
        budget_head_steps: after the SHIRG-X training (shared reader or the "shirgx" row), fit the
            adaptive budget head alone on every training question's target (``budget_head_targets``:
            the smallest K whose whole-answer-masked loss is within ``budget_target_margin`` of the
            largest K's; ``fit_budget_head``), this many full-batch steps; 0 = off (the head keeps
            what the mixed-budget training gave it).
        budget_head_learning_rate: that fit's AdamW rate.

    A run resumes: ``OUT/base`` (with ``pretrain.json``) and ``OUT/reader`` (with
    ``reader_training.json``) are reused when they exist and were made with the same settings.
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
    answer_words_as_tokens: bool = False
    align_steps: int = 0
    align_learning_rate: float = 3e-3
    freeze_projector: bool = False
    reader: str = "per-row"
    reader_rows: tuple[str, ...] = ("all", "shirgx", "pool", "random", "bipartite", "visionzip", "divprune")
    reader_stages: tuple[int, ...] = ()
    reader_stage_steps: int = 300
    reader_learning_rate: float = 3e-3
    reader_end_stages: tuple[int, ...] = ()
    reader_end_steps: int = 150
    reader_end_learning_rate: float = 1e-3
    reader_scaffold_share: float = 0.0
    budget_head_steps: int = 0
    budget_head_learning_rate: float = 1e-2


# Settings that do not change the base or the shared reader: a resumed run may differ in these.
_RESUMABLE_KEYS = frozenset({
    "out_dir", "rows", "eval_budgets", "threads", "show_progress", "bootstrap_samples", "max_new_tokens",
    "budget_head_steps", "budget_head_learning_rate",
})


# Settings used only after the base is saved (the mixture and the rows, the answer-end pass): a base
# is reused across them.
_AFTER_BASE_KEYS = frozenset({
    "learning_rate", "epochs", "weight_decay", "reader_rows", "reader_end_stages", "reader_end_steps",
    "reader_end_learning_rate",
})


def _check_resumable(stored: dict[str, Any], config: BudgetExperimentConfig, what: Path,
                     ignored: frozenset[str] = frozenset()) -> None:
    """Raise when ``what`` was made with settings (``stored``) that ``config`` changes (``ignored``
    and ``_RESUMABLE_KEYS`` may differ)."""
    current = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as lists, as stored
    # A setting added after ``stored`` was written made it with that setting's default.
    defaults = json.loads(json.dumps(dataclasses.asdict(BudgetExperimentConfig())))
    stored = {**defaults, **stored}
    changed = sorted(key for key in current
                     if key not in _RESUMABLE_KEYS | ignored and stored.get(key) != current[key])
    if changed:
        key = changed[0]
        raise ValueError(f"{what} was made with {key}={stored.get(key)!r}, this run has {current[key]!r} "
                         f"({len(changed)} setting(s) differ); pass another --out or delete it")


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


# The evidence run of docs/results.md (issue 16's second and third looks): a pretrained frozen tower,
# a projector aligned onto label-word embeddings, a one-token-first read-out curriculum, one shared
# reader trained by the diffusion loss over every row's token sets, and the adaptive head fitted alone.
_READER_RECIPE: dict[str, Any] = dict(
    rows=tuple(row.name for row in BUDGET_ROWS), train_images=600, test_images=120, epochs=2, learning_rate=1e-3,
    pretrain_steps=200, align_steps=300, answer_words_as_tokens=True, reader="shared", freeze_projector=True,
    reader_stages=(1, 1, 1, 1, 1, 1, 16, 64, 256, 656, 1168), reader_stage_steps=350, threads=1,
    reader_end_stages=(256, 656, 1168), reader_end_steps=150, reader_end_learning_rate=1e-3,
    budget_head_steps=500,
)


def reader_config(**overrides: Any) -> BudgetExperimentConfig:
    """``--preset reader``: the evidence run (every row; with ``--seeds 0,1,2 --jobs 2`` the whole
    run whose time docs/results.md reports): ``quick_config``'s detail families, frozen pretrained
    tower and diffusion objective, plus ``_READER_RECIPE``."""
    return quick_config(**{**_READER_RECIPE, **overrides})


def reader_quick_config(**overrides: Any) -> BudgetExperimentConfig:
    """``--preset reader-quick``: the evidence run's recipe for one seed in ≤ 15 min on 2 CPU cores.

    Training is the evidence run's, unchanged (600 images, every pretraining, alignment and
    curriculum step): the cuts that trained less formed no read-out (200 images, or 150 alignment
    and 120 curriculum steps per stage: 0–13 % on every row). The cut is in the evaluation, which
    is most of a seed's time: SHIRG-X, LaViDa's pooling and DivPrune (the strongest baseline), 60
    test images, budgets 144 / 512+144 / 768+144 / all; one seed on both threads."""
    values: dict[str, Any] = dict(
        rows=("shirgx", "pool", "divprune"), test_images=60, eval_budgets=(0, 512, 768, 2304), threads=2,
    )
    return reader_config(**{**values, **overrides})


PRESETS = {"quick": quick_config, "reader": reader_config, "reader-quick": reader_quick_config}


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


def paired_gap_ci(a: Sequence[float], b: Sequence[float], samples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> list[float]:
    """``[mean(a − b), low, high]`` in points: the gap between two rows answering the same questions
    (scores 0..1, question-aligned) with a percentile bootstrap CI that resamples questions, both
    rows' answers to a question together (a paired test: question difficulty cancels)."""
    import numpy as np

    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired scores must align question by question; got {first.shape} and {second.shape}")
    if first.size == 0:
        return [math.nan, math.nan, math.nan]
    difference = first - second
    draws = np.random.default_rng(seed).integers(difference.size, size=(samples, difference.size))
    means = difference[draws].mean(1)
    tail = (1 - level) / 2
    return [100 * float(difference.mean()), 100 * float(np.quantile(means, tail)), 100 * float(np.quantile(means, 1 - tail))]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation with average ranks for ties (the adaptive head's K takes three
    values, so most ranks are tied); NaN when either side is constant."""
    import numpy as np

    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = values.argsort(kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values), dtype=np.float64)
        # Every member of a tie gets the group's mean rank.
        unique, inverse = np.unique(values, return_inverse=True)
        sums = np.bincount(inverse, weights=ranked)
        return (sums / np.bincount(inverse))[inverse]

    a, b = ranks(x), ranks(y)
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


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


def patch_label_words(tokenizer) -> dict[str, Any]:
    """The token id of each patch label's word, per label kind.

    Returns:
        ``{"color": (1 + len(PALETTE),), "glyph": (1 + len(GLYPH_ALPHABET),), "frame": (2,)}`` long
        tensors indexed by the label value of ``patch_labels``; entry 0 (no colour / no character /
        not framed) is −1, no word.
    """
    import torch

    from ..data.synthetic_images import GLYPH_ALPHABET, PALETTE

    def one(word: str) -> int:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"patch label word {word!r} is {len(ids)} tokens; use answer_words_as_tokens=True")
        return ids[0]

    return {
        "color": torch.tensor([-1] + [one(name) for name in PALETTE]),
        "glyph": torch.tensor([-1] + [one(char) for char in GLYPH_ALPHABET]),
        "frame": torch.tensor([-1, one("frame")]),
    }


def label_word_targets(labels: dict[str, Any], words: dict[str, Any], embeddings) -> Any:
    """Per-patch alignment targets: the sum of the input embeddings of a patch's label words.

    Args:
        labels: ``{"color", "glyph", "frame"}``: (I, N) label values (``IGNORE_LABEL`` counts as none).
        words: ``patch_label_words`` output.
        embeddings: the language model's input embedding module (V → H).

    Returns:
        (I, N, H); 0 at a patch with no label (the white background).
    """
    total = 0
    for key, ids in words.items():
        token = ids[labels[key].clamp(min=0)]
        total = total + embeddings(token.clamp(min=0)) * (token >= 0)[..., None]
    return total


def align_projector(vlm, train_set, test_set, tokenizer, config: BudgetExperimentConfig) -> dict[str, Any]:
    """Train ``vlm``'s projector in place so each patch's token is the sum of its label words' input
    embeddings (LLaVA's stage 1, with the generator's exact per-patch labels as the captions).

    The vision tower and the embeddings are frozen; the loss is the mean squared error over the
    labelled patches plus the same over the unlabelled (background) ones, so the one framed patch
    among ~2,000 white ones weighs as much as the background does. After it, a question word and the
    patch it names meet in the language model's input space, which is what SHIRG-X's relevance
    ⟨P(f_i), ê_q⟩ measures.

    Args:
        vlm: the LLaVA-OneVision model (its ``model.multi_modal_projector`` trains).
        train_set, test_set: ``(pixels (I, 3, S, S), labels {"color", "glyph", "frame"}: (I, G·G))``.
        tokenizer: one where every label word is one token (``answer_words_as_tokens``).
        config: ``align_steps``, ``pretrain_batch_size``, ``align_learning_rate``, ``seed``.

    Returns:
        ``{"losses": per-step loss, "test_cosine": mean cosine of token and target over labelled
        test patches, "test_background_norm": mean norm of background tokens over that of targets}``.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    words = patch_label_words(tokenizer)
    tower, projector = vlm.model.vision_tower, vlm.model.multi_modal_projector
    embeddings = vlm.get_input_embeddings()
    layer = vlm.config.vision_feature_layer

    def tokens_and_targets(pixels, labels):
        with torch.no_grad():
            hidden = tower(pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[layer]
            targets = label_word_targets(labels, words, embeddings)
        return projector(hidden), targets

    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=config.align_learning_rate)
    steps = config.align_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 10) * (1 - step / max(steps, 1))
    )
    rng = np.random.default_rng((config.seed, 1))
    pixels, labels = train_set
    history = []
    bar = tqdm(range(steps), desc="align projector", unit="step", disable=not config.show_progress, leave=False)
    for _ in bar:
        chosen = torch.from_numpy(rng.choice(len(pixels), size=min(config.pretrain_batch_size, len(pixels)), replace=False))
        tokens, targets = tokens_and_targets(pixels[chosen], {key: value[chosen] for key, value in labels.items()})
        labelled = targets.abs().sum(-1) > 0
        # Relative to the targets' energy (1.0 = a projector that outputs zero), so the loss does not
        # scale with the embeddings' initialisation.
        error = (tokens - targets).pow(2).sum(-1) / targets[labelled].pow(2).sum(-1).mean()
        loss = error[labelled].mean() + error[~labelled].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    cosines, background, target_norm = [], [], []
    with torch.no_grad():
        test_pixels, test_labels = test_set
        for start in range(0, len(test_pixels), 8):
            chunk = {key: value[start : start + 8] for key, value in test_labels.items()}
            tokens, targets = tokens_and_targets(test_pixels[start : start + 8], chunk)
            labelled = targets.abs().sum(-1) > 0
            cosines.append(torch.nn.functional.cosine_similarity(tokens[labelled], targets[labelled], dim=-1))
            background.append(tokens[~labelled].norm(dim=-1))
            target_norm.append(targets[labelled].norm(dim=-1))
    return {
        "losses": history,
        "test_cosine": float(torch.cat(cosines).mean()),
        "test_background_norm": float(torch.cat(background).mean() / torch.cat(target_norm).mean()),
    }


def _content_positions(labels, eos_token_id: int):
    """(B, T) bool: answer positions before the answer's end token (the content a question asks for;
    the chat template's end token, its newline and padding are not content)."""
    from ..train.conversation import IGNORE_INDEX

    answer = labels != IGNORE_INDEX
    return answer & ((labels == eos_token_id) & answer).long().cumsum(1).eq(0)


def _answer_padded(item: dict[str, Any], length: int, pad_token_id: int) -> dict[str, Any]:
    """``item`` with its answer padded to ``length`` tokens by the pad token, labelled (LLaDA's SFT
    pads the answer so; the masked-diffusion decoder fills ``length`` positions). The answer is last."""
    import torch

    from ..train.conversation import IGNORE_INDEX

    extra = length - int((item["labels"] != IGNORE_INDEX).sum())
    if extra <= 0:
        return item
    pads = torch.full((extra,), pad_token_id, dtype=item["input_ids"].dtype)
    return {**item, "input_ids": torch.cat([item["input_ids"], pads]), "labels": torch.cat([item["labels"], pads])}


def _answer_logits(vlm, inputs: dict[str, Any], labels, content, mask_id: int | None):
    """The read-out curriculum's forward: ``(logits, targets, content)``, each aligned so that
    ``logits[b, t]`` predicts ``targets[b, t]`` and ``content[b, t]`` says whether to score it.

    Args:
        vlm: the LLaVA-OneVision model.
        inputs: ``inputs_embeds`` (B, T, D) and ``attention_mask`` (B, T) of the whole turn, answer included.
        labels: (B, T), ``IGNORE_INDEX`` outside the answer; content: (B, T) bool (``_content_positions``).
        mask_id: the diffusion objective's mask token: every answer position masked, bidirectional
            attention, each position predicts its own label; None: the AR objective, teacher forcing
            under the causal mask, position t predicts the label at t + 1 (logits (B, T − 1, V)).
    """
    import torch

    from ..models.diffusion import additive_mask
    from ..train.conversation import IGNORE_INDEX

    if mask_id is None:
        logits = vlm(**inputs).logits
        return logits[:, :-1], labels[:, 1:], content[:, 1:]
    answer = labels != IGNORE_INDEX
    mask_embed = vlm.get_input_embeddings()(torch.tensor([mask_id]))
    embeds = torch.where(answer[..., None], mask_embed, inputs["inputs_embeds"])
    valid = inputs["attention_mask"].bool()
    allowed = valid[:, None, :].expand(-1, valid.shape[1], -1)
    logits = vlm(inputs_embeds=embeds, attention_mask=additive_mask(allowed, embeds.dtype),
                 position_ids=(valid.long().cumsum(1) - 1).clamp(min=0)).logits
    return logits, labels, content


def pretrain_reader(
    vlm, train, test, tokenizer, config: BudgetExperimentConfig, stages: Sequence[int] | None = None,
    steps: int | None = None, learning_rate: float | None = None, score_end: bool = False,
) -> dict[str, Any]:
    """Form the language model's read-out with a curriculum over the number of image tokens.

    At stage n (``config.reader_stages``) every question's image reaches the language model as n
    projected patch tokens in raster order: all of its answer-region patches (``region_patch_mask``)
    and n − |region| others drawn at random. Every answer position is masked (the masked-diffusion
    input of a fully masked answer, bidirectional attention; with the AR objective the answer is
    teacher-forced under the causal mask instead) and the loss is the cross-entropy of the answer's
    content tokens (``_content_positions``). The answer region is the renderer's exact
    knowledge, used here as the tower's pretraining uses exact patch labels; no evaluation row sees it.

    Why: from scratch, a 2-layer LM given hundreds of image tokens does not find the one that answers
    (docs/decisions.md: chance after 1,000 steps at 656 tokens), but it learns to read one token, and then
    to find it among 16, 64, 256, ...; and a loss over the whole answer (end token, newline, padding)
    did not form the read-out even with one image token in 800 steps (38 % after 1,000).

    Args:
        vlm: the LLaVA-OneVision model; its language model trains in place (input embeddings too
            unless ``config.freeze_projector``: the aligned projector and the embeddings it was
            aligned to stay a pair).
        train, test: ``(items, records)``: ``ImageQADataset`` items and the split's raw rows.
        tokenizer: for the end token.
        config: ``reader_stages``, ``reader_stage_steps``, ``reader_learning_rate``, ``batch_size``, ``seed``.
        stages, steps, learning_rate: override those three (the answer-end pass).
        score_end: pad each answer to ``config.max_new_tokens`` positions with the pad token and add
            the cross-entropy of its end (end token, newline, padding; their own mean) to the
            content's: what the masked-diffusion decoder must fill besides the content.

    Returns:
        ``{"stages", "losses": per stage, mean loss per 50 steps, "test_accuracy": per stage, percent
        of held-out questions whose content tokens are all right at that stage's n}``.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..data.synthetic_images import region_patch_mask
    from ..models.shirgx_vlm import ShirgXImagePath
    from ..selection import dual_scale_tokens
    from ..train.conversation import IGNORE_INDEX
    from ..train.tasks.shirgx import ImageQACollator

    tower, projector = vlm.model.vision_tower, vlm.model.multi_modal_projector
    layer = vlm.config.vision_feature_layer
    path = ShirgXImagePath(vlm)  # for build_inputs only
    collate = ImageQACollator(tokenizer.pad_token_id)
    # The diffusion objective (a mask token in the config); None: the AR objective.
    mask_id = getattr(vlm.config.text_config, "mask_token_id", None)

    def split_tokens(items, records):
        tokens, scaffolds, regions = [], [], []
        with torch.no_grad():
            for start in range(0, len(items), 8):
                pixels = torch.stack([item["pixel_values"] for item in items[start : start + 8]])
                hidden = tower(pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[layer]
                tokens.append(projector(hidden))
                scaffolds.append(dual_scale_tokens(tokens[-1], (48, 48), 4)[0])
        for record in records:
            regions.append(np.flatnonzero(region_patch_mask(record["regions"]).flatten()))
        return torch.cat(tokens), torch.cat(scaffolds), regions

    def batch_inputs(items, tokens, regions, chosen, count, rng, scaffolds=None):
        """``scaffolds`` (I, 144, H) given: each image's patches come after its scaffold."""
        width = max(count, *(len(regions[i]) for i in chosen))
        picked = []
        for i in chosen:
            others = np.setdiff1d(np.arange(tokens.shape[1]), regions[i])
            keep = np.sort(np.concatenate([regions[i], rng.choice(others, size=width - len(regions[i]), replace=False)]))
            patches = tokens[i, torch.from_numpy(keep)]
            picked.append(patches if scaffolds is None else torch.cat([scaffolds[i], patches]))
        chosen_items = [items[i] for i in chosen]
        if score_end:
            chosen_items = [_answer_padded(item, config.max_new_tokens, tokenizer.pad_token_id) for item in chosen_items]
        batch = collate(chosen_items)
        inputs = path.build_inputs(batch["input_ids"], torch.stack(picked), batch["attention_mask"], batch["labels"])
        labels = inputs.pop("labels")
        return _answer_logits(vlm, inputs, labels, _content_positions(labels, tokenizer.eos_token_id), mask_id)

    train_items, train_records = train
    test_items, test_records = test
    train_tokens, train_scaffolds, train_regions = split_tokens(train_items, train_records)
    test_tokens, _, test_regions = split_tokens(test_items, test_records)
    trainable = [p for p in vlm.model.language_model.parameters() if p.requires_grad] + list(vlm.lm_head.parameters())
    if config.freeze_projector:
        vlm.get_input_embeddings().requires_grad_(False)
        trainable = [p for p in trainable if p.requires_grad]
    torch.manual_seed(config.seed)
    stages = tuple(config.reader_stages if stages is None else stages)
    steps = config.reader_stage_steps if steps is None else steps
    optimizer = torch.optim.AdamW(trainable, lr=config.reader_learning_rate if learning_rate is None else learning_rate)
    total = steps * len(stages)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10) * (1 - step / max(total, 1)))
    rng = np.random.default_rng((config.seed, 3))
    # Its own stream: with reader_scaffold_share = 0 the draws above are those of a run without it.
    layout_rng = np.random.default_rng((config.seed, 5))
    history: dict[str, Any] = {"stages": list(stages), "losses": [], "test_accuracy": [], "scaffold_steps": 0}
    bar = tqdm(total=total, desc="answer end" if score_end else "pretrain reader", unit="step",
               disable=not config.show_progress, leave=False)
    for count in stages:
        vlm.train()
        losses = []
        for _ in range(steps):
            chosen = rng.choice(len(train_items), size=min(config.batch_size, len(train_items)), replace=False)
            scaffolded = config.reader_scaffold_share > 0 and layout_rng.random() < config.reader_scaffold_share
            history["scaffold_steps"] += int(scaffolded)
            logits, labels, content = batch_inputs(train_items, train_tokens, train_regions, chosen, count, rng,
                                                   train_scaffolds if scaffolded else None)
            loss = torch.nn.functional.cross_entropy(logits[content].float(), labels[content])
            if score_end:
                # The answer's end as the decoder fills it (end token, newline, padding): its own mean,
                # so the one content token keeps its weight beside the easy end positions.
                end = (labels != IGNORE_INDEX) & ~content
                loss = loss + torch.nn.functional.cross_entropy(logits[end].float(), labels[end])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # not clipped: from ~6 nats at the start, clipping at 1 slows the read-out's forming
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.update()
            bar.set_postfix(tokens=count, loss=f"{losses[-1]:.3f}")
        history["losses"].append([float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)])
        vlm.eval()
        right = 0
        test_rng = np.random.default_rng((config.seed, 4))
        with torch.no_grad():
            for start in range(0, len(test_items), 16):
                chosen = np.arange(start, min(start + 16, len(test_items)))
                logits, labels, content = batch_inputs(test_items, test_tokens, test_regions, chosen, count, test_rng)
                wrong = (logits.argmax(-1) != labels) & content
                right += int((~wrong.any(1)).sum())
        history["test_accuracy"].append(100 * right / len(test_items))
    bar.close()
    vlm.eval()
    return history


def budget_head_targets(model, items, show_progress: bool = False) -> tuple[Any, Any, Any]:
    """What the trained reader says each training question needs: per-budget answer losses and the
    budget head's input.

    Every question runs at every selector budget with its whole answer masked (the masked-diffusion
    decoder's first step; a causal LM: teacher forcing), so the loss is deterministic — the mixed-
    budget training draws one random mask per step, too noisy to rank three budgets by. One question
    per forward (no padding inside the answer).

    Args:
        model: the trained ``ShirgXTrainingModel``.
        items: ``ImageQADataset`` items.
        show_progress: a progress bar over the questions.

    Returns:
        ``(entropy, losses, targets)``: (Q, D) the head's input (``patch_entropy`` of the features it
        reads), (Q, n_budgets) mean answer loss per budget, (Q,) ``budget_targets`` indices.
    """
    import torch
    from tqdm.auto import tqdm

    from ..selection.budget import patch_entropy
    from ..train.conversation import IGNORE_INDEX
    from ..train.tasks.shirgx import budget_targets

    config = model.training_config
    layer = config.score_layer if config.score_layer is not None else model.model.config.vision_feature_layer
    entropies, losses = [], []
    model.eval()
    with torch.no_grad():
        for item in tqdm(items, desc="budget targets", unit="q", disable=not show_progress, leave=False):
            batch = {key: item[key][None] for key in ("input_ids", "labels", "pixel_values", "question_ids")}
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            batch["question_mask"] = torch.ones_like(batch["question_ids"])
            answer = batch["labels"] != IGNORE_INDEX
            row = []
            for budget in config.selector.budgets:
                output = model(**batch, budget=budget, diffusion_mask=(answer, torch.ones(1)))
                row.append(output.answer_loss)
            losses.append(torch.stack(row))
            hidden = model.image_path().vision_hidden_states(batch["pixel_values"])[layer]
            entropies.append(patch_entropy(hidden, config.selector.entropy_temperature)[0])
    losses = torch.stack(losses)
    return torch.stack(entropies), losses, budget_targets(losses, config.budget_target_margin)


def fit_budget_head(head, entropy, targets, steps: int, learning_rate: float = 1e-2, seed: int = 0) -> list[float]:
    """Train the budget head alone (full batch, AdamW, cross-entropy) on fixed ``(entropy, targets)``.

    Why a stage of its own: inside the mixed-budget training the head sees a target every
    ``budget_target_every`` SHIRG-X steps only (≈ 11 in the shared reader's 300-step mixture), and
    never moved off its default (docs/results.md, issue 16 second look).

    Args:
        head: ``BudgetHead``; trained in place.
        entropy: (Q, D) inputs; targets: (Q,) budget indices (``budget_head_targets``).
        steps: full-batch steps; learning_rate: AdamW rate; seed: initialisation is the head's own.

    Returns:
        The loss every 50 steps.
    """
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.0)
    head.train()
    log = []
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(head(entropy).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            log.append(float(loss.detach()))
    head.eval()
    return log


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
        if config.answer_words_as_tokens:
            from ..data.synthetic_images import PALETTE

            self.tokenizer.add_tokens([*PALETTE, "frame"])
        elif config.align_steps > 0:
            raise ValueError("align_steps > 0 needs answer_words_as_tokens=True (one token per patch label word)")
        width = config.vision_width
        self.vlm_config = tiny_llava_onevision_config(
            vision_config={"hidden_size": width, "intermediate_size": 2 * width,
                           "num_hidden_layers": config.vision_layers, "image_size": 672},
            text_config={"hidden_size": config.text_width, "intermediate_size": 2 * config.text_width,
                         "num_hidden_layers": config.text_layers, "vocab_size": len(self.tokenizer)},
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

        record = self.base_dir / "pretrain.json"
        if record.is_file() and (self.base_dir / "config.json").is_file():
            stored = json.loads(record.read_text())
            _check_resumable(stored["config"], self.config, self.base_dir, _AFTER_BASE_KEYS)
            self.pretrain = stored["pretrain"]
            return
        torch.manual_seed(self.config.seed)
        vlm = build_shirgx_base(self.vlm_config)
        if self.config.pretrain_steps > 0 or self.config.align_steps > 0:
            train_set, test_set = self._patch_label_set("train"), self._patch_label_set("test")
        if self.config.pretrain_steps > 0:
            self.pretrain = pretrain_vision_tower(vlm, train_set, test_set, self.config)
        if self.config.align_steps > 0:
            self.pretrain["align"] = align_projector(vlm, train_set, test_set, self.tokenizer, self.config)
            self.pretrain["align"]["relevance_top1_in_region"] = self._relevance_hits(vlm)
        if self.config.reader_stages:
            self.pretrain["reader"] = pretrain_reader(
                vlm, (self.train_items, self.train_records), (self.test_items, self.test_records), self.tokenizer,
                self.config,
            )
        vlm.save_pretrained(self.base_dir)
        record.write_text(json.dumps({"config": dataclasses.asdict(self.config), "pretrain": self.pretrain}))

    def _relevance_hits(self, vlm) -> float:
        """Percent of test questions whose most question-relevant patch, ⟨P(f_i), ê_q⟩ max over the
        question's tokens (``selection.text_relevance``), lies in the answer region."""
        import torch

        from ..data.synthetic_images import region_patch_mask
        from ..selection import text_relevance

        layer = vlm.config.vision_feature_layer
        hits = []
        with torch.no_grad():
            for item, record in zip(self.test_items, self.test_records):
                hidden = vlm.model.vision_tower(
                    item["pixel_values"][None], output_hidden_states=True, interpolate_pos_encoding=True,
                ).hidden_states[layer]
                relevance = text_relevance(vlm.model.multi_modal_projector(hidden), vlm.get_input_embeddings()(item["question_ids"][None]))
                region = torch.from_numpy(region_patch_mask(record["regions"])).flatten()
                hits.append(bool(region[relevance[0].argmax()]))
        return 100 * sum(hits) / len(hits)

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
        if self.config.freeze_projector:
            # The aligned pair: relevance compares projected patches with these input embeddings.
            vlm.model.multi_modal_projector.requires_grad_(False)
            vlm.get_input_embeddings().requires_grad_(False)
        torch.manual_seed(self.config.seed)
        training_config = self.training_config(row)
        if row.method == "shirgx":
            model = ShirgXTrainingModel(vlm, ShirgXSelector(training_config.selector), training_config)
            return model, model.image_path()
        selector = BaselineSelector(row.method, training_config.selector, seed=self.config.seed)
        path = ShirgXImagePath(vlm, selector, training_config.image_config())
        return path, path


def _optimise(experiment: _Experiment, model, description: str, step_loss) -> list[float]:
    """The rows' training loop: AdamW over ``model``'s trainable parameters, warm-up then linear decay,
    ``epochs`` passes over the train split in a seeded order, gradients clipped at 1.

    ``step_loss(batch, step)`` returns ``(loss, answer_loss, postfix)`` for one batch (postfix: what
    the progress bar shows besides the loss). Returns each epoch's mean answer loss.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..train.tasks.shirgx import ImageQACollator

    config = experiment.config
    collate = ImageQACollator(experiment.tokenizer.pad_token_id)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    order_rng = np.random.default_rng(config.seed)
    items = experiment.train_items
    total = math.ceil(len(items) / config.batch_size) * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10) * (1 - step / total))
    model.train()
    losses: list[float] = []
    step = 0
    bar = tqdm(total=total, desc=description, unit="step", disable=not config.show_progress, leave=False)
    for _ in range(config.epochs):
        order = order_rng.permutation(len(items))
        epoch_losses = []
        for start in range(0, len(items), config.batch_size):
            batch = collate([items[i] for i in order[start : start + config.batch_size]])
            loss, answer_loss, postfix = step_loss(batch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            epoch_losses.append(float(answer_loss))
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}", **postfix)
        losses.append(sum(epoch_losses) / len(epoch_losses))
    bar.close()
    model.eval()
    return losses


def _shirgx_step(model, batch, budget: int, step: int, every: int):
    """One SHIRG-X step: the mixed-budget answer loss, plus the budget head's targets every ``every`` steps."""
    output = model(**batch, budget=budget, compute_budget_target=every > 0 and step % every == 0)
    return output.loss, output.answer_loss


def _train_row(experiment: _Experiment, row: BudgetRow, model, path) -> list[float]:
    """Train every parameter of ``model`` on the train split; returns each epoch's mean answer loss."""
    from ..train.tasks.shirgx import sample_budget

    config = experiment.config

    def step_loss(batch, step):
        budget = sample_budget(config.train_budgets, config.seed, step)
        if row.method == "shirgx":
            loss, answer_loss = _shirgx_step(model, batch, budget, step, config.budget_target_every)
        elif config.objective == "diffusion":
            loss = _baseline_diffusion_loss(path, batch, budget, experiment.training_config(row))
            answer_loss = loss.detach()
        else:
            loss = path(**batch, budget=budget).loss
            answer_loss = loss.detach()
        return loss, answer_loss, {"K": budget}

    return _optimise(experiment, model, f"train {row.name}", step_loss)


def _mixture_paths(experiment: _Experiment, model) -> dict[str, Any]:
    """The shared reader's training paths over ``model``'s VLM: reader row name → ``(path, K or None)``.

    "shirgx" is the training model itself (K drawn per step); a baseline method gets its own
    ``BaselineSelector`` (K drawn per step); "all" is pooling to N cells, i.e. every patch in raster
    order (K = N − 144)."""
    from ..models.shirgx_vlm import ShirgXImagePath
    from ..selection import BaselineSelector

    selector_config = experiment.selector_config
    image_config = experiment.training_config(BUDGET_ROWS[0]).image_config()
    paths: dict[str, Any] = {}
    for name in experiment.config.reader_rows:
        if name == "shirgx":
            paths[name] = (model, None)
        elif name == "all":
            selector = BaselineSelector("pool", selector_config, seed=experiment.config.seed)
            paths[name] = (ShirgXImagePath(model.model, selector, image_config), selector_config.num_patches - selector_config.num_scaffold)
        elif name in {row.method for row in BUDGET_ROWS} - {"shirgx", "tome"}:
            selector = BaselineSelector(name, selector_config, seed=experiment.config.seed)
            paths[name] = (ShirgXImagePath(model.model, selector, image_config), None)
        else:
            raise ValueError(f"reader_rows entry {name!r} must be 'all', 'shirgx' or a baseline method other than tome "
                             "(ToMe needs the tower per step)")
    return paths


def _train_shared(experiment: _Experiment, model) -> list[float]:
    """Train one reader (every trainable parameter of the SHIRG-X training ``model``: its VLM and its
    selector's coordinate embedding and budget head) on a mixture of token sets: each step draws one
    of ``reader_rows`` and a budget K; returns each epoch's mean answer loss."""
    import numpy as np

    from ..train.tasks.shirgx import sample_budget

    config = experiment.config
    paths = _mixture_paths(experiment, model)
    names = list(paths)
    row_rng = np.random.default_rng((config.seed, 2))
    training_config = experiment.training_config(BUDGET_ROWS[0])

    def step_loss(batch, step):
        name = names[int(row_rng.integers(len(names)))]
        path, fixed = paths[name]
        budget = fixed if fixed is not None else sample_budget(config.train_budgets, config.seed, step)
        if name == "shirgx":
            loss, answer_loss = _shirgx_step(model, batch, budget, step, config.budget_target_every)
        elif config.objective == "diffusion":
            loss = _baseline_diffusion_loss(path, batch, budget, training_config)
            answer_loss = loss.detach()
        else:
            loss = path(**batch, budget=budget).loss
            answer_loss = loss.detach()
        return loss, answer_loss, {"row": name, "K": budget}

    return _optimise(experiment, model, "train shared reader", step_loss)


def save_reader(experiment: _Experiment, model, directory: Path) -> Path:
    """Write the shared reader where ``spatialvlm ask --image`` and ``load_shirgx_image_model`` read
    it: the VLM (``save_pretrained``), its tokenizer (with the added words) and the trained SHIRG-X
    selector beside it (``save_selector``)."""
    from ..selection import save_selector

    directory.mkdir(parents=True, exist_ok=True)
    model.model.save_pretrained(directory)
    experiment.tokenizer.save_pretrained(directory)
    save_selector(model.selector, directory)
    return directory


def _load_reader(model, directory: Path) -> None:
    """Put a saved shared reader (``save_reader``) into the SHIRG-X training ``model``, in place."""
    from ..models.shirgx_vlm import load_shirgx_base
    from ..selection import load_selector

    model.model.load_state_dict(load_shirgx_base(directory).state_dict())
    model.selector.load_state_dict(load_selector(directory, model.selector.config.vision_dim).state_dict())


def _fit_budget_head(experiment: _Experiment, model) -> dict[str, Any]:
    """``budget_head_targets`` over the training questions, then ``fit_budget_head``; returns what
    they measured: target counts per K, their Spearman with image complexity, the loss log."""
    import torch
    from PIL import Image

    config = experiment.config
    started = time.perf_counter()
    entropy, losses, targets = budget_head_targets(model, experiment.train_items, config.show_progress)
    log = fit_budget_head(model.selector.budget_head, entropy, targets, config.budget_head_steps,
                          config.budget_head_learning_rate, config.seed)
    complexity = []
    for record in experiment.train_records:
        with Image.open(experiment.paths["train"].parent / record["image"]) as image:
            complexity.append(_ink_fraction(image))
    budgets = model.training_config.selector.budgets
    with torch.no_grad():
        chosen = model.selector.budget_head.choose(model.selector.budget_head(entropy)).tolist()
    return {
        "budgets": list(budgets),
        "target_counts": [int((targets == i).sum()) for i in range(len(budgets))],
        "spearman_target_complexity": spearman(targets.tolist(), complexity),
        "train_choice_counts": [chosen.count(k) for k in budgets],
        "train_agreement": 100 * sum(budgets[t] == c for t, c in zip(targets.tolist(), chosen)) / len(chosen),
        "mean_losses": losses.mean(0).tolist(),
        "loss_log": log,
        "seconds": time.perf_counter() - started,
    }


def _shared_row_path(experiment: _Experiment, row: BudgetRow, model):
    """The evaluation path of ``row`` over the shared reader ``model``: SHIRG-X variants get a
    selector with the row's overrides and the trained selector's weights (coordinate embedding,
    budget head); baselines their own selector."""
    from ..models.shirgx_vlm import ShirgXImagePath
    from ..selection import BaselineSelector, ShirgXSelector

    training_config = experiment.training_config(row)
    if row.method == "shirgx":
        selector = ShirgXSelector(training_config.selector)
        selector.load_state_dict(model.selector.state_dict())
        selector.eval()
    else:
        selector = BaselineSelector(row.method, training_config.selector, seed=experiment.config.seed)
    return ShirgXImagePath(model.model, selector, training_config.image_config())


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
    if config.reader not in ("per-row", "shared"):
        raise ValueError(f"reader must be 'per-row' or 'shared'; got {config.reader!r}")
    if not 0.0 <= config.reader_scaffold_share <= 1.0:
        raise ValueError(f"reader_scaffold_share is a share of steps in [0, 1]; got {config.reader_scaffold_share}")
    if config.reader_end_stages and config.reader != "shared":
        raise ValueError("reader_end_stages runs before the shared reader's mixture: it needs reader='shared'")
    if any(b != 0 and b != 2304 and b not in config.train_budgets for b in config.eval_budgets):
        raise ValueError(f"eval_budgets {config.eval_budgets} must be 0, 2304 or one of train_budgets {config.train_budgets}")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        experiment = _Experiment(config)
        result = BudgetExperimentResult(config=dataclasses.asdict(config), pretrain=experiment.pretrain)
        rows = [row for row in BUDGET_ROWS if row.name in config.rows]
        shared = None
        if config.reader == "shared":
            shared, _ = experiment.model_for(BUDGET_ROWS[0])
            reader_dir = Path(config.out_dir) / "reader"
            record = reader_dir / "reader_training.json"
            if record.is_file():
                stored = json.loads(record.read_text())
                _check_resumable(stored["config"], config, reader_dir)
                _load_reader(shared, reader_dir)
                result.train_losses["shared"], result.seconds["shared"] = stored["losses"], stored["seconds"]
                result.pretrain.update(stored.get("pretrain", {}))
            else:
                started = time.perf_counter()
                if config.reader_end_stages:
                    result.pretrain["reader_end"] = pretrain_reader(
                        shared.model, (experiment.train_items, experiment.train_records),
                        (experiment.test_items, experiment.test_records), experiment.tokenizer, config,
                        stages=config.reader_end_stages, steps=config.reader_end_steps,
                        learning_rate=config.reader_end_learning_rate, score_end=True,
                    )
                result.train_losses["shared"] = _train_shared(experiment, shared)
                result.seconds["shared"] = {"train": time.perf_counter() - started, "eval": 0.0}
            if config.budget_head_steps:
                result.pretrain["budget_head"] = _fit_budget_head(experiment, shared)
            save_reader(experiment, shared, reader_dir)
            end_pass = {"reader_end": result.pretrain["reader_end"]} if "reader_end" in result.pretrain else {}
            record.write_text(json.dumps({"config": dataclasses.asdict(config), "losses": result.train_losses["shared"],
                                          "seconds": result.seconds["shared"], "pretrain": end_pass}))
        for row in tqdm(rows, desc="rows", unit="row", disable=not config.show_progress):
            started = time.perf_counter()
            if shared is not None:
                path = _shared_row_path(experiment, row, shared)
            else:
                model, path = experiment.model_for(row)
                result.train_losses[row.name] = _train_row(experiment, row, model, path)
                if row.name == "shirgx" and config.budget_head_steps:
                    result.pretrain["budget_head"] = _fit_budget_head(experiment, model)
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
                    "spearman_k_complexity": spearman(evaluation.adaptive_k, evaluation.complexity),
                }
                result.accuracy[row.name].pop("adaptive")
            # Rows done so far, on disk: a long run that stops keeps what it measured.
            (Path(config.out_dir) / "partial_results.json").write_text(json.dumps(dataclasses.asdict(result)))
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


def plot_seeds_accuracy(results: Sequence[BudgetExperimentResult], path: str | Path) -> Path:
    """Accuracy against image tokens, mean over seeds with ± one standard deviation, one line per row."""
    import matplotlib
    import matplotlib.ticker
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [str(b) for b in results[0].config["eval_budgets"]]
    tokens = [results[0].memory[b]["tokens"] for b in budgets]
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for name in (n for n in results[0].accuracy if all(n in r.accuracy for r in results)):
        values = np.array([[r.accuracy[name][b] for b in budgets] for r in results])
        style = "-o" if name.startswith("shirgx") else "--s"
        axis.errorbar(tokens, values.mean(0), yerr=values.std(0, ddof=1) if len(results) > 1 else None, fmt=style,
                      capsize=3, label=name, linewidth=2.2 if name == "shirgx" else 1)
    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xticks(tokens, [str(t) for t in tokens])
    axis.set_xlabel("image tokens handed to the language model")
    axis.set_ylabel(f"accuracy (%; mean ± std over {len(results)} seeds)")
    axis.set_title("Detail questions: accuracy vs token budget, one shared reader per seed")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def seeds_summary_markdown(results: Sequence[BudgetExperimentResult]) -> str:
    """Accuracy (mean over seeds, 95 % CI from resampling the pooled per-question scores) and
    answer-region coverage per row and budget, over several seeds' results."""
    import numpy as np

    budgets = [str(b) for b in results[0].config["eval_budgets"]]
    samples = results[0].config["bootstrap_samples"]
    seeds = [r.config["seed"] for r in results]
    names = [name for name in results[0].accuracy if all(name in r.accuracy for r in results)]
    lines = [f"Seeds {seeds}: accuracy % (mean over seeds) [95 % CI, pooled questions] / % of answer-region patches kept"
             " at full resolution", "",
             "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for name in names:
        cells = []
        for budget in budgets:
            pooled = [score for r in results for score in r.scores[name].get(budget, [])]
            low, high = bootstrap_ci(pooled, samples, 0)
            mean = float(np.mean([r.accuracy[name][budget] for r in results]))
            coverage = [r.spread[name][budget]["region_full_res"] for r in results if budget in r.spread.get(name, {})]
            cells.append(f"{mean:.1f} [{low:.0f}–{high:.0f}]" + (f" / {np.mean(coverage):.0f}" if coverage else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    kinds = sorted({kind for r in results for scores in r.family_accuracy.values() for f in scores.values() for kind in f})
    per_type = ["", "Per question type (accuracy %, mean over seeds ± std): " + ", ".join(kinds), "",
              "| row | " + " | ".join(f"{kind} @ {_budget_label(b)}" for b in budgets for kind in kinds) + " |",
              "|---|" + "---|" * (len(budgets) * len(kinds))]
    for name in names:
        cells = []
        for budget in budgets:
            for kind in kinds:
                values = [r.family_accuracy[name][budget][kind] for r in results if kind in r.family_accuracy[name].get(budget, {})]
                spread = f" ± {np.std(values, ddof=1):.0f}" if len(values) > 1 else ""
                cells.append(f"{np.mean(values):.0f}{spread}" if values else "–")
        per_type.append(f"| {name} | " + " | ".join(cells) + " |")
    adaptive = [r.adaptive for r in results if r.adaptive]
    if adaptive:
        lines.append(f"| shirgx-adaptive | mean K {np.mean([a['mean_budget'] for a in adaptive]):.0f}: "
                     f"{np.mean([a['accuracy'] for a in adaptive]):.1f} |" + " |" * (len(budgets) - 1))
        correlations = [spearman(a["budgets"], a["complexity"]) for a in adaptive]
        lines += ["", "Adaptive K per seed: Spearman(K, share of non-background pixels) "
                  + ", ".join("n/a (one K for every image)" if math.isnan(c) else f"{c:.2f}" for c in correlations)
                  + "; accuracy per 1,000 image tokens: adaptive "
                  + ", ".join(f"{1000 * a['accuracy'] / (a['mean_budget'] + 144):.1f}" for a in adaptive)]
        for budget in budgets:
            if budget in ("0", "2304"):
                continue
            lines[-1] += f"; fixed K = {budget} " + ", ".join(
                f"{1000 * r.accuracy['shirgx'][budget] / (int(budget) + 144):.1f}" for r in results if "shirgx" in r.accuracy)
    gaps = []
    if "shirgx" in names and len(names) > 1:
        gaps = ["", "SHIRG-X minus each row (points; mean over the pooled questions, each answered by both rows, "
                "[95 % paired bootstrap CI]; seeds where SHIRG-X is ahead / level / behind)", "",
                "| row | " + " | ".join(_budget_label(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for name in names:
            if name == "shirgx":
                continue
            cells = []
            for budget in budgets:
                ours = [x for r in results for x in r.scores["shirgx"][budget]]
                theirs = [x for r in results for x in r.scores[name][budget]]
                gap, low, high = paired_gap_ci(ours, theirs, samples, 0)
                signs = np.sign([r.accuracy["shirgx"][budget] - r.accuracy[name][budget] for r in results])
                cells.append(f"{gap:+.1f} [{low:+.0f}, {high:+.0f}] {int((signs > 0).sum())}/{int((signs == 0).sum())}"
                             f"/{int((signs < 0).sum())}")
            gaps.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + per_type + gaps) + "\n"


def load_results(run_dirs: Sequence[str | Path]) -> list[BudgetExperimentResult]:
    """Finished runs' ``results.json`` (e.g. seeds run at different times) for ``seeds_summary_markdown``."""
    results = []
    for run in run_dirs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --summarise takes finished shirgx_budget run folders")
        results.append(BudgetExperimentResult(**json.loads(path.read_text())))
    budgets = {tuple(r.config["eval_budgets"]) for r in results}
    if len(budgets) > 1:
        raise ValueError(f"the runs were evaluated at different budgets {sorted(budgets)}: their seeds do not pool")
    return results


def _run_one_seed(config: BudgetExperimentConfig) -> BudgetExperimentResult:
    """One seed of ``_run_seeds_side_by_side``, in a fresh process, its output to ``OUT/seed<S>/log.txt``."""
    import contextlib

    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(config.out_dir) / "log.txt", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return run_budget_experiment(config)


def _run_seeds_side_by_side(configs: Sequence[BudgetExperimentConfig], jobs: int) -> list[BudgetExperimentResult]:
    """Run one experiment per config, ``jobs`` at a time in spawned processes (nothing shared with
    this one, so each result is the one a sequential run gives); results in the configs' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    context = multiprocessing.get_context("spawn")
    quiet = [dataclasses.replace(config, show_progress=False) for config in configs]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_one_seed, config) for config in quiet]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=f"seeds ({jobs} jobs)", unit="seed",
                      disable=not configs[0].show_progress):
            pass
        results, failed = [], []
        for config, future in zip(quiet, futures):
            if future.exception() is not None:
                failed.append(config)
            else:
                results.append(future.result())
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise RuntimeError(f"seed {failed[0].seed} failed{more}: see {Path(failed[0].out_dir) / 'log.txt'}")
    return results


def build_config(argv: Sequence[str] | None = None) -> tuple[BudgetExperimentConfig, argparse.Namespace]:
    """The command line's config (a preset, if named, with the flags over it) and the parsed flags."""
    parser = argparse.ArgumentParser(description="SHIRG-X accuracy vs token budget, beside the baselines (tiny, CPU).")
    parser.add_argument("--quick", action="store_true",
                        help="--preset quick: the first look's short run (detail families, pretrained frozen tower, diffusion, 2 rows)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a documented recipe (flags below override it): quick (quick_config), reader "
                             "(the evidence run, reader_config), reader-quick (its ≤ 15 min cut, reader_quick_config)")
    parser.add_argument("--jobs", type=int, default=1, help="with --seeds: run this many seeds side by side, one process each")
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
    parser.add_argument("--answer-words-as-tokens", action=argparse.BooleanOptionalAction, default=None,
                        help="colour names and 'frame' as whole tokens of the tiny tokenizer")
    parser.add_argument("--align-steps", type=int, default=None, help="projector alignment steps onto label-word embeddings")
    parser.add_argument("--freeze-projector", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--reader", choices=("per-row", "shared"), default=None,
                        help="one model per row, or one shared reader trained on a mixture of rows")
    parser.add_argument("--reader-rows", default=None, help="comma list: the shared reader's training mixture")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--reader-stages", default=None, help="comma list of image-token counts: the read-out curriculum")
    parser.add_argument("--reader-stage-steps", type=int, default=None)
    parser.add_argument("--reader-end-stages", default=None,
                        help="comma list of image-token counts: the shared reader's answer-end pass ('' for none)")
    parser.add_argument("--reader-end-steps", type=int, default=None)
    parser.add_argument("--reader-end-learning-rate", type=float, default=None)
    parser.add_argument("--reader-scaffold-share", type=float, default=None,
                        help="share of curriculum and answer-end steps with the 144-token scaffold before the patches")
    parser.add_argument("--budget-head-steps", type=int, default=None,
                        help="fit the adaptive budget head alone on the reader's per-question targets after training")
    parser.add_argument("--figures", default=None, help="folder for the PNG plots")
    parser.add_argument("--summarise", default=None, metavar="RUN,RUN,...",
                        help="train nothing: pool finished runs' results.json (comma list of run folders) into OUT/seeds.md")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in {
        "out_dir": args.out, "rows": tuple(args.rows.split(",")) if args.rows else None,
        "families": tuple(args.families.split(",")) if args.families else None,
        "train_images": args.train_images, "test_images": args.test_images, "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "threads": args.threads, "seed": args.seed, "pretrain_steps": args.pretrain_steps,
        "freeze_vision": args.freeze_vision, "objective": args.objective,
        "diffusion_loss_weighting": args.diffusion_loss_weighting,
        "answer_words_as_tokens": args.answer_words_as_tokens, "align_steps": args.align_steps,
        "freeze_projector": args.freeze_projector, "reader": args.reader,
        "reader_rows": tuple(args.reader_rows.split(",")) if args.reader_rows else None,
        "batch_size": args.batch_size,
        "reader_stages": tuple(int(v) for v in args.reader_stages.split(",")) if args.reader_stages else None,
        "reader_stage_steps": args.reader_stage_steps, "budget_head_steps": args.budget_head_steps,
        "reader_end_stages": (tuple(int(v) for v in args.reader_end_stages.split(",") if v)
                              if args.reader_end_stages is not None else None),
        "reader_end_steps": args.reader_end_steps, "reader_end_learning_rate": args.reader_end_learning_rate,
        "reader_scaffold_share": args.reader_scaffold_share,
    }.items() if value is not None}
    if args.quick and args.preset not in (None, "quick"):
        parser.error(f"--quick is --preset quick; it cannot be combined with --preset {args.preset}")
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1; got {args.jobs}")
    preset = "quick" if args.quick else args.preset
    return (PRESETS[preset](**overrides) if preset else BudgetExperimentConfig(**overrides)), args


def main(argv: Sequence[str] | None = None) -> int:
    config, args = build_config(argv)
    if args.summarise:
        try:
            results = load_results(args.summarise.split(","))
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"shirgx_budget --summarise: {error}")
        summary = seeds_summary_markdown(results)
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.out_dir) / "seeds.md").write_text(summary)
        print(summary)
        if args.figures:
            print(f"wrote {plot_seeds_accuracy(results, Path(args.figures) / 'shirgx_accuracy_vs_budget_seeds.png')}")
        return 0
    if args.seeds:
        started = time.perf_counter()
        seeded = [dataclasses.replace(config, seed=seed, out_dir=str(Path(config.out_dir) / f"seed{seed}"))
                  for seed in (int(value) for value in args.seeds.split(","))]
        if args.jobs > 1:
            results = _run_seeds_side_by_side(seeded, args.jobs)
            for one in results:
                print(budget_results_markdown(one))
        else:
            results = []
            for one in seeded:  # each seed's table as soon as it is done, as before --jobs
                results.append(run_budget_experiment(one))
                print(budget_results_markdown(results[-1]))
        print(f"{len(results)} seed(s) in {(time.perf_counter() - started) / 60:.1f} min wall ({args.jobs} job(s))")
        summary = seeds_summary_markdown(results)
        (Path(config.out_dir) / "seeds.md").write_text(summary)
        print(summary)
        result = results[0]
        if args.figures:
            print(f"wrote {plot_seeds_accuracy(results, Path(args.figures) / 'shirgx_accuracy_vs_budget_seeds.png')}")
    else:
        result = run_budget_experiment(config)
        print(budget_results_markdown(result))
    if args.figures:
        for path in plot_budget_results(result, args.figures):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
