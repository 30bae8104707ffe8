"""``spatialvlm demo``: ask the committed tiny VLM² spatial questions about a freshly rendered scene.

The main job renders a synthetic room the checkpoint never saw (``spatialvlm synth``'s generator,
split "demo"), asks the tiny checkpoint in ``checkpoints/vlm2-tiny-synthetic`` one question of each
VSI-Bench task through ``ask_video`` — what ``spatialvlm ask`` runs — with the official prompt, and
prints each answer beside the exact one and its official score. It saves the dual memory's picture
(occupancy, episodic replacements, gate per frame; as ``spatialvlm ask --viz``), its trace
(``memory_trace.json``, which ``spatialvlm viz memory --trace`` redraws) and the answers.

Then, where ``checkpoints/shirgx-tiny-synthetic`` is present, the image job: one freshly drawn
high-detail image (a dense grid of colour marks, one framed) answered by the committed SHIRG-X
model at two budgets (K = 512 and 1024, each plus the 144-token scaffold), with the selection heatmap of
each (as ``spatialvlm ask --image --viz``).

``--memory-only`` instead streams a deterministic synthetic token stream through an untrained
``DualMemory`` on its own and plots what the memory does (the earlier demo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import parse_lengths

CHECKPOINT_NAME = "checkpoints/vlm2-tiny-synthetic"
SHIRGX_CHECKPOINT_NAME = "checkpoints/shirgx-tiny-synthetic"
IMAGE_DEMO_BUDGETS = (512, 1024)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="ask the committed tiny VLM² spatial questions about a synthetic scene",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--out", default="demo_out", help="output directory; default demo_out")
    parser.add_argument("--model", type=Path, help=f"checkpoint directory; default the repository's {CHECKPOINT_NAME}")
    parser.add_argument("--seed", type=int, default=1, help="seed of the scene (and of --memory-only); default 1")
    parser.add_argument("--questions", type=int, default=8, help="questions to ask, one per task type; default 8")
    parser.add_argument("--memory-only", action="store_true", help="only stream synthetic tokens through the memory")
    parser.add_argument(
        "--lengths", default="160,120,200", help="--memory-only: frames per synthetic video; default 160,120,200"
    )
    parser.set_defaults(run=run)


def _committed(name: str) -> Path | None:
    """A committed checkpoint: beside the source tree (editable install), else under the cwd."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / name / "config.json").is_file():
            return root / name
    return None


def default_checkpoint() -> Path:
    """The committed VLM² checkpoint."""
    found = _committed(CHECKPOINT_NAME)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"no {CHECKPOINT_NAME} here; run the demo from the repository root or pass --model "
        "(python -m spatialvlm.experiments.vlm2_ablation --save-best DIR makes one)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    # Tiny tensors: one thread beats paying thread wake-ups on each of the many small ops. Restored
    # afterwards, for callers that run the command in-process (tests).
    torch.set_num_threads(1)
    try:
        return _memory_only(args, out) if args.memory_only else _ask_scene(args, out)
    finally:
        torch.set_num_threads(threads)


def pick_questions(items: list, count: int) -> list:
    """One question per VSI-Bench task (paper order; rel_direction from any sub-type), ``count`` at most."""
    from ..eval.metrics import VSI_TASKS

    chosen = []
    for task in VSI_TASKS:
        matches = [item for item in items if item.question_type.startswith(task)]
        if matches:
            chosen.append(matches[0])
    return chosen[:count]


def _ask_scene(args: argparse.Namespace, out: Path) -> int:
    import json
    import shlex
    import time

    from ..data.readers import read_benchmark
    from ..data.synthetic import QuestionConfig, SynthConfig, generate_split
    from ..eval import build_prompt, score_prediction
    from ..eval.baselines import gold_answer
    from ..eval.metrics import question_types
    from ..eval.parsing import option_letter, option_text
    from ..models import ask_video, load_vlm2
    from ..diagnostics import format_memory_statistics, memory_statistics, plot_memory_trace

    if args.questions < 1:
        raise ValueError(f"--questions must be >= 1, got {args.questions}")
    model_dir = args.model if args.model is not None else default_checkpoint()
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    trained = _training_metadata(model_dir)
    synth = trained.get("synth", {})
    num_frames = int(synth.get("num_frames", 16))
    config = SynthConfig(
        num_scenes=1, num_frames=num_frames, image_size=int(synth.get("image_size", 56)), seed=args.seed,
        split="demo", questions=QuestionConfig(questions_per_type=3),
    )
    start = time.perf_counter()
    scene_dir = out / "scene"
    generate_split(scene_dir, config, show_progress=False)
    items = pick_questions(read_benchmark(scene_dir, "demo", question_types("vsibench")), args.questions)
    model, processor = load_vlm2(model_dir)
    print(f"model: {model_dir} ({trained.get('variant', 'VLM²')}: {trained.get('description', '')})")
    print(
        f"scene: {items[0].video_path} — a {num_frames}-frame walk through a room the model never saw "
        f"(seed {args.seed}), geometry in {items[0].scene_name}_geometry/\n"
    )
    geometry = items[0].video_path.parent / f"{items[0].scene_name}_geometry"
    records, memory = [], None
    for item in items:
        prompt = build_prompt(item, "vsibench")
        # record_memory runs the frames one at a time to read the memory after each (same tokens).
        result = ask_video(
            model, processor, item.video_path, prompt,
            geometry=geometry if model.config.needs_geometry else None,
            num_frames=num_frames, max_new_tokens=16, allow_fewer_frames=True,
            record_memory=memory is None and model.config.use_dual_memory,
        )
        memory = memory or (result if result.memory_trace is not None else None)
        gold = gold_answer(item)
        exact = gold
        if item.options:
            exact = next(f"{gold} ({option_text(o)})" for o in item.options if option_letter(o) == gold)
        record = {**item.to_record(), "prompt": prompt, "prediction": result.text}
        record["score_official"] = score_prediction(record, "vsibench", "official")
        records.append(record)
        print(f"[{item.question_type}] {item.question}")
        for option in item.options:
            print(f"    {option}")
        print(f"    model: {result.text!r:<12} exact: {exact:<18} official score: {record['score_official']:.2f}\n")

    mean = sum(record["score_official"] for record in records) / len(records)
    print(f"mean official score on these {len(records)} questions: {mean:.2f}")
    held_out = trained.get("held_out_official", {}).get("overall")
    if held_out is not None:
        baselines = ", ".join(f"{name} {score:.1f}" for name, score in trained.get("baselines", {}).items())
        print(f"this checkpoint's held-out synthetic VSI-Bench overall: {held_out:.1f} ({baselines}); see docs/results.md")
    (out / "answers.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    if memory is not None:
        print("\nmemory after the last frame:\n" + format_memory_statistics(memory_statistics(memory.memory_state)))
        plot_memory_trace(memory.memory_trace, out / "memory.png", title="VLM² dual memory over the demo scene")
        memory.memory_trace.save(out / "memory_trace.json")  # `spatialvlm viz memory --trace` redraws it
        print(f"memory picture: {out / 'memory.png'} (trace: {out / 'memory_trace.json'})")
    command = [
        "spatialvlm", "ask", "--video", str(items[0].video_path), "--model", str(model_dir),
        "--num-frames", str(num_frames), "--viz", str(out / "memory.png"), "--stats",
    ]
    if model.config.needs_geometry:
        command[4:4] = ["--geometry", str(geometry)]
    print("the same through the command line (first question):")
    print("  " + shlex.join([*command, build_prompt(items[0], "vsibench")]))
    print(f"wrote {out / 'answers.jsonl'} in {time.perf_counter() - start:.1f} s")
    shirgx = _committed(SHIRGX_CHECKPOINT_NAME)
    if shirgx is not None:
        _ask_image(shirgx, args.seed, out)
    return 0


def _ask_image(model_dir: Path, seed: int, out: Path) -> None:
    """One dense-marks image answered at each of ``IMAGE_DEMO_BUDGETS``, with its selection heatmaps."""
    from transformers import AutoTokenizer

    from ..data.synthetic_images import ImageSuiteConfig, make_image
    from ..diagnostics.selection_plot import plot_selection
    from ..eval.image_prompts import ImagePromptConfig
    from ..models import ShirgXImagePath, load_shirgx_image_model

    drawn = make_image(ImageSuiteConfig(num_images=1, seed=seed, split="demo", families=("dense_marks",)), 0)
    question = drawn.rendered.questions[0]
    image_path = out / "image.png"
    drawn.rendered.image.save(image_path)
    loaded = load_shirgx_image_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    path = ShirgXImagePath(loaded.model, loaded.selector, loaded.image_config)
    print(f"\nimage: {image_path} (672 px, a grid of colour marks the model never saw; one is framed)")
    print(f"model: {model_dir}; {question['question']} exact: {question['answers'][0]}")
    post_prompt = ImagePromptConfig().post_prompt
    for budget in IMAGE_DEMO_BUDGETS:
        answer = path.answer(drawn.rendered.image, question["question"], tokenizer, decoding="diffusion",
                             budget=budget, max_new_tokens=4, post_prompt=post_prompt)
        picture = out / f"selection_K{budget}.png"
        plot_selection(drawn.rendered.image, answer.selection, loaded.selector.config.grid, picture,
                       title=f"SHIRG-X, K = {budget} + 144 scaffold tokens")
        print(f"    K = {budget} + 144 tokens: model {answer.text!r:<10} selection picture: {picture}")
    # The adaptive head's own choice (fitted to the K each training question needed; docs/results.md).
    answer = path.answer(drawn.rendered.image, question["question"], tokenizer, decoding="diffusion",
                         budget=None, max_new_tokens=4, post_prompt=post_prompt)
    print(f"    adaptive head: K = {answer.num_image_tokens - 144} + 144 tokens: model {answer.text!r}")


def _training_metadata(model_dir: Path) -> dict:
    import json

    path = model_dir / "synthetic_training.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _memory_only(args: argparse.Namespace, out: Path) -> int:
    import time

    from spatialvlm.diagnostics import (
        format_memory_statistics,
        memory_statistics,
        plot_memory_trace,
        replacement_label_agreement,
        run_synthetic_memory_stream,
    )

    lengths = parse_lengths(args.lengths)
    start = time.perf_counter()
    memory, state, trace = run_synthetic_memory_stream(lengths, seed=args.seed, progress=True)
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
