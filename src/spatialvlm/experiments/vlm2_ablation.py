"""The VLM² ablation on the synthetic benchmark: train tiny variants on CPU, score them held out.

    python -m spatialvlm.experiments.vlm2_ablation --out ablation_out --save-best checkpoints/vlm2-tiny-synthetic

One process, one run after another (a progress bar over the variants, the Trainer's bar inside):

1. ``spatialvlm synth``'s generator writes a seeded training split and a held-out test split (other
   scenes: the split name is part of every scene's seed) into ``OUT/data``.
2. The VSI-Bench questions of the training split become LLaVA-format conversations whose human turn
   is the official evaluation prompt and whose answer is the gold answer (option letter or number).
3. Every trained variant starts from the same randomly initialised tiny base checkpoint (``OUT/base``)
   and trains *all* its parts (nothing here is pretrained) with ``spatialvlm.train.prepare_training``
   on the VLM² task, then answers the test questions through ``spatialvlm.models.ask_video`` — the
   code path of ``spatialvlm ask`` and ``spatialvlm eval --model`` — and is scored by
   ``spatialvlm.eval.evaluate`` (official VSI-Bench rules, lenient beside).
4. The chance and most-frequent-answer baselines are fitted on the training split.
5. ``OUT/results.{json,md}`` hold the table; the best full-VLM² variant (fusion + both memories) is
   saved as a self-contained checkpoint (``load_vlm2`` / ``spatialvlm ask --model`` read it).

Variants (``VARIANTS``): blind (the question with one blank frame: no information about the scene),
vision only, + coordinate injection (the fusion block with point tokens and the coordinate gate, no
view conditioning), + viewpoint alignment (the full fusion block), + working memory (episodic
capacity 1: ``DualMemory`` cannot switch its episodic branch off), + episodic memory = full VLM²
(L_w, L_e) = (8, 32), and full VLM² with (4, 8), (8, 8), (16, 32).
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
    "AblationConfig",
    "Variant",
    "VariantResult",
    "RowSummary",
    "AblationResult",
    "QUICK",
    "QUICK_VARIANTS",
    "summarise",
    "modal_answer_share",
    "plot_training_curves",
    "VARIANTS",
    "BASELINES",
    "FULL_VLM2_PREFIX",
    "llava_records",
    "run_ablation",
    "results_markdown",
    "main",
]

# Without a pretrained base every part trains (from scratch); from the synthetic-pretrained base
# (``vlm2_base``) the rows fine-tune what VLM-3R / VLM² fine-tune: fusion, memory, projector and
# the (tiny) language model in full, the vision tower frozen.
ALL_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model", "fusion", "dual_memory")
FINETUNE_PARTS = ("mm_mlp_adapter", "mm_language_model", "fusion", "dual_memory")


@dataclass(frozen=True)
class Variant:
    """One row of the ablation.

    Attributes:
        name: short name used in tables and folder names.
        description: what the row adds or removes.
        flags: ``VLM2Config`` flags of the variant (on top of the tiny base with everything off).
        blind: replace the video by one blank frame, in training and at test time.
    """

    name: str
    description: str
    flags: dict[str, Any] = field(default_factory=dict)
    blind: bool = False

    @property
    def is_full_vlm2(self) -> bool:
        """Fusion with both of its parts and the dual memory with a real episodic memory."""
        flags = self.flags
        return (
            bool(flags.get("use_spatial_fusion"))
            and flags.get("use_coordinate_injection", True)
            and flags.get("use_viewpoint_alignment", True)
            and bool(flags.get("use_dual_memory"))
            and flags.get("memory_L_e", 32) > 1
        )


_NO_FUSION = {"use_spatial_fusion": False, "use_dual_memory": False}
_FUSION = {"use_spatial_fusion": True, "use_coordinate_injection": True, "use_viewpoint_alignment": True}
FULL_VLM2_PREFIX = "vlm2"


# Metric coordinates (issue 14's ``coordinate_normalization="metric"``: first-camera frame, metres)
# keep the scale the numerical questions ask for; every row from viewpoint alignment on uses them.
_METRIC = {"coordinate_normalization": "metric"}


def _full(working: int, episodic: int, **extra: Any) -> dict[str, Any]:
    return {**_FUSION, **_METRIC, "use_dual_memory": True, "memory_L_w": working, "memory_L_e": episodic, **extra}


BASELINES: tuple[str, ...] = ("chance", "most-frequent", "category-prior")
VARIANTS: tuple[Variant, ...] = (
    Variant("blind", "question only: one blank frame instead of the video", dict(_NO_FUSION), blind=True),
    Variant("vision", "SigLIP → projector → LM (no fusion, no memory)", dict(_NO_FUSION)),
    Variant(
        "+coords",
        "+ fusion block with coordinate injection, per-video normalised coordinates (no view conditioning)",
        {**_FUSION, "use_viewpoint_alignment": False, "use_dual_memory": False},
    ),
    Variant(
        "+coords-metric",
        "+ fusion block with coordinate injection, metric coordinates in the first camera's frame",
        {**_FUSION, **_METRIC, "use_viewpoint_alignment": False, "use_dual_memory": False},
    ),
    Variant("+viewpoint", "+ viewpoint alignment (full fusion block, metric)", {**_FUSION, **_METRIC, "use_dual_memory": False}),
    Variant("+working", "+ dual memory, working L_w=8, episodic L_e=1 (smallest allowed)", _full(8, 1)),
    Variant(f"{FULL_VLM2_PREFIX}-8-32", "+ episodic memory: full VLM², (L_w, L_e) = (8, 32)", _full(8, 32)),
    Variant(f"{FULL_VLM2_PREFIX}-4-8", "full VLM², (L_w, L_e) = (4, 8)", _full(4, 8)),
    Variant(f"{FULL_VLM2_PREFIX}-8-8", "full VLM², (L_w, L_e) = (8, 8)", _full(8, 8)),
    Variant(f"{FULL_VLM2_PREFIX}-16-32", "full VLM², (L_w, L_e) = (16, 32)", _full(16, 32)),
    Variant(f"{FULL_VLM2_PREFIX}-8-32-residual", "full VLM² (8, 32), memory_output='residual'", _full(8, 32, memory_output="residual")),
    Variant(
        f"{FULL_VLM2_PREFIX}-8-32-write-first", "full VLM² (8, 32), memory_read_order='write_then_read'",
        _full(8, 32, memory_read_order="write_then_read"),
    ),
)
QUICK_VARIANTS: tuple[str, ...] = BASELINES + ("vision", "+coords-metric", f"{FULL_VLM2_PREFIX}-8-32")


@dataclass
class AblationConfig:
    """Every knob of the ablation, with its default and meaning.

    Data (``spatialvlm.data.synthetic``):
        out_dir: where data, base model, per-variant evaluations and results go.
        data_dir: an existing benchmark directory (``spatialvlm synth`` train and test splits at
            ``num_frames`` / ``image_size``) to use instead of generating one into ``OUT/data``.
        seed: seed of the generated data (and of the random base when no ``base`` is given).
        seeds: the replicates: seed s picks the s-th random subset of ``train_scenes`` training
            scenes (data), the initialisation of the modules the base lacks (init) and the batch
            order (order). Rows report mean ± std over them.
        train_scenes / test_scenes: scenes (videos) used for training / scored held out (the first
            ``test_scenes`` of the test split; with ``data_dir`` the split may hold more).
        num_frames: frames per video, all fed to the model (training and test).
        image_size: rendered frame side = SigLIP input side, pixels (a multiple of the patch, 14).
        questions_per_type: at most this many questions of each type per scene.

    Tiny model:
        base: a synthetic-pretrained base (``spatialvlm.experiments.vlm2_base``); rows fine-tune
            ``FINETUNE_PARTS`` from it. None: a random ``tiny_vlm2_config`` model of the widths
            below, every part trained from scratch (the old ablation).
        vision_hidden_size / vision_layers: SigLIP width (= memory width) and depth (no base).
        text_hidden_size / text_layers: Qwen2 width and depth (no base).

    Training (``spatialvlm.train``, transformers' Trainer):
        epochs, batch_size, learning_rate, weight_decay, warmup_ratio: the usual; cosine schedule.
        dropout: dropout of the fusion block and of the memory attentions (the models' default is
            0.1). 0 here: on CPU the dropout masks cost a quarter of a VLM² step, and the rows see
            each question at most about once.
        max_steps: > 0 stops every variant after this many steps (smoke runs).

    Run:
        variants: names from ``BASELINES`` and ``VARIANTS`` to run (default: all, in that order).
        eval_limit: score only the first N test questions (smoke runs).
        num_threads: torch threads; 1 is fastest for these tiny tensors on a loaded machine.
        jobs: trained (variant, seed) runs side by side, each in its own process with
            ``num_threads`` threads (2 on this 2-core machine); results as with 1 (tested).
        save_best: also copy the best full-VLM² variant's checkpoint here.
        progress: progress bars.
    """

    out_dir: str = "ablation_out"
    data_dir: str | None = None
    base: str | None = None
    seed: int = 0
    seeds: tuple[int, ...] = (0,)
    train_scenes: int = 36
    test_scenes: int = 10
    num_frames: int = 16
    image_size: int = 56
    questions_per_type: int = 2
    vision_hidden_size: int = 48
    vision_layers: int = 2
    text_hidden_size: int = 96
    text_layers: int = 2
    epochs: float = 4.0
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    dropout: float = 0.0
    max_steps: int = -1
    variants: tuple[str, ...] = BASELINES + tuple(variant.name for variant in VARIANTS)
    eval_limit: int | None = None
    num_threads: int = 1
    jobs: int = 1
    save_best: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        known = set(BASELINES) | {variant.name for variant in VARIANTS}
        unknown = [name for name in self.variants if name not in known]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; known: {list(BASELINES) + [v.name for v in VARIANTS]}")
        if self.image_size % 14 or self.image_size % 2:
            raise ValueError(f"image_size must be an even multiple of the patch size 14, got {self.image_size}")
        if min(self.train_scenes, self.test_scenes, self.num_frames) < 1:
            raise ValueError("train_scenes, test_scenes and num_frames must be >= 1")
        if not self.seeds:
            raise ValueError("seeds must name at least one replicate")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")


@dataclass
class VariantResult:
    """Scores of one row and one seed (percent) and what it cost.

    Attributes:
        name, description: the variant.
        seed: the replicate.
        official / lenient: ``BenchmarkScores.to_dict()`` of the held-out questions.
        train_seconds / eval_seconds: wall time of training and of answering.
        train_loss: mean training loss of the run (None for baselines).
        held_out_loss: answer-token loss on the held-out questions after training (None for baselines).
        loss_log: the Trainer's logged training losses (step, loss).
        trainable_parameters: parameters trained (0 for baselines).
    """

    name: str
    description: str
    official: dict[str, Any]
    lenient: dict[str, Any]
    seed: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_loss: float | None = None
    held_out_loss: float | None = None
    loss_log: list[list[float]] = field(default_factory=list)
    trainable_parameters: int = 0


@dataclass
class RowSummary:
    """One row over its seeds.

    Attributes:
        name, description: the variant.
        seeds: the replicates that ran.
        overall_mean / overall_std: official overall, mean and sample std over seeds (std 0 for one).
        overall_ci: bootstrap 95 % interval of the seed-mean overall, resampling held-out questions.
        tasks: per-task official score, mean over seeds.
        numerical_mean: mean of the four numerical tasks' seed-mean scores.
        modal_share: percent of held-out answers equal to the row's most common answer to their
            question type (mean over types and seeds): 100 means one constant answer per type,
            i.e. the video was ignored.
    """

    name: str
    description: str
    seeds: list[int]
    overall_mean: float
    overall_std: float
    overall_ci: tuple[float, float]
    tasks: dict[str, float]
    numerical_mean: float
    numerical_std: float
    modal_share: float = float("nan")


@dataclass
class AblationResult:
    """What ``run_ablation`` produced.

    Attributes:
        results: one ``VariantResult`` per row and seed, in run order.
        rows: one ``RowSummary`` per row.
        best_full_vlm2: name of the best full-VLM² variant (seed-mean official overall), None if none ran.
        best_checkpoint: its seed-``seeds[0]`` checkpoint directory, None if none ran.
        num_train_questions / num_test_questions: sizes of the splits (VSI-Bench questions).
        seconds: wall time of the whole run.
    """

    results: list[VariantResult]
    rows: list[RowSummary]
    best_full_vlm2: str | None
    best_checkpoint: Path | None
    num_train_questions: int
    num_test_questions: int
    seconds: float


def _synth_config(config: AblationConfig, split: str, num_scenes: int):
    from ..data.synthetic import QuestionConfig, SynthConfig

    return SynthConfig(
        num_scenes=num_scenes,
        num_frames=config.num_frames,
        image_size=config.image_size,
        seed=config.seed,
        split=split,
        questions=QuestionConfig(questions_per_type=config.questions_per_type),
    )


def _generate_data(config: AblationConfig, data_dir: Path) -> None:
    """Write both splits unless ``data_dir`` already holds exactly these (seeded, so identical)."""
    from ..data.synthetic import generate_split

    wanted = {split: dataclasses.asdict(_synth_config(config, split, n)) for split, n in
              (("train", config.train_scenes), ("test", config.test_scenes))}
    stamp = data_dir / "synth_configs.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(wanted)):
        return
    for split, scenes in (("train", config.train_scenes), ("test", config.test_scenes)):
        generate_split(data_dir, _synth_config(config, split, scenes), show_progress=config.progress)
    stamp.write_text(json.dumps(wanted, indent=1))


def llava_records(items: Sequence[Any], geometry: bool = True) -> list[dict[str, Any]]:
    """VSI-Bench items → LLaVA-format training records asking the official evaluation prompt.

    Args:
        items: ``BenchmarkItem`` rows of a synthetic split (videos at ``<dataset>/<scene>.mp4``,
            geometry at ``<dataset>/<scene>_geometry``).
        geometry: add the ``geometry`` folder (needed when the model runs the fusion block).

    Returns:
        records with ``id``, ``video`` (and ``geometry``) relative to the split's directory and
        ``conversations`` = [human: "<video>\\n" + official prompt, gpt: gold answer].
    """
    from ..eval import build_prompt
    from ..eval.baselines import gold_answer

    records = []
    for item in items:
        record = {
            "id": f"{item.scene_name}_q{item.id}",
            "video": f"{item.dataset}/{item.scene_name}.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\n" + build_prompt(item, "vsibench")},
                {"from": "gpt", "value": gold_answer(item)},
            ],
        }
        if geometry:
            record["geometry"] = f"{item.dataset}/{item.scene_name}_geometry"
        records.append(record)
    return records


def _save_base(config: AblationConfig, directory: Path) -> None:
    """The shared starting point: a randomly initialised tiny model with every VLM² module off."""
    import torch

    from ..models import VLM2ForConditionalGeneration, build_tiny_processor
    from .vlm2_base import tiny_model_config

    torch.manual_seed(config.seed)
    model_config = tiny_model_config(config)
    VLM2ForConditionalGeneration(model_config).save_pretrained(directory)
    build_tiny_processor(model_config).save_pretrained(directory)


class _BlankFrames:
    """Blind variant's training items: the video replaced by one blank (black) frame."""

    def __init__(self, dataset: Any, blank: Any) -> None:
        self.dataset = dataset
        self.blank = blank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return {**self.dataset[index], "pixel_values_videos": self.blank}


def _parts(config: AblationConfig, variant: Variant) -> list[str]:
    parts = list(FINETUNE_PARTS if config.base else ALL_PARTS)
    parts = [part for part in parts if part != "fusion" or variant.flags.get("use_spatial_fusion")]
    return [part for part in parts if part != "dual_memory" or variant.flags.get("use_dual_memory")]


def _train_variant(
    config: AblationConfig, variant: Variant, seed: int, base_dir: Path, data_path: Path, run_dir: Path, cache: dict
):
    """Train ``variant`` from the base; returns (model in eval mode, processor, run)."""
    import numpy as np
    import torch
    from transformers import TrainingArguments

    from ..train import DataArguments, ModelArguments, prepare_training

    # Seeds the modules the base lacks (init) and, through the Trainer, the batch order.
    torch.manual_seed(seed)
    flags = dict(variant.flags)
    if flags.get("use_spatial_fusion"):
        flags.setdefault("fusion_dropout", config.dropout)
    if flags.get("use_dual_memory"):
        flags.setdefault("memory_dropout", config.dropout)
    model_args = ModelArguments(model_name_or_path=str(base_dir), mm_tunable_parts=",".join(_parts(config, variant)), **flags)
    data_args = DataArguments(data_path=str(data_path), num_frames=1 if variant.blind else config.num_frames)
    training_args = TrainingArguments(
        output_dir=str(run_dir / "train"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="cosine",
        logging_steps=10,
        # Show a diverged run as nan instead of the Trainer's default of hiding non-finite losses.
        logging_nan_inf_filter=False,
        save_strategy="no",
        report_to="none",
        seed=seed,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=not config.progress,
    )
    run = prepare_training(model_args, data_args, training_args, task="vlm2")
    trainer = run.trainer
    processor = trainer.processing_class
    # Every row and seed reads the same videos: one cache of decoded frames and geometry serves all.
    dataset = trainer.train_dataset
    dataset.video_cache = cache
    if variant.blind:
        blank = np.zeros((1, config.image_size, config.image_size, 3), dtype=np.uint8)
        dataset = _BlankFrames(dataset, processor.preprocess_frames(blank))
    trainer.train_dataset = dataset
    output = trainer.train()
    run.training_loss = float(output.training_loss)
    return trainer.model.eval(), processor, run


class _ScenePredictor:
    """``(item, prompt) -> answer`` with a trained model, through ``ask_video`` (as ``spatialvlm ask``).

    The frames and geometry of a scene are read and encoded once (``encode_video``) and reused by
    its questions; only the language model runs per question (the same answers as encoding the video
    for every question, as ``spatialvlm ask`` does: tested).
    """

    def __init__(self, model: Any, processor: Any, config: AblationConfig, blind: bool) -> None:
        self.model, self.processor, self.config, self.blind = model, processor, config, blind
        self.encoded: dict[str, Any] = {}

    def _scene(self, item: Any) -> tuple[Any, Any]:
        """(frames (T, H, W, 3) uint8, geometry or None) of the item's scene as the model reads it."""
        import numpy as np

        from ..data.video import read_video
        from ..models import load_video_geometry

        if self.blind:
            side = self.config.image_size
            return np.zeros((1, side, side, 3), dtype=np.uint8), None
        clip = read_video(item.video_path, self.config.num_frames, allow_fewer=True)
        geometry = None
        if self.model.config.needs_geometry:
            folder = item.video_path.parent / f"{item.scene_name}_geometry"
            geometry = load_video_geometry(folder, clip.indices, coordinate_normalization=self.processor.coordinate_normalization)
        return clip.frames, geometry

    def __call__(self, item: Any, prompt: str) -> str:
        from ..models import ask_video, encode_video

        if item.scene_name not in self.encoded:  # the video's tokens do not depend on the question
            frames, geometry = self._scene(item)
            self.encoded[item.scene_name] = encode_video(self.model, self.processor, frames, geometry=geometry, num_frames=None)
        return ask_video(self.model, self.processor, self.encoded[item.scene_name], prompt).text


def _save_checkpoint(model: Any, processor: Any, directory: Path, metadata: dict[str, Any]) -> None:
    """A self-contained checkpoint ``load_vlm2`` reads: weights, config, tokenizer, processor, and
    ``synthetic_training.json`` (how it was trained and scored: the demo renders matching scenes)."""
    import shutil

    if directory.exists():
        shutil.rmtree(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / "synthetic_training.json").write_text(json.dumps(metadata, indent=1) + "\n")


def _records_for(items: Sequence[Any], data_dir: Path, geometry: bool) -> list[dict[str, Any]]:
    """``llava_records`` with absolute paths, so the record file may live anywhere."""
    records = llava_records(items, geometry=geometry)
    for record in records:
        record["video"] = str((data_dir / record["video"]).resolve())
        if geometry:
            record["geometry"] = str((data_dir / record["geometry"]).resolve())
    return records


def _scene_subset(items: Sequence[Any], count: int, seed: int | None) -> list[Any]:
    """Items of ``count`` scenes: the first ones (seed None) or a seeded random choice."""
    import numpy as np

    names = sorted({item.scene_name for item in items})
    if seed is None:
        keep = set(names[:count])
    else:
        keep = set(np.random.default_rng(seed).permutation(names)[:count].tolist())
    return [item for item in items if item.scene_name in keep]


def _baseline_predictor(name: str, train_items: Sequence[Any], seed: int):
    from ..eval import CategoryPriorBaseline, ChanceBaseline, MostFrequentBaseline

    if name == "chance":
        return ChanceBaseline(train_items, seed=seed)
    if name == "most-frequent":
        return MostFrequentBaseline(train_items)
    return CategoryPriorBaseline(train_items)


_BASELINE_DESCRIPTIONS = {
    "chance": "chance: random option / random training answer",
    "most-frequent": "most frequent training answer per type (numerical: training median)",
    "category-prior": "per type and named category: training median / most frequent option",
}


def run_ablation(config: AblationConfig) -> AblationResult:
    """Run every variant of ``config.variants`` for every seed, resumably; write the results.

    A finished (variant, seed) leaves ``OUT/runs/<variant>/seed<s>/result.json`` and is not rerun.
    """
    import torch
    import transformers
    from tqdm.auto import tqdm

    from ..data.readers import read_benchmark
    from ..eval import evaluate
    from ..eval.metrics import question_types
    from ..train.tasks import get_task
    from .vlm2_base import held_out_loss

    torch.set_num_threads(config.num_threads)
    # Every variant adds fresh modules to the base; the loader's per-weight report of them would
    # bury the progress bars (``VLM2ForConditionalGeneration`` still logs a one-line summary).
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.data_dir:
        data_dir = Path(config.data_dir)
    else:
        data_dir = out / "data"
        _generate_data(config, data_dir)
    all_train = read_benchmark(data_dir, "train", question_types("vsibench"))
    test_items = _scene_subset(read_benchmark(data_dir, "test", question_types("vsibench")), config.test_scenes, None)
    if config.eval_limit is not None:
        test_items = test_items[: config.eval_limit]
    if config.base:
        base_dir = Path(config.base)
    else:
        base_dir = out / "base"
        if not (base_dir / "config.json").is_file():
            _save_base(config, base_dir)
    (out / "held_out").mkdir(exist_ok=True)
    held_path = out / "held_out" / "held_out_llava_geometry.json"
    _write_atomic(held_path, json.dumps(_records_for(test_items, data_dir, geometry=True)))
    if config.jobs > 1:
        _run_side_by_side(config, out)

    by_name = {variant.name: variant for variant in VARIANTS}
    results: list[VariantResult] = []
    cache: dict = {}
    # Row by row, each over all seeds: an interrupted run leaves complete rows (every seed) behind.
    jobs = [(seed, name) for name in config.variants for seed in config.seeds]
    bar = tqdm(jobs, desc="ablation", unit="run", disable=not config.progress)
    train_sizes = []
    for seed, name in bar:
        bar.set_postfix_str(f"{name} seed {seed}")
        run_dir = out / "runs" / name / f"seed{seed}"
        done = run_dir / "result.json"
        if done.is_file():
            results.append(VariantResult(**json.loads(done.read_text())))
            continue
        train_items = _scene_subset(all_train, min(config.train_scenes, len({i.scene_name for i in all_train})), seed)
        train_sizes.append(len(train_items))
        loss = held = None
        loss_log: list[list[float]] = []
        model = processor = None
        trained = 0
        train_seconds = 0.0
        if name in BASELINES:
            variant = Variant(name, _BASELINE_DESCRIPTIONS[name])
            # Baselines see the whole training split (a model-free prior gets every answer it can).
            predictor = _baseline_predictor(name, all_train, seed)
        else:
            variant = by_name[name]
            geometry = bool(variant.flags.get("use_spatial_fusion"))
            data_path = out / "records" / f"train_seed{seed}{'_geometry' if geometry else ''}.json"
            data_path.parent.mkdir(exist_ok=True)
            if not data_path.is_file():
                _write_atomic(data_path, json.dumps(_records_for(train_items, data_dir, geometry=geometry)))
            tick = time.perf_counter()
            model, processor, run = _train_variant(config, variant, seed, base_dir, data_path, run_dir, cache)
            train_seconds = time.perf_counter() - tick
            loss, trained = run.training_loss, run.summary.trainable
            loss_log = [[e["step"], e["loss"]] for e in run.trainer.state.log_history if "loss" in e]
            from ..train import DataArguments

            held_dataset, collator = get_task("vlm2").build_train_data(
                processor, DataArguments(data_path=str(held_path), num_frames=1 if variant.blind else config.num_frames),
                model.config,
            )
            held_dataset.video_cache = cache
            if variant.blind:
                import numpy as np

                blank = processor.preprocess_frames(np.zeros((1, config.image_size, config.image_size, 3), dtype=np.uint8))
                held_dataset = _BlankFrames(held_dataset, blank)
            held = held_out_loss(model, held_dataset, collator, config.batch_size)
            predictor = _ScenePredictor(model, processor, config, variant.blind)
        tick = time.perf_counter()
        with torch.no_grad():
            scores = evaluate(test_items, predictor, run_dir / "eval", "vsibench", resume=False,
                              show_progress=config.progress, title=f"synthetic VSI-Bench — {name} seed {seed}")
        result = VariantResult(
            name=name, description=variant.description, official=scores.official.to_dict(),
            lenient=scores.lenient.to_dict(), seed=seed, train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - tick, train_loss=loss, held_out_loss=held, loss_log=loss_log,
            trainable_parameters=trained,
        )
        if model is not None and (variant.is_full_vlm2 or name == "vision"):
            _save_checkpoint(model, processor, run_dir / "model", {
                "variant": name, "description": variant.description, "flags": variant.flags, "seed": seed,
                "base": str(base_dir),
                "ablation_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "variants"},
                "synth": {"num_frames": config.num_frames, "image_size": config.image_size, "seed": config.seed,
                          "split": "test", "scenes": config.test_scenes},
                "held_out_official": scores.official.to_dict(), "held_out_lenient": scores.lenient.to_dict(),
                # The demo prints these beside the checkpoint's own held-out overall.
                "baselines": {r.name: r.official["overall"] for r in results if r.name in BASELINES and r.seed == seed},
            })
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n")
        results.append(result)
        rows = summarise(results, out, config.variants)
        _write_results(out, config, results, rows)

    rows = summarise(results, out, config.variants)
    _write_results(out, config, results, rows)
    full = [row for row in rows if row.name in by_name and by_name[row.name].is_full_vlm2]
    best = max(full, key=lambda row: row.overall_mean) if full else None
    best_checkpoint = None
    if best is not None:
        best_checkpoint = out / "runs" / best.name / f"seed{best.seeds[0]}" / "model"
        if config.save_best:
            import shutil

            target = Path(config.save_best)
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(best_checkpoint, target)
            best_checkpoint = target
    return AblationResult(
        results=results, rows=rows, best_full_vlm2=best.name if best else None, best_checkpoint=best_checkpoint,
        num_train_questions=max(train_sizes) if train_sizes else 0, num_test_questions=len(test_items),
        seconds=time.perf_counter() - start,
    )


def _official_overall(scores: Any, task_of: Sequence[str], sub_of: Sequence[str]) -> Any:
    """Official overall of per-question scores (..., n): mean over tasks of the task means, where
    ``object_rel_direction`` is the mean of its sub-types' means (as ``score_benchmark``)."""
    import numpy as np

    task_of, sub_of = np.asarray(task_of), np.asarray(sub_of)
    task_scores = []
    for task in dict.fromkeys(task_of.tolist()):
        subs = [np.mean(scores[..., sub_of == sub], -1) for sub in dict.fromkeys(sub_of[task_of == task].tolist())]
        task_scores.append(np.mean(subs, 0))
    return 100 * np.mean(task_scores, 0)


def modal_answer_share(records: Sequence[dict[str, Any]]) -> float:
    """Percent of answers equal to the most common answer of their question type, averaged over
    types (``records``: rows of ``predictions.jsonl`` with ``question_type`` and ``prediction``)."""
    from collections import Counter

    by_type: dict[str, Counter] = {}
    for record in records:
        by_type.setdefault(record["question_type"], Counter())[str(record["prediction"]).strip()] += 1
    shares = [counts.most_common(1)[0][1] / sum(counts.values()) for counts in by_type.values()]
    return 100.0 * sum(shares) / max(1, len(shares))


def summarise(results: Sequence[VariantResult], out: Path, order: Sequence[str], samples: int = 1000) -> list[RowSummary]:
    """Per-row mean ± std over seeds and a bootstrap 95 % CI over the held-out questions.

    The bootstrap draws the same question indices for every seed of a row (the seeds answer the
    same questions), recomputes each seed's official overall and averages over seeds.
    """
    import numpy as np

    from ..eval.metrics import VSI_NUMERICAL_TYPES, VSI_TASKS

    rows = []
    for name in [n for n in order if any(r.name == n for r in results)]:
        runs = sorted((r for r in results if r.name == name), key=lambda r: r.seed)
        matrices, task_of, sub_of, modal = [], None, None, []
        for run in runs:
            path = out / "runs" / name / f"seed{run.seed}" / "eval" / "predictions.jsonl"
            records = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: str(r["id"]))
            matrices.append([float(r["score_official"]) for r in records])
            modal.append(modal_answer_share(records))
            sub_of = [r["question_type"] for r in records]
            task_of = [next(t for t in VSI_TASKS if q.startswith(t)) for q in sub_of]
        scores = np.asarray(matrices)  # (S, n)
        overall = np.array([run.official["overall"] for run in runs])
        check = _official_overall(scores, task_of, sub_of)
        if not np.allclose(check, overall, atol=1e-6):
            raise RuntimeError(f"bootstrap aggregation disagrees with the official scores for {name}: {check} vs {overall}")
        rng = np.random.default_rng(0)
        draws = rng.integers(scores.shape[1], size=(samples, scores.shape[1]))
        boot = np.array([_official_overall(scores[:, idx], np.asarray(task_of)[idx], np.asarray(sub_of)[idx]).mean() for idx in draws])
        tasks = {task: float(np.mean([run.official["tasks"][task] for run in runs])) for task in VSI_TASKS
                 if all(task in run.official["tasks"] for run in runs)}
        # Tasks with no held-out question (tiny smoke runs) are left out of the mean.
        numerical = np.array([np.mean([run.official["tasks"][t] for t in VSI_NUMERICAL_TYPES if t in run.official["tasks"]] or [np.nan])
                              for run in runs])
        rows.append(RowSummary(
            name=name, description=runs[0].description, seeds=[run.seed for run in runs],
            overall_mean=float(overall.mean()), overall_std=float(overall.std(ddof=1)) if len(runs) > 1 else 0.0,
            overall_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))), tasks=tasks,
            numerical_mean=float(numerical.mean()), numerical_std=float(numerical.std(ddof=1)) if len(runs) > 1 else 0.0,
            modal_share=float(np.mean(modal)),
        ))
    return rows


def _write_results(out: Path, config: AblationConfig, results: list[VariantResult], rows: list[RowSummary]) -> None:
    payload = {
        "config": dataclasses.asdict(config),
        "rows": [dataclasses.asdict(row) for row in rows],
        "results": [dataclasses.asdict(result) for result in results],
    }
    _write_atomic(out / "results.json", json.dumps(payload, indent=1) + "\n")
    _write_atomic(out / "results.md", results_markdown(rows, results))


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a process running beside
    this one (``jobs`` > 1) never reads half a file."""
    import os

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _run_one(config: AblationConfig, log_path: str) -> None:
    """One (variant, seed) of ``_run_side_by_side``, in a fresh process, its output to ``log_path``."""
    import contextlib

    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        run_ablation(config)


def _run_side_by_side(config: AblationConfig, out: Path) -> None:
    """Train and score the unfinished (variant, seed) runs ``config.jobs`` at a time, one process
    each (spawned: no state shared with this one), row by row in the order of the sequential loop;
    the caller's loop then finds them done and adds the baselines and the table."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    pending = [
        (name, seed) for name in config.variants for seed in config.seeds
        if name not in BASELINES and not (out / "runs" / name / f"seed{seed}" / "result.json").is_file()
    ]
    failed = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context) as pool:
        futures = {}
        for name, seed in pending:
            run_dir = out / "runs" / name / f"seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            single = dataclasses.replace(config, variants=(name,), seeds=(seed,), jobs=1, progress=False, save_best=None)
            futures[pool.submit(_run_one, single, str(run_dir / "log.txt"))] = (name, seed, run_dir / "log.txt")
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"ablation ({config.jobs} jobs)",
                           unit="run", disable=not config.progress):
            if future.exception() is not None:
                failed.append(futures[future])
    if failed:
        name, seed, log = failed[0]
        more = f" (and {len(failed) - 1} more runs)" if len(failed) > 1 else ""
        raise RuntimeError(f"{name} seed {seed} failed{more}: see {log}")


def results_markdown(rows: Sequence[RowSummary], results: Sequence[VariantResult] = ()) -> str:
    """Per-task seed means with the overall (mean ± std, bootstrap CI); then cost and losses."""
    from ..eval.metrics import VSI_TASKS

    short = {
        "object_counting": "count", "object_abs_distance": "abs dist", "object_size_estimation": "obj size",
        "room_size_estimation": "room size", "object_rel_distance": "rel dist", "object_rel_direction": "rel dir",
        "route_planning": "route", "obj_appearance_order": "appear order",
    }
    header = ["variant", *(short[task] for task in VSI_TASKS), "numerical (4)", "overall", "95 % CI", "seeds",
              "modal answer %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{row.tasks[task]:.1f}" if task in row.tasks and not math.isnan(row.tasks[task]) else "–" for task in VSI_TASKS]
        lines.append(
            f"| {row.name} | " + " | ".join(cells)
            + f" | {row.numerical_mean:.1f} ± {row.numerical_std:.1f} | **{row.overall_mean:.1f} ± {row.overall_std:.1f}**"
            + f" | {row.overall_ci[0]:.1f}–{row.overall_ci[1]:.1f} | {len(row.seeds)} | {row.modal_share:.0f} |"
        )
    if results:
        lines += ["", "| variant | seed | trained params | train loss | held-out loss | overall | train s | eval s |",
                  "|---|---|---|---|---|---|---|---|"]
        for result in results:
            loss = "–" if result.train_loss is None else f"{result.train_loss:.3f}"
            held = "–" if result.held_out_loss is None else f"{result.held_out_loss:.3f}"
            lines.append(
                f"| {result.name} | {result.seed} | {result.trainable_parameters:,} | {loss} | {held} | "
                f"{result.official['overall']:.1f} | {result.train_seconds:.0f} | {result.eval_seconds:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot_training_curves(results: Sequence[VariantResult], path: str | Path, base_log: dict | None = None) -> Path:
    """Training loss per logged step (one line per row and seed) with each run's held-out loss as
    a marker at its last step; with ``base_log`` (``vlm2_base``'s ``base_training.json``) a first
    panel shows the base's stage (a) train / held-out losses, the language stage's (if it ran) and
    stage (b)'s training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if base_log else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    if base_log:
        axis = axes[0, 0]
        stage_a = base_log.get("stage_a", {})
        if stage_a.get("step"):
            axis.plot(stage_a["step"], stage_a["train_loss"], label="(a) vision: train loss")
            held = [entry["class_ce"] + 0.5 * entry["log_depth_mse"] + 0.5 * entry["height_mse"] for entry in stage_a["held_out"]]
            axis.plot(stage_a["step"], held, "--", label="(a) vision: held-out loss")
        stage_text = base_log.get("stage_text", {})
        if stage_text.get("step"):
            axis.plot(stage_text["step"], stage_text["train_loss"], label="language stage: train loss")
            axis.plot(stage_text["step"], stage_text["held_out_loss"], "--", label="language stage: held-out loss")
        stage_b = base_log.get("stage_b", {})
        if stage_b.get("train_log"):
            steps = [e["step"] for e in stage_b["train_log"]]
            axis.plot(steps, [e["loss"] for e in stage_b["train_log"]], label="(b) projector + LM: train loss")
            axis.scatter([0, steps[-1]], [stage_b["held_out_loss_before"], stage_b["held_out_loss_after"]],
                         marker="x", color="k", label="(b) held-out loss before / after", zorder=3)
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.set_title("synthetic-pretrained base")
        axis.legend(fontsize=7)
    axis = axes[0, -1]
    colours = {}
    for result in results:
        if not result.loss_log:
            continue
        colour = colours.setdefault(result.name, f"C{len(colours)}")
        steps, losses = zip(*result.loss_log)
        axis.plot(steps, losses, color=colour, alpha=0.7, label=result.name if result.seed == min(
            r.seed for r in results if r.name == result.name) else None)
        if result.held_out_loss is not None:
            axis.scatter([steps[-1]], [result.held_out_loss], color=colour, marker="x", zorder=3)
    axis.set_xlabel("step")
    axis.set_ylabel("answer-token loss")
    axis.set_title("ablation rows (lines: training, ×: held-out after training)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ``--quick``: the reduced run that fits the shared 2-core CPU (docs/experiments.md); still three
# seeds and the held-out split, fewer rows and steps.
QUICK: dict[str, Any] = dict(
    variants=QUICK_VARIANTS, seeds=(0, 1, 2), train_scenes=100, test_scenes=12, max_steps=40, batch_size=4,
    learning_rate=5e-4,
    num_frames=32, image_size=112,
)


def build_parser() -> argparse.ArgumentParser:
    defaults = AblationConfig()
    parser = argparse.ArgumentParser(
        prog="python -m spatialvlm.experiments.vlm2_ablation",
        description="Train tiny VLM² variants on synthetic scenes (CPU) and score them on a held-out split.",
    )
    for item in dataclasses.fields(AblationConfig):
        if item.name in ("variants", "progress", "eval_limit", "save_best", "data_dir", "base", "seeds"):
            continue
        value = getattr(defaults, item.name)
        parser.add_argument(
            "--" + item.name.replace("_", "-"), type=type(value), default=None, help=f"default {value}"
        )
    parser.add_argument("--variants", help="comma list; default all (--quick: " + ",".join(QUICK_VARIANTS) + ")")
    parser.add_argument("--seeds", help="comma list of replicate seeds; default 0 (--quick: 0,1,2)")
    parser.add_argument("--data", dest="data_dir", help="existing benchmark directory (train + test splits)")
    parser.add_argument("--base", help="synthetic-pretrained base checkpoint (spatialvlm.experiments.vlm2_base)")
    parser.add_argument("--quick", action="store_true", help=f"the reduced run: {QUICK}")
    parser.add_argument("--eval-limit", type=int, help="score only the first N test questions")
    parser.add_argument("--save-best", help="copy the best full-VLM² checkpoint here")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    settings: dict[str, Any] = dict(QUICK) if args.pop("quick") else {}
    for key, value in args.items():
        if value is None or key == "no_progress":
            continue
        if key == "variants":
            value = tuple(name.strip() for name in value.split(",") if name.strip())
        elif key == "seeds":
            value = tuple(int(seed) for seed in value.split(",") if seed.strip())
        settings[key] = value
    settings["progress"] = not args["no_progress"]
    result = run_ablation(AblationConfig(**settings))
    print(results_markdown(result.rows, result.results))
    print(
        f"{result.num_train_questions} training / {result.num_test_questions} held-out questions; "
        f"best full VLM²: {result.best_full_vlm2} → {result.best_checkpoint}; {result.seconds / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
