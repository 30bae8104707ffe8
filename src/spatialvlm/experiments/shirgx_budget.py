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
    "spatial_spread",
    "run_budget_experiment",
    "budget_results_markdown",
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


@dataclass
class BudgetExperimentResult:
    """Everything measured (``OUT/results.json``).

    Attributes:
        config: the ``BudgetExperimentConfig`` as a dict.
        accuracy: row → budget (str) → official score in percent (mean over questions).
        family_accuracy: row → budget → question type → percent.
        adaptive: the adaptive head's evaluation: accuracy, mean K, per-image K and complexity.
        spread: row → budget → {"cells_covered", "region_coverage"} means over test images.
        token_counts: row → budget → sorted distinct image-token counts seen (one value: static).
        seconds: row → {"train", "eval"} wall seconds; ``prefill_ms`` row → budget → mean ms of
            selection + projection + greedy decoding of one answer (the vision tower excluded).
        memory: budget → {"tokens", "tiny_kv_bytes", "lavida_kv_bytes"}.
        train_losses: row → mean answer loss of each epoch.
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
        self.selector_config = ShirgXConfig(
            vision_dim=width, grid=(48, 48), budgets=tuple(config.train_budgets),
            default_budget=config.train_budgets[len(config.train_budgets) // 2],
        )
        self.base_dir = self.out / "base"
        self._save_base()
        self.train_items, self.train_records = self._items("train")
        self.test_items, self.test_records = self._items("test")

    def _save_base(self) -> None:
        import torch

        from ..models.shirgx_vlm import build_shirgx_base

        torch.manual_seed(self.config.seed)
        build_shirgx_base(self.vlm_config).save_pretrained(self.base_dir)

    def training_config(self, row: BudgetRow):
        from ..train.tasks.shirgx import ShirgXTrainingConfig

        selector = dataclasses.replace(self.selector_config, **row.selector_overrides)
        return ShirgXTrainingConfig(
            selector=selector, image_size=672, budget_target_every=self.config.budget_target_every,
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
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
            else:
                loss = path(**batch, budget=budget).loss
                answer_loss = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
                inputs = path.build_inputs(prompt_ids, tokens)
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
                result.families[budget].setdefault(record["question_type"], []).append(score)
                result.counts.setdefault(budget, set()).add(int(tokens.shape[1]))
                if selection is not None:
                    cells, coverage = spatial_spread(
                        selection.source_index, selection.is_scaffold, selector_config.grid[0],
                        selector_config.scaffold_pool, regions,
                    )
                    result.cells.setdefault(budget, []).append(float(cells[0]))
                    result.region.setdefault(budget, []).append(float(coverage[0]))
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
        result = BudgetExperimentResult(config=dataclasses.asdict(config))
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
        b: {"cells_covered": mean(evaluation.cells[b]), "region_coverage": 100 * mean(evaluation.region[b])}
        for b in evaluation.cells
    }
    result.token_counts[name] = {b: sorted(v) for b, v in evaluation.counts.items()}
    result.prefill_ms[name] = {b: 1000 * mean(v) for b, v in evaluation.prefill.items()}


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
    lines += ["", "Spatial spread of the kept fine tokens (non-scaffold, ≤ 5 patches each): 12×12 cells covered / % of answer-region patches covered",
              "", "| row | " + " | ".join(_budget_label(b) for b in budgets[1:]) + " |", "|---|" + "---:|" * (len(budgets) - 1)]
    for name, spread in result.spread.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{spread[b]['cells_covered']:.0f} / {spread[b]['region_coverage']:.0f}%" if b in spread else "–"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SHIRG-X accuracy vs token budget, beside the baselines (tiny, CPU).")
    defaults = BudgetExperimentConfig()
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--rows", default=",".join(defaults.rows), help="comma list of rows")
    parser.add_argument("--train-images", type=int, default=defaults.train_images)
    parser.add_argument("--test-images", type=int, default=defaults.test_images)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--figures", default=None, help="folder for the PNG plots")
    args = parser.parse_args(argv)
    config = BudgetExperimentConfig(
        out_dir=args.out, rows=tuple(args.rows.split(",")), train_images=args.train_images,
        test_images=args.test_images, epochs=args.epochs, threads=args.threads, seed=args.seed,
    )
    result = run_budget_experiment(config)
    print(budget_results_markdown(result))
    if args.figures:
        for path in plot_budget_results(result, args.figures):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
