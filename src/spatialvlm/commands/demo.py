"""``spatialvlm demo``: ask the committed tiny VLM² spatial questions about a freshly rendered scene.

The main job renders a synthetic room the checkpoint never saw (``spatialvlm synth``'s generator,
split "demo"), asks the tiny checkpoint in ``checkpoints/vlm2-tiny-synthetic`` one question of each
VSI-Bench task through ``ask_video`` — what ``spatialvlm ask`` runs — with the official prompt, and
prints each answer beside the exact one and its official score. It saves the dual memory's picture
(occupancy, episodic replacements, gate per frame; as ``spatialvlm ask --viz``) and the answers.

``--memory-only`` instead streams a deterministic synthetic token stream through an untrained
``DualMemory`` on its own and plots what the memory does (the earlier demo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHECKPOINT_NAME = "checkpoints/vlm2-tiny-synthetic"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="ask the committed tiny VLM² spatial questions about a synthetic scene",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--out", default="demo_out", help="output directory; default demo_out")
    parser.add_argument("--model", type=Path, help=f"checkpoint directory; default the repository's {CHECKPOINT_NAME}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene (and of --memory-only); default 0")
    parser.add_argument("--questions", type=int, default=8, help="questions to ask, one per task type; default 8")
    parser.add_argument("--memory-only", action="store_true", help="only stream synthetic tokens through the memory")
    parser.add_argument(
        "--lengths", default="160,120,200", help="--memory-only: frames per synthetic video; default 160,120,200"
    )
    parser.set_defaults(run=run)


def default_checkpoint() -> Path:
    """The committed checkpoint: beside the source tree (editable install), else under the cwd."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / CHECKPOINT_NAME / "config.json").is_file():
            return root / CHECKPOINT_NAME
    raise FileNotFoundError(
        f"no {CHECKPOINT_NAME} here; run the demo from the repository root or pass --model "
        "(python -m spatialvlm.experiments.vlm2_ablation --save-best DIR makes one)"
    )


def parse_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise ValueError(f"--lengths needs at least one positive length, got {text!r}")
    return lengths


def run(args: argparse.Namespace) -> int:
    import torch

    lengths = parse_lengths(args.lengths)
    threads = torch.get_num_threads()
    # Tiny tensors: one thread beats paying thread wake-ups on each of the ~100 small ops of a step.
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        memory, state, trace = run_synthetic_memory_stream(lengths, seed=args.seed, progress=True)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    cfg = memory.config
    print(
        f"dual memory: D={cfg.dim}, heads={cfg.num_heads}, working_size={cfg.working_size}, "
        f"episodic_size={cfg.episodic_size} (untrained, seed {args.seed})"
    )
    print(f"streamed {len(lengths)} synthetic videos ({sum(lengths)} frames) in {seconds:.1f} s\n")
    print(format_memory_statistics(memory_statistics(state)))
    agreement = replacement_label_agreement(trace)
    print(f"\nreplacements that deleted an entry of the scene being viewed: {agreement:.0%}")
    png = plot_memory_trace(trace, out / "memory.png", title="VLM² dual memory on a synthetic stream")
    trace.save(out / "memory_trace.json")
    state.save(out / "memory_state.safetensors")
    print(f"wrote {png}, {out / 'memory_trace.json'}, {out / 'memory_state.safetensors'}")
    return 0
