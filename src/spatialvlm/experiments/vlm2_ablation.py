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
    "AblationResult",
    "VARIANTS",
    "BASELINES",
    "FULL_VLM2_PREFIX",
    "llava_records",
    "run_ablation",
    "results_markdown",
    "main",
]

# Every trainable part: the tiny model is trained from scratch, nothing in it is pretrained.
ALL_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model", "fusion", "dual_memory")


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


def _full(working: int, episodic: int) -> dict[str, Any]:
    return {**_FUSION, "use_dual_memory": True, "memory_L_w": working, "memory_L_e": episodic}


BASELINES: tuple[str, ...] = ("chance", "most-frequent")
VARIANTS: tuple[Variant, ...] = (
    Variant("blind", "question only: one blank frame instead of the video", dict(_NO_FUSION), blind=True),
    Variant("vision", "SigLIP → projector → LM (no fusion, no memory)", dict(_NO_FUSION)),
    Variant(
        "+coords",
        "+ fusion block with coordinate injection (point-token cross-attention, no view conditioning)",
        {**_FUSION, "use_viewpoint_alignment": False, "use_dual_memory": False},
    ),
    Variant("+viewpoint", "+ viewpoint alignment (full fusion block)", {**_FUSION, "use_dual_memory": False}),
    Variant("+working", "+ dual memory, working L_w=8, episodic L_e=1 (smallest allowed)", _full(8, 1)),
    Variant(f"{FULL_VLM2_PREFIX}-8-32", "+ episodic memory: full VLM², (L_w, L_e) = (8, 32)", _full(8, 32)),
    Variant(f"{FULL_VLM2_PREFIX}-4-8", "full VLM², (L_w, L_e) = (4, 8)", _full(4, 8)),
    Variant(f"{FULL_VLM2_PREFIX}-8-8", "full VLM², (L_w, L_e) = (8, 8)", _full(8, 8)),
    Variant(f"{FULL_VLM2_PREFIX}-16-32", "full VLM², (L_w, L_e) = (16, 32)", _full(16, 32)),
)


@dataclass
class AblationConfig:
    """Every knob of the ablation, with its default and meaning.

    Data (``spatialvlm.data.synthetic``):
        out_dir: where data, base model, per-variant evaluations and results go.
        seed: seed of the data, the base weights and training.
        train_scenes / test_scenes: scenes (videos) in the training / held-out split.
        num_frames: frames per video, all fed to the model (training and test).
        image_size: rendered frame side = SigLIP input side, pixels (a multiple of the patch, 14).
        questions_per_type: at most this many questions of each type per scene.

    Tiny model (``spatialvlm.models.tiny_vlm2_config``; randomly initialised):
        vision_hidden_size / vision_layers: SigLIP width (= memory width) and depth.
        text_hidden_size / text_layers: Qwen2 width and depth.

    Training (``spatialvlm.train``, transformers' Trainer):
        epochs, batch_size, learning_rate, weight_decay, warmup_ratio: the usual; cosine schedule.
        max_steps: > 0 stops every variant after this many steps (smoke runs).

    Run:
        variants: names from ``BASELINES`` and ``VARIANTS`` to run (default: all, in that order).
        eval_limit: score only the first N test questions (smoke runs).
        num_threads: torch threads; 1 is fastest for these tiny tensors on a loaded machine.
        save_best: also copy the best full-VLM² variant's checkpoint here.
        progress: progress bars.
    """

    out_dir: str = "ablation_out"
    seed: int = 0
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
    max_steps: int = -1
    variants: tuple[str, ...] = BASELINES + tuple(variant.name for variant in VARIANTS)
    eval_limit: int | None = None
    num_threads: int = 1
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


@dataclass
class VariantResult:
    """Scores of one row (percent) and what it cost.

    Attributes:
        name, description: the variant.
        official / lenient: ``BenchmarkScores.to_dict()`` of the held-out split.
        train_seconds / eval_seconds: wall time of training and of answering.
        train_loss: mean training loss of the run (None for baselines).
        trainable_parameters: parameters trained (0 for baselines).
    """

    name: str
    description: str
    official: dict[str, Any]
    lenient: dict[str, Any]
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_loss: float | None = None
    trainable_parameters: int = 0


@dataclass
class AblationResult:
    """What ``run_ablation`` produced.

    Attributes:
        results: one ``VariantResult`` per row, in run order.
        best_full_vlm2: name of the best full-VLM² variant (official overall), None if none ran.
        best_checkpoint: its saved checkpoint directory, None if none ran.
        num_train_questions / num_test_questions: sizes of the splits (VSI-Bench questions).
        seconds: wall time of the whole run.
    """

    results: list[VariantResult]
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

    from ..models import VLM2ForConditionalGeneration, build_tiny_processor, tiny_vlm2_config

    torch.manual_seed(config.seed)
    vision_heads = max(1, config.vision_hidden_size // 16)
    model_config = tiny_vlm2_config(
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
    VLM2ForConditionalGeneration(model_config).save_pretrained(directory)
    build_tiny_processor(model_config).save_pretrained(directory)


class _CachedItems:
    """Memoises a map-style dataset whose items never change (no augmentation here), so the videos
    and geometry files are decoded once per run instead of once per epoch."""

    def __init__(self, dataset: Any, cache: dict[int, Any]) -> None:
        self.dataset = dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if index not in self.cache:
            self.cache[index] = self.dataset[index]
        return self.cache[index]


class _BlankFrames:
    """Blind variant's training items: the video replaced by one blank (black) frame."""

    def __init__(self, dataset: Any, blank: Any) -> None:
        self.dataset = dataset
        self.blank = blank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return {**self.dataset[index], "pixel_values_videos": self.blank}


def _train_variant(
    config: AblationConfig, variant: Variant, base_dir: Path, data_path: Path, run_dir: Path, cache: dict
):
    """Train ``variant`` from the base; returns (model in eval mode, processor, mean loss, trained params)."""
    import numpy as np
    import torch
    from transformers import TrainingArguments

    from ..train import DataArguments, ModelArguments, prepare_training

    torch.manual_seed(config.seed)
    parts = [part for part in ALL_PARTS if part != "fusion" or variant.flags.get("use_spatial_fusion")]
    parts = [part for part in parts if part != "dual_memory" or variant.flags.get("use_dual_memory")]
    model_args = ModelArguments(model_name_or_path=str(base_dir), mm_tunable_parts=",".join(parts), **variant.flags)
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
        seed=config.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=not config.progress,
    )
    run = prepare_training(model_args, data_args, training_args, task="vlm2")
    trainer = run.trainer
    processor = trainer.processing_class
    # Items differ only in whether they carry geometry (and blind ones in their frames): one cache
    # per kind serves every variant of that kind.
    key = ("blind",) if variant.blind else ("geometry" if run.trainer.model.config.needs_geometry else "plain",)
    dataset = _CachedItems(trainer.train_dataset, cache.setdefault(key, {}))
    if variant.blind:
        blank = np.zeros((1, config.image_size, config.image_size, 3), dtype=np.uint8)
        dataset = _BlankFrames(dataset, processor.preprocess_frames(blank))
    trainer.train_dataset = dataset
    output = trainer.train()
    return trainer.model.eval(), processor, float(output.training_loss), run.summary.trainable


class _ScenePredictor:
    """``(item, prompt) -> answer`` with a trained model, through ``ask_video`` (as ``spatialvlm ask``).

    The frames and geometry of a scene are read once and reused by its questions (the model still
    encodes the video for every question, as the command does).
    """

    def __init__(self, model: Any, processor: Any, config: AblationConfig, blind: bool) -> None:
        self.model, self.processor, self.config, self.blind = model, processor, config, blind
        self.scenes: dict[str, tuple[Any, Any]] = {}

    def _scene(self, item: Any) -> tuple[Any, Any]:
        import numpy as np

        from ..data.video import read_video
        from ..models import load_video_geometry

        if item.scene_name not in self.scenes:
            if self.blind:
                side = self.config.image_size
                self.scenes[item.scene_name] = (np.zeros((1, side, side, 3), dtype=np.uint8), None)
            else:
                clip = read_video(item.video_path, self.config.num_frames, allow_fewer=True)
                geometry = None
                if self.model.config.needs_geometry:
                    folder = item.video_path.parent / f"{item.scene_name}_geometry"
                    geometry = load_video_geometry(folder, clip.indices)
                self.scenes[item.scene_name] = (clip.frames, geometry)
        return self.scenes[item.scene_name]

    def __call__(self, item: Any, prompt: str) -> str:
        from ..models import ask_video

        frames, geometry = self._scene(item)
        return ask_video(self.model, self.processor, frames, prompt, geometry=geometry, num_frames=None).text


def _save_checkpoint(model: Any, processor: Any, directory: Path, metadata: dict[str, Any]) -> None:
    """A self-contained checkpoint ``load_vlm2`` reads: weights, config, tokenizer, processor, and
    ``synthetic_training.json`` (how it was trained and scored: the demo renders matching scenes)."""
    import shutil

    if directory.exists():
        shutil.rmtree(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / "synthetic_training.json").write_text(json.dumps(metadata, indent=1) + "\n")


def run_ablation(config: AblationConfig) -> AblationResult:
    """Generate the data, run every variant of ``config.variants`` in order, write the results."""
    import shutil

    import torch
    import transformers
    from tqdm.auto import tqdm

    from ..data.readers import read_benchmark
    from ..eval import ChanceBaseline, MostFrequentBaseline, evaluate
    from ..eval.metrics import question_types

    torch.set_num_threads(config.num_threads)
    # Every variant adds fresh modules to the base; the loader's per-weight report of them would
    # bury the progress bars (``VLM2ForConditionalGeneration`` still logs a one-line summary).
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    out = Path(config.out_dir)
    data_dir = out / "data"
    _generate_data(config, data_dir)
    train_items = read_benchmark(data_dir, "train", question_types("vsibench"))
    test_items = read_benchmark(data_dir, "test", question_types("vsibench"))
    if config.eval_limit is not None:
        test_items = test_items[: config.eval_limit]
    for geometry, name in ((True, "train_llava_geometry.json"), (False, "train_llava.json")):
        (data_dir / name).write_text(json.dumps(llava_records(train_items, geometry=geometry)))
    base_dir = out / "base"
    _save_base(config, base_dir)

    by_name = {variant.name: variant for variant in VARIANTS}
    results: list[VariantResult] = []
    cache: dict = {}
    best: tuple[float, str] | None = None
    best_dir = out / "best_vlm2"
    bar = tqdm(config.variants, desc="ablation", unit="variant", disable=not config.progress)
    for name in bar:
        bar.set_postfix_str(name)
        run_dir = out / "runs" / name
        if name in BASELINES:
            variant = Variant(name, "chance: random option / random training answer" if name == "chance"
                              else "most frequent training answer (numerical: training median)")
            predictor = ChanceBaseline(train_items, seed=config.seed) if name == "chance" else MostFrequentBaseline(train_items)
            model = processor = None
            train_seconds, loss, trained = 0.0, None, 0
        else:
            variant = by_name[name]
            data_path = data_dir / ("train_llava_geometry.json" if variant.flags.get("use_spatial_fusion") else "train_llava.json")
            tick = time.perf_counter()
            model, processor, loss, trained = _train_variant(config, variant, base_dir, data_path, run_dir, cache)
            train_seconds = time.perf_counter() - tick
            predictor = _ScenePredictor(model, processor, config, variant.blind)
        tick = time.perf_counter()
        with torch.no_grad():
            scores = evaluate(test_items, predictor, run_dir / "eval", "vsibench", resume=False,
                              show_progress=config.progress, title=f"synthetic VSI-Bench — {name}")
        results.append(VariantResult(
            name=name, description=variant.description, official=scores.official.to_dict(),
            lenient=scores.lenient.to_dict(), train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - tick, train_loss=loss, trainable_parameters=trained,
        ))
        if model is not None and variant.is_full_vlm2 and (best is None or scores.official.overall > best[0]):
            best = (scores.official.overall, name)
            _save_checkpoint(model, processor, best_dir, {
                "variant": name, "description": variant.description, "flags": variant.flags,
                "ablation_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "variants"},
                "synth": dataclasses.asdict(_synth_config(config, "test", config.test_scenes)),
                "held_out_official": scores.official.to_dict(), "held_out_lenient": scores.lenient.to_dict(),
                "baselines": {r.name: r.official["overall"] for r in results if r.name in BASELINES},
            })
        _write_results(out, config, results, best[1] if best else None)

    best_checkpoint = None
    if best is not None:
        best_checkpoint = best_dir
        if config.save_best:
            best_checkpoint = Path(config.save_best)
            if best_checkpoint.exists():
                shutil.rmtree(best_checkpoint)
            shutil.copytree(best_dir, best_checkpoint)
    return AblationResult(
        results=results, best_full_vlm2=best[1] if best else None, best_checkpoint=best_checkpoint,
        num_train_questions=len(train_items), num_test_questions=len(test_items),
        seconds=time.perf_counter() - start,
    )


def _write_results(out: Path, config: AblationConfig, results: list[VariantResult], best: str | None) -> None:
    payload = {
        "config": dataclasses.asdict(config),
        "best_full_vlm2": best,
        "results": [dataclasses.asdict(result) for result in results],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "results.md").write_text(results_markdown(results))


def results_markdown(results: Sequence[VariantResult]) -> str:
    """Two tables: official per-task scores with official and lenient overall; then cost and loss."""
    from ..eval.metrics import VSI_TASKS

    short = {
        "object_counting": "count", "object_abs_distance": "abs dist", "object_size_estimation": "obj size",
        "room_size_estimation": "room size", "object_rel_distance": "rel dist", "object_rel_direction": "rel dir",
        "route_planning": "route", "obj_appearance_order": "appear order",
    }
    header = ["variant", *(short[task] for task in VSI_TASKS), "overall", "overall (lenient)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        tasks = result.official["tasks"]
        cells = [f"{tasks[task]:.1f}" if task in tasks and not math.isnan(tasks[task]) else "–" for task in VSI_TASKS]
        lines.append(
            f"| {result.name} | " + " | ".join(cells)
            + f" | **{result.official['overall']:.1f}** | {result.lenient['overall']:.1f} |"
        )
    lines += ["", "| variant | what | trained params | train loss | train s | eval s |", "|---|---|---|---|---|---|"]
    for result in results:
        loss = "–" if result.train_loss is None else f"{result.train_loss:.3f}"
        lines.append(
            f"| {result.name} | {result.description} | {result.trainable_parameters:,} | {loss} | "
            f"{result.train_seconds:.0f} | {result.eval_seconds:.0f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    defaults = AblationConfig()
    parser = argparse.ArgumentParser(
        prog="python -m spatialvlm.experiments.vlm2_ablation",
        description="Train tiny VLM² variants on synthetic scenes (CPU) and score them on a held-out split.",
    )
    for item in dataclasses.fields(AblationConfig):
        if item.name in ("variants", "progress", "eval_limit", "save_best"):
            continue
        value = getattr(defaults, item.name)
        parser.add_argument(
            "--" + item.name.replace("_", "-"), type=type(value), default=value, help=f"default {value}"
        )
    parser.add_argument("--variants", default=",".join(defaults.variants), help="comma list; default all")
    parser.add_argument("--eval-limit", type=int, help="score only the first N test questions")
    parser.add_argument("--save-best", help="copy the best full-VLM² checkpoint here")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args["variants"] = tuple(name.strip() for name in args["variants"].split(",") if name.strip())
    args["progress"] = not args.pop("no_progress")
    result = run_ablation(AblationConfig(**args))
    print(results_markdown(result.results))
    print(
        f"{result.num_train_questions} training / {result.num_test_questions} held-out questions; "
        f"best full VLM²: {result.best_full_vlm2} → {result.best_checkpoint}; {result.seconds / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
