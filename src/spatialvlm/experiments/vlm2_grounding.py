"""Grounding check: does the language model learn to read what the question points at?

    python -m spatialvlm.experiments.vlm2_grounding --data BENCH --base checkpoints/vlm2-base-synthetic --out grounding_out

The simplest question a video model must answer from the video is whether an object is in it. Two
balanced yes/no tasks, the same frames, the same model (projector + language model trained, the
base's tower frozen, as in stage (b)):

- ``fixed:<category>``: always the same category ("Is there a chair in this room?"), yes when it
  is visible in the sampled frames. One linear read-out of the video answers it.
- ``any``: per scene one visible category (yes) and one absent one (no). The video alone says
  nothing (every scene has one of each); the model must read the *category named in the
  question* from the video — the question-conditioned read-out every VSI-Bench question needs.

Scenes whose fixed category is in the room but not visible in the sampled frames are left out (the
truth would be ambiguous); "visible" is at least ``min_pixels`` pixels over the sampled frames.
Held-out accuracy (the first answer token: "yes" vs "no") is logged every ``eval_every`` steps to
``OUT/grounding.json`` and drawn in ``OUT/grounding.png``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GroundingConfig", "presence_records", "yes_no_accuracy", "run_grounding", "main"]

QUESTION = "Is there a {category} in this room? Answer yes or no."


@dataclass
class GroundingConfig:
    """Every knob, with its default and meaning.

    data_dir / base / out_dir: benchmark (``train`` and ``test`` splits), checkpoint, output folder.
    modes: ``"any"`` and / or ``"fixed:<category>"`` (see the module docstring).
    num_frames: frames sampled per video (uniformly); render_frames: frames the videos have.
    train_scenes / test_scenes: first N scenes of each split; min_pixels: visibility threshold.
    steps / batch_size / learning_rate / eval_every: AdamW on projector + language model.
    fresh_language_model: re-initialise projector and language model (std ``init_range``, None:
        the config's) instead of starting from the base's.
    seed / num_threads / progress: question sampling and batch order; torch threads; bars.
    """

    data_dir: str = "bench"
    base: str = "checkpoints/vlm2-base-synthetic"
    out_dir: str = "grounding_out"
    modes: tuple[str, ...] = ("fixed:chair", "any")
    num_frames: int = 4
    render_frames: int = 32
    train_scenes: int = 1000
    test_scenes: int = 100
    min_pixels: int = 100
    steps: int = 800
    batch_size: int = 8
    learning_rate: float = 1e-3
    eval_every: int = 50
    fresh_language_model: bool = False
    init_range: float | None = None
    seed: int = 0
    num_threads: int = 1
    progress: bool = True


def presence_records(data_dir: str | Path, split: str, scenes: int, mode: str, num_frames: int, render_frames: int,
                     min_pixels: int, seed: int = 0) -> list[dict[str, Any]]:
    """Balanced presence questions as LLaVA records (video only), from the scenes' ``visible_pixels``.

    Returns:
        records with ``id``, ``video``, ``conversations`` (human: "<video>\\n" + question, gpt: "yes"/"no").
    """
    from ..data.synthetic import CATEGORIES
    from ..data.video import uniform_frame_indices

    categories = [c.name for c in CATEGORIES]
    if mode != "any" and not (mode.startswith("fixed:") and mode[6:] in categories):
        raise ValueError(f"mode must be 'any' or 'fixed:<category>' with a category from {categories}; got {mode!r}")
    frames = uniform_frame_indices(render_frames, num_frames)
    rng = random.Random(f"{seed}-{split}-{mode}")
    records = []
    for index in range(scenes):
        name = f"{split}_{index:05d}"
        description = json.loads((Path(data_dir) / "synthetic" / f"{name}.json").read_text())
        pixels = np.asarray(description["visible_pixels"])[frames].sum(0)  # (objects,)
        in_room = {obj["category"] for obj in description["objects"]}
        visible = sorted({obj["category"] for obj, count in zip(description["objects"], pixels) if count >= min_pixels})
        if mode == "any":
            absent = [c for c in categories if c not in in_room]
            if not visible or not absent:
                continue
            questions = [(rng.choice(visible), "yes"), (rng.choice(absent), "no")]
        else:
            category = mode[6:]
            if category in in_room and category not in visible:
                continue
            questions = [(category, "yes" if category in visible else "no")]
        for category, answer in questions:
            records.append({
                "id": f"{name}_{category}",
                "video": f"synthetic/{name}.mp4",
                "conversations": [{"from": "human", "value": "<video>\n" + QUESTION.format(category=category)},
                                  {"from": "gpt", "value": answer}],
            })
    return records


def yes_no_accuracy(model: Any, batches: Sequence[dict[str, Any]], yes_id: int, no_id: int) -> float:
    """Share of items whose first answer token is predicted right, comparing only the "yes" and
    "no" logits (teacher-forced prompt; ``batches`` are collated dataset items with labels)."""
    import torch

    from ..train.conversation import IGNORE_INDEX

    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in batches:
            labels = batch["labels"]
            first = (labels != IGNORE_INDEX).int().argmax(1)  # first answer position of each row
            rows = torch.arange(labels.shape[0])
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[rows, first - 1]
            predicted = torch.where(logits[:, yes_id] > logits[:, no_id], yes_id, no_id)
            correct += int((predicted == labels[rows, first]).sum())
            total += labels.shape[0]
    model.train(was_training)
    return correct / max(1, total)


def _model(config: GroundingConfig):
    import torch

    from ..models import VLM2ForConditionalGeneration, load_vlm2

    model, processor = load_vlm2(config.base)
    if config.fresh_language_model:
        if config.init_range is not None:
            model.config.text_config.initializer_range = config.init_range
            model.config.initializer_range = config.init_range
        torch.manual_seed(config.seed)
        fresh = VLM2ForConditionalGeneration(model.config)
        for name in ("language_model", "multi_modal_projector"):
            getattr(model.model, name).load_state_dict(getattr(fresh.model, name).state_dict())
        model.model.image_newline.data.copy_(fresh.model.image_newline.data)
        model.lm_head.load_state_dict(fresh.lm_head.state_dict())
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not name.startswith("model.vision_tower")
    return model, processor


def _run_mode(config: GroundingConfig, mode: str, cache: dict) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from ..train import DataArguments
    from ..train.tasks.vlm2 import VideoConversationCollator, VideoConversationDataset

    model, processor = _model(config)
    data = Path(config.data_dir)
    arguments = DataArguments(num_frames=config.num_frames)
    datasets = {
        split: VideoConversationDataset(
            presence_records(data, split, scenes, mode, config.num_frames, config.render_frames, config.min_pixels, config.seed),
            processor, arguments, model.config, root=data, video_cache=cache)
        for split, scenes in (("train", config.train_scenes), ("test", config.test_scenes))
    }
    collate = VideoConversationCollator(processor.tokenizer.pad_token_id)
    held = [collate([datasets["test"][i] for i in range(b, min(len(datasets["test"]), b + 16))])
            for b in range(0, len(datasets["test"]), 16)]
    yes_id, no_id = (processor.tokenizer.encode(word)[0] for word in ("yes", "no"))
    if yes_id == no_id:
        raise ValueError("the tokenizer's first tokens of 'yes' and 'no' coincide; the accuracy would be meaningless")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    curve = {"step": [0], "accuracy": [yes_no_accuracy(model, held, yes_id, no_id)], "train_loss": [None]}
    running: list[float] = []
    model.train()
    bar = tqdm(range(config.steps), desc=f"grounding {mode}", disable=not config.progress)
    tick = time.perf_counter()
    for step in bar:
        chosen = torch.randint(len(datasets["train"]), (config.batch_size,), generator=generator).tolist()
        loss = model(**collate([datasets["train"][i] for i in chosen])).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        running.append(float(loss.detach()))
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            curve["step"].append(step + 1)
            curve["accuracy"].append(yes_no_accuracy(model, held, yes_id, no_id))
            curve["train_loss"].append(float(np.mean(running)))
            running = []
            bar.set_postfix(accuracy=f"{curve['accuracy'][-1]:.3f}")
    answers = [r["conversations"][1]["value"] for r in datasets["test"].records]
    return {
        "mode": mode, "train_questions": len(datasets["train"]), "test_questions": len(datasets["test"]),
        "test_yes_share": answers.count("yes") / max(1, len(answers)), "seconds": time.perf_counter() - tick, **curve,
    }


def _plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.8))
    for result in results:
        axis.plot(result["step"], [100 * a for a in result["accuracy"]], marker=".", label=result["mode"])
    axis.axhline(50, color="grey", lw=0.8, ls="--")
    axis.set(xlabel="training step", ylabel="held-out accuracy (%)", ylim=(0, 100),
             title="presence: fixed category vs the category the question names")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_grounding(config: GroundingConfig) -> list[dict[str, Any]]:
    """Train and score every mode of ``config``; writes ``grounding.json`` and ``grounding.png``."""
    import torch
    import transformers

    torch.set_num_threads(config.num_threads)
    transformers.logging.set_verbosity_error()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}  # decoded frames, shared by the modes
    results = [_run_mode(config, mode, cache) for mode in config.modes]
    (out / "grounding.json").write_text(json.dumps({"config": asdict(config), "results": results}, indent=1) + "\n")
    _plot(results, out / "grounding.png")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_grounding", description=__doc__.split("\n\n")[0])
    defaults = GroundingConfig()
    parser.add_argument("--data", default=defaults.data_dir)
    parser.add_argument("--base", default=defaults.base)
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--modes", default=",".join(defaults.modes), help="'any' and/or 'fixed:<category>', comma-separated")
    for flag, field in (("--num-frames", "num_frames"), ("--render-frames", "render_frames"), ("--train-scenes", "train_scenes"),
                        ("--test-scenes", "test_scenes"), ("--min-pixels", "min_pixels"), ("--steps", "steps"),
                        ("--batch-size", "batch_size"), ("--eval-every", "eval_every"), ("--seed", "seed"),
                        ("--num-threads", "num_threads")):
        parser.add_argument(flag, type=int, default=getattr(defaults, field))
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--fresh-language-model", action="store_true", help="re-initialise projector and language model")
    parser.add_argument("--init-range", type=float, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = GroundingConfig(
        data_dir=args.data, base=args.base, out_dir=args.out, modes=tuple(filter(None, args.modes.split(","))),
        num_frames=args.num_frames, render_frames=args.render_frames, train_scenes=args.train_scenes,
        test_scenes=args.test_scenes, min_pixels=args.min_pixels, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, eval_every=args.eval_every, fresh_language_model=args.fresh_language_model,
        init_range=args.init_range, seed=args.seed, num_threads=args.num_threads, progress=not args.no_progress,
    )
    try:
        results = run_grounding(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    for result in results:
        print(f"{result['mode']:>14}: held-out accuracy {100 * result['accuracy'][-1]:.1f} % after {result['step'][-1]} steps "
              f"({result['test_questions']} questions, {100 * result['test_yes_share']:.0f} % yes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
