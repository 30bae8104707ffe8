"""Lookup formation: which step of a question-conditioned read-out the tiny language model fails to learn.

    python -m spatialvlm.experiments.vlm2_lookup --data BENCH --base checkpoints/vlm2-base-synthetic --out lookup_out

The grounding check and the oracle (``vlm2_grounding``, ``vlm2_oracle``) showed that the tiny language
model does not learn to read *the object a question names* from the video, even from perfect video
tokens. This experiment takes that read-out apart on the simplest question there is — "Is there a
<category> in this room? Answer yes or no." over perfect tokens — and times how fast each part forms.

Answering takes two hops when the category word is not the last prompt token: (1) *lookup*: a
position holding the category word attends to the video tokens that show it; (2) *copy*: the
answer position, a dozen tokens later, fetches that result. Rows:

- ``two-hop``: the question above; the answer follows "… Answer yes or no." (both hops).
- ``one-hop``: the prompt ends at the category word ("Is there a <category>"), so the answer
  position is the category word itself: only the lookup is left.
- ``curriculum``: ``two-hop`` trained on 1-frame clips first, then 4 frames, then all (fewer
  distractor tokens while the circuit forms); always evaluated on all frames.
- ``echo``: ``two-hop`` with half of every batch an auxiliary text task on the same prompt that
  answers with the category word itself ("… Name the object."): the copy hop's attention is
  trained directly.
- ``one-hop-first``: the first 30 % of the steps on ``one-hop`` prompts (the lookup forms where
  it is fast), then ``two-hop`` ones (only the copy is left to learn).
- ``question-first``: the question *before* the video, the answer read at the video's closing
  token: every video token can attend to the category word (the lookup happens where the evidence
  is), and the answer position gathers from the video tokens right before it.
- ``question-both``: the question before the video and again after it (the two-hop layout plus
  the question-first one).
- ``question-first-curriculum``: ``question-first`` with ``curriculum``'s clip stages.
- ``token-curriculum``: issue 16's read-out curriculum carried over: each clip first reaches the
  model as ONE region token (the one showing most of the asked category, or a random one when it is
  absent), then 4, 16 and 64 of its tokens (that one plus random others, in clip order), then the
  whole clip (``_token_subset``).

The video tokens are the oracle's ground truth per pooled 2×2 patch block (``vlm2_oracle``'s
``region_features``), made *tied* to the language model's vocabulary: a block's token is the share-
weighted sum of the word embeddings of its classes (the 11 category names are single added tokens;
floor, wall and ceiling get learnt vectors). That is the token a projector aligned to the word
embeddings would give (LLaVA's stage 1); ``--tokens mlp`` uses the oracle's untied MLP instead,
``--tokens tied+mlp`` adds it (with the block's xyz) to the tied token. The sequence is the video tokens then the prompt, no chat template.

"Yes": the category covers at least ``min_pixels`` pixels of the clip's frames; "no": none at all;
one of each per scene. Held-out accuracy compares the "yes" and "no" logits at the answer position
every ``eval_every`` steps. Each (row, seed) is one file in ``OUT/runs/`` and is not rerun;
``OUT/lookup.json`` / ``OUT/lookup.png`` hold the curves (mean ± sample std over seeds) and, per
seed, the first evaluated step at ≥ 70 % (None: never).
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

__all__ = ["LookupConfig", "ROWS", "LookupRow", "presence_items", "TiedTokens", "LookupModel", "run_lookup", "main"]

PREFIX = "Is there a"
SUFFIX = " in this room? Answer yes or no."
ECHO_SUFFIX = " in this room? Name the object."


@dataclass(frozen=True)
class LookupRow:
    """One training recipe: ``one_hop`` ends the prompt at the category word; ``curriculum``:
    (fraction of steps, frames) stages, the last one all frames; ``echo``: share of each batch
    given to the echo task; ``one_hop_first``: fraction of the steps trained on one-hop prompts
    before the two-hop ones (evaluated two-hop throughout); ``question_before`` / ``question_after``:
    where the two-hop question sits relative to the video tokens (at least one; with the question
    only before, the answer is read at the video's closing newline token); ``token_stages``:
    (fraction of steps, n) stages in which each clip reaches the model as n of its region tokens
    (``_token_subset``), then the whole clip."""

    one_hop: bool = False
    curriculum: tuple[tuple[float, int], ...] = ()
    echo: float = 0.0
    one_hop_first: float = 0.0
    question_before: bool = False
    question_after: bool = True
    token_stages: tuple[tuple[float, int], ...] = ()


ROWS: dict[str, LookupRow] = {
    "two-hop": LookupRow(),
    "one-hop": LookupRow(one_hop=True),
    "curriculum": LookupRow(curriculum=((0.3, 1), (0.6, 4))),
    "echo": LookupRow(echo=0.5),
    "one-hop-first": LookupRow(one_hop_first=0.3),
    "question-first": LookupRow(question_before=True, question_after=False),
    "question-both": LookupRow(question_before=True),
    "question-first-curriculum": LookupRow(curriculum=((0.3, 1), (0.6, 4)), question_before=True, question_after=False),
    "token-curriculum": LookupRow(token_stages=((0.2, 1), (0.35, 4), (0.5, 16), (0.65, 64))),
}


@dataclass
class LookupConfig:
    """Every knob, with its default and meaning.

    data_dir / base / out_dir: benchmark (``train`` / ``test``), checkpoint giving the language
        model's size and tokenizer (not its weights), output folder.
    seed / render_frames / image_size: how the benchmark was rendered (features are re-rendered
        and checked against it, as ``vlm2_oracle``); num_frames: frames per clip.
    train_scenes / test_scenes: first N scenes of each split; min_pixels: "yes" threshold.
    rows / seeds: recipes (names of ``ROWS``) and replicates (initialisation, batch order).
    tokens: ``"tied"`` (share-weighted word embeddings), ``"tied+mlp"`` (plus an MLP of class and
        xyz) or ``"mlp"`` (the oracle's untied tokens); see ``TiedTokens``.
    steps / batch_size / learning_rate / eval_every: AdamW, cosine schedule with 50 warm-up steps,
        gradient clip 1; fresh weights at std 1/√width (docs/decisions.md).
    num_layers: the language model's depth; None: the base's (2). The width stays the base's.
    """

    data_dir: str = "bench"
    base: str = "checkpoints/vlm2-base-synthetic"
    out_dir: str = "lookup_out"
    seed: int = 0
    render_frames: int = 32
    image_size: int = 112
    num_frames: int = 16
    train_scenes: int = 800
    test_scenes: int = 100
    min_pixels: int = 100
    rows: tuple[str, ...] = tuple(ROWS)
    seeds: tuple[int, ...] = (0, 1, 2)
    tokens: str = "tied"
    steps: int = 3000
    batch_size: int = 8
    learning_rate: float = 1e-3
    eval_every: int = 200
    num_layers: int | None = None
    num_threads: int = 1
    progress: bool = True


def presence_items(features: dict[str, np.ndarray], frames: int, region: int, min_pixels: int,
                   seed: int) -> list[tuple[str, int, int, bool]]:
    """Balanced presence questions over clips of ``frames`` frames.

    Args:
        features: scene name → (T, P, 17) region features (``vlm2_oracle.region_features``).
        frames: clip length; the clip is every (T // frames)-th frame from the first.
        region: block side in pixels (shares × region² = pixels).
        min_pixels / seed: "yes" threshold; which visible and absent category each scene asks.

    Returns:
        (scene, clip step, category index 0..10, answer is yes) per question; scenes without both
        a visible and an absent category are skipped.
    """
    from .vlm2_base import NUM_ROOM_CLASSES

    rng = np.random.default_rng(seed)
    items = []
    for name in sorted(features):
        stride = max(1, len(features[name]) // frames)
        pixels = features[name][::stride][: len(features[name]) // stride, :, NUM_ROOM_CLASSES:14].astype(np.float64).sum((0, 1)) * region**2
        visible, absent = np.flatnonzero(pixels >= min_pixels), np.flatnonzero(pixels == 0)
        if len(visible) and len(absent):
            items += [(name, stride, int(rng.choice(visible)), True), (name, stride, int(rng.choice(absent)), False)]
    return items


class TiedTokens(nn.Module):
    """Region features → video tokens, then one learnt newline token.

    ``forward(features, category_table)``: features (B, T, P, 17), category_table (11, D) (the word
    embeddings of the category names) → (B, T·P + 1, D). ``mode``: ``"tied"``: shares @ [room
    vectors; category_table]; ``"tied+mlp"``: that plus an MLP of all 17 features (class + xyz);
    ``"mlp"``: the MLP alone (the oracle's untied tokens).
    """

    MODES = ("tied", "tied+mlp", "mlp")

    def __init__(self, width: int, init_range: float, mode: str = "tied") -> None:
        super().__init__()
        from .vlm2_base import NUM_ROOM_CLASSES

        if mode not in self.MODES:
            raise ValueError(f"tokens must be one of {self.MODES}; got {mode!r}")
        self.mode = mode
        self.room = nn.Parameter(torch.randn(NUM_ROOM_CLASSES, width) * init_range)
        self.mlp = nn.Sequential(nn.Linear(17, width), nn.GELU(), nn.Linear(width, width)) if mode != "tied" else None
        self.newline = nn.Parameter(torch.randn(width) * init_range)

    def forward(self, features: torch.Tensor, category_table: torch.Tensor) -> torch.Tensor:
        tokens = 0
        if self.mode != "mlp":
            tokens = features[..., :14] @ torch.cat([self.room, category_table])
        if self.mlp is not None:
            tokens = tokens + self.mlp(features)
        tokens = tokens.flatten(1, 2)
        return torch.cat([tokens, self.newline.expand(features.shape[0], 1, -1)], 1)


class LookupModel(nn.Module):
    """A fresh Qwen2 language model of the base's size with 11 added single-token category names.

    ``forward(features, prompts)``: features (B, T, P, 17), prompts: B lists of token ids →
    (B, vocab) logits at each prompt's last token, the sequence being video tokens then prompt.
    """

    def __init__(self, text_config: Any, tokens: str, seed: int, num_layers: int | None = None) -> None:
        super().__init__()
        from transformers import Qwen2Model

        from ..data.synthetic import CATEGORIES

        layers = {} if num_layers is None else {"num_hidden_layers": num_layers, "layer_types": None,
                                                "max_window_layers": num_layers}
        config = text_config.__class__(**{**text_config.to_dict(), "vocab_size": text_config.vocab_size + len(CATEGORIES),
                                          "initializer_range": text_config.hidden_size ** -0.5, **layers})
        torch.manual_seed(seed)
        self.language_model = Qwen2Model(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        nn.init.normal_(self.head.weight, std=config.initializer_range)
        self.tokens = TiedTokens(config.hidden_size, config.initializer_range, tokens)
        self.first_category_id = text_config.vocab_size

    def forward(self, features: torch.Tensor, prompts: Sequence[list[int]],
                preambles: Sequence[list[int]] | None = None) -> torch.Tensor:
        """``preambles``: B token lists of one common length put before the video (None: none)."""
        embed = self.language_model.embed_tokens
        table = embed.weight[self.first_category_id:]
        video = self.tokens(features, table)
        if preambles is not None:
            if len({len(p) for p in preambles}) != 1:
                raise ValueError("preambles must share one length (no padding before the video)")
            video = torch.cat([embed(torch.tensor(list(preambles))), video], 1)
        longest = max(len(p) for p in prompts)
        ids = torch.tensor([p + [0] * (longest - len(p)) for p in prompts], dtype=torch.long)  # right padding: causal, never attended
        hidden = self.language_model(inputs_embeds=torch.cat([video, embed(ids)], 1)).last_hidden_state
        last = torch.tensor([len(p) for p in prompts]) + video.shape[1] - 1
        return self.head(hidden[torch.arange(len(prompts)), last])


def _prompts(tokenizer: Any, first_category_id: int) -> dict[str, Any]:
    ids = {"prefix": tokenizer.encode(PREFIX), "suffix": tokenizer.encode(SUFFIX), "echo": tokenizer.encode(ECHO_SUFFIX)}
    yes, no = tokenizer.encode("yes")[0], tokenizer.encode("no")[0]
    if yes == no:
        raise ValueError("the tokenizer's first tokens of 'yes' and 'no' coincide; the accuracy would be meaningless")
    return {**ids, "yes": yes, "no": no, "first_category_id": first_category_id}


def _token_subset(clip: np.ndarray, category: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(T, P, 17) clip → (1, count, 17): the region token holding the largest share of ``category``
    (a random one when no token shows it) and ``count`` − 1 random others, in clip order."""
    from .vlm2_base import NUM_ROOM_CLASSES

    flat = clip.reshape(-1, clip.shape[-1])
    if count >= len(flat):
        return flat[None]
    share = flat[:, NUM_ROOM_CLASSES + category]
    evidence = int(share.argmax()) if share.max() > 0 else int(rng.integers(len(flat)))
    others = rng.choice(np.delete(np.arange(len(flat)), evidence), size=count - 1, replace=False)
    return flat[np.sort(np.append(others, evidence))][None]


def _batch(items, features, ids, one_hop: bool, echo: bool, row: LookupRow | None = None,
           tokens: int | None = None, rng: np.random.Generator | None = None):
    """(features (B, T', P, 17), prompts, target ids, preambles) of presence (or echo) questions;
    ``row`` places the two-hop question before and/or after the video (default: after only;
    preambles None); ``tokens``: each clip cut to that many region tokens (``_token_subset``, ``rng``)."""
    clips = [features[scene][::stride][: len(features[scene]) // stride] for scene, stride, _, _ in items]
    if tokens is not None:
        clips = [_token_subset(clip, item[2], tokens, rng) for clip, item in zip(clips, items)]
    clips = torch.from_numpy(np.stack(clips).astype(np.float32))
    before = row is not None and row.question_before and not (one_hop or echo)
    after = row is None or row.question_after or one_hop or echo
    prompts, targets, preambles = [], [], []
    for _, _, category, yes in items:
        word = ids["first_category_id"] + category
        question = ids["prefix"] + [word] + ids["suffix"]
        tail = ids["echo"] if echo else [] if one_hop else ids["suffix"]
        prompts.append(ids["prefix"] + [word] + tail if after else [])
        preambles.append(question)
        targets.append(word if echo else ids["yes"] if yes else ids["no"])
    return clips, prompts, torch.tensor(targets), preambles if before else None


def _accuracy(model: LookupModel, items, features, ids, one_hop: bool, row: LookupRow | None = None) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(items), 32):
            chunk = items[start:start + 32]
            clips, prompts, targets, preambles = _batch(chunk, features, ids, one_hop, False, row)
            logits = model(clips, prompts, preambles)
            predicted = torch.where(logits[:, ids["yes"]] > logits[:, ids["no"]], ids["yes"], ids["no"])
            correct += int((predicted == targets).sum())
    return correct / max(1, len(items))


def _train_row(config: LookupConfig, row: LookupRow, seed: int, features, region: int, text_config, ids, desc: str) -> dict[str, Any]:
    from tqdm.auto import tqdm

    train = {k: v for k, v in features.items() if k.startswith("train_")}
    test = {k: v for k, v in features.items() if k.startswith("test_")}
    full = presence_items(train, config.num_frames, region, config.min_pixels, seed)
    stages = [(fraction, presence_items(train, frames, region, config.min_pixels, seed)) for fraction, frames in row.curriculum]
    stages.append((1.0, full))
    held_out = presence_items(test, config.num_frames, region, config.min_pixels, 0)  # the same questions for every row and seed
    model = LookupModel(text_config, config.tokens, seed, config.num_layers)
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / config.steps))))
    generator = np.random.default_rng(seed + 1)
    echo_count = int(round(row.echo * config.batch_size))
    curve = {"step": [0], "accuracy": [_accuracy(model, held_out, test, ids, row.one_hop, row)], "train_loss": [None]}
    running: list[float] = []
    tick = time.perf_counter()
    bar = tqdm(range(config.steps), desc=desc, disable=not config.progress)
    for step in bar:
        pool = next(items for fraction, items in stages if step < fraction * config.steps or fraction >= 1.0)
        chosen = [pool[i] for i in generator.integers(len(pool), size=config.batch_size - echo_count)]
        count = next((n for fraction, n in row.token_stages if step < fraction * config.steps), None)
        clips, prompts, targets, preambles = _batch(chosen, train, ids, row.one_hop or step < row.one_hop_first * config.steps,
                                                    False, row, count, generator)
        logits = model(clips, prompts, preambles)
        loss = nn.functional.cross_entropy(logits, targets)
        if echo_count:
            clips, prompts, targets, _ = _batch([full[i] for i in generator.integers(len(full), size=echo_count)], train, ids, False, True)
            loss = (loss * len(chosen) + nn.functional.cross_entropy(model(clips, prompts), targets) * echo_count) / config.batch_size
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            curve["step"].append(step + 1)
            curve["accuracy"].append(_accuracy(model, held_out, test, ids, row.one_hop, row))
            curve["train_loss"].append(float(np.mean(running)))
            running = []
            bar.set_postfix(accuracy=f"{curve['accuracy'][-1]:.3f}")
    return {"seconds": time.perf_counter() - tick, "test_questions": len(held_out), "train_questions": len(full), **curve}


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.8))
    for name, row in summary.items():
        mean, std = 100 * np.asarray(row["mean"]), 100 * np.asarray(row["std"])
        axis.plot(row["step"], mean, marker=".", label=f"{name} ({len(row['seeds'])} seed{'s' if len(row['seeds']) > 1 else ''})")
        axis.fill_between(row["step"], mean - std, mean + std, alpha=0.2)
    axis.axhline(50, color="grey", lw=0.8, ls="--")
    axis.set(xlabel="training step", ylabel="held-out accuracy (%)", ylim=(40, 100),
             title="presence of the named category over perfect video tokens")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_lookup(config: LookupConfig) -> dict[str, Any]:
    """Every (row, seed), resumably; returns ``{row: {step, mean, std, seeds}}`` and writes
    ``lookup.json`` / ``lookup.png``."""
    import transformers

    from ..models import load_vlm2
    from .vlm2_oracle import OracleConfig, _render_features

    unknown = [r for r in config.rows if r not in ROWS]
    if unknown or config.tokens not in TiedTokens.MODES:
        raise ValueError(f"rows come from {sorted(ROWS)} and tokens from {TiedTokens.MODES}; got rows {list(config.rows)}, tokens {config.tokens!r}")
    torch.set_num_threads(config.num_threads)
    transformers.logging.set_verbosity_error()
    base, processor = load_vlm2(config.base)
    if config.image_size != base.config.vision_config.image_size:
        raise ValueError(f"the benchmark's frames are {config.image_size} px but {config.base} reads "
                         f"{base.config.vision_config.image_size} px")
    text_config = base.config.text_config
    ids = _prompts(processor.tokenizer, text_config.vocab_size)
    region = 2 * processor.patch_size  # a pooled token's footprint
    out = Path(config.out_dir)
    (out / "features").mkdir(parents=True, exist_ok=True)
    render = OracleConfig(data_dir=config.data_dir, seed=config.seed, render_frames=config.render_frames,
                          image_size=config.image_size, num_frames=config.num_frames, progress=config.progress)
    features: dict[str, np.ndarray] = {}
    for split, scenes in (("train", config.train_scenes), ("test", config.test_scenes)):
        cache = out / "features" / f"{split}_seed{config.seed}_frames{config.num_frames}of{config.render_frames}_region{region}.npz"
        features.update(_render_features(render, split, scenes, region, cache))
    summary = {}
    for name in config.rows:
        curves = []
        for seed in config.seeds:
            done = out / "runs" / name / f"seed{seed}.json"
            if not done.is_file():
                result = _train_row(config, ROWS[name], seed, features, region, text_config, ids, f"{name} seed {seed}")
                done.parent.mkdir(parents=True, exist_ok=True)
                done.write_text(json.dumps({"row": name, "seed": seed, "tokens": config.tokens, "num_layers": config.num_layers, **result}) + "\n")
            curves.append(json.loads(done.read_text()))
        accuracy = np.asarray([c["accuracy"] for c in curves])
        summary[name] = {"step": curves[0]["step"], "mean": accuracy.mean(0).tolist(), "std": (accuracy.std(0, ddof=1) if len(curves) > 1 else 0 * accuracy[0]).tolist(),
                         "seeds": list(config.seeds), "test_questions": curves[0]["test_questions"],
                         "first_step_at_70": [next((step for step, a in zip(c["step"], c["accuracy"]) if a >= 0.7), None) for c in curves],
                         "seconds": float(np.mean([c["seconds"] for c in curves]))}
    (out / "lookup.json").write_text(json.dumps({"config": dataclasses.asdict(config), "rows": summary}, indent=1) + "\n")
    _plot(summary, out / "lookup.png")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_lookup", description=__doc__.split("\n\n")[0])
    defaults = LookupConfig()
    parser.add_argument("--data", default=defaults.data_dir)
    parser.add_argument("--base", default=defaults.base)
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--rows", default=",".join(defaults.rows), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tokens", default=defaults.tokens, choices=TiedTokens.MODES)
    for flag, field in (("--steps", "steps"), ("--batch-size", "batch_size"), ("--eval-every", "eval_every"),
                        ("--num-frames", "num_frames"), ("--render-frames", "render_frames"), ("--image-size", "image_size"),
                        ("--train-scenes", "train_scenes"), ("--test-scenes", "test_scenes"), ("--min-pixels", "min_pixels"),
                        ("--seed", "seed"), ("--num-threads", "num_threads")):
        parser.add_argument(flag, type=int, default=getattr(defaults, field))
    parser.add_argument("--num-layers", type=int, default=None, help="language model depth (default: the base's)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = LookupConfig(
        data_dir=args.data, base=args.base, out_dir=args.out, rows=tuple(filter(None, args.rows.split(","))),
        seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()), tokens=args.tokens, steps=args.steps,
        batch_size=args.batch_size, eval_every=args.eval_every, num_frames=args.num_frames, render_frames=args.render_frames,
        image_size=args.image_size, train_scenes=args.train_scenes, test_scenes=args.test_scenes, min_pixels=args.min_pixels,
        seed=args.seed, num_threads=args.num_threads, learning_rate=args.learning_rate, progress=not args.no_progress,
        num_layers=args.num_layers,
    )
    try:
        summary = run_lookup(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    for name, row in summary.items():
        print(f"{name:>10}: held-out accuracy {100 * row['mean'][-1]:.1f} ± {100 * row['std'][-1]:.1f} % after "
              f"{row['step'][-1]} steps ({row['test_questions']} questions, {len(row['seeds'])} seeds; "
              f"first step at ≥ 70 % per seed: {row['first_step_at_70']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
