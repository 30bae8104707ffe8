"""Benchmark answering: a video encoded once per question (before) or once per video (after).

``spatialvlm eval --model`` (``VLM2VideoPredictor``) and the ablation's scorer used to read, sample
and encode the video (vision tower, fusion, memory, projector) for every question; now they encode
each video once (``encode_video``) and run only the language model per question. Side by side in
one process on the committed ``checkpoints/vlm2-tiny-synthetic`` (VLM² (8, 32), 32 frames, 112 px)
over every question of a few held-out scenes rendered here (``spatialvlm synth --split test``,
seed 0), greedy, 16 new tokens as the official YAML; the answers of the two ways must be equal.

    python benchmarks/bench_eval_encode_once.py            # 4 scenes
    python benchmarks/bench_eval_encode_once.py --quick    # 2 scenes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "vlm2-tiny-synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 scenes instead of 4")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from threads import configure_threads

    import transformers

    from spatialvlm.data.video import read_video
    from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor
    from spatialvlm.models import ask_video, load_video_geometry

    transformers.logging.set_verbosity_error()
    threads = configure_threads()
    scenes = 2 if args.quick else 4
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "spatialvlm.cli", "synth", "--out", str(data), "--scenes", str(scenes),
             "--frames", "32", "--size", "112", "--seed", "0", "--split", "test"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        items = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
        predictor = VLM2VideoPredictor(CHECKPOINT, frames="32", geometry_root=data)
        model, processor = predictor.model, predictor.processor

        def video(item):
            return data / item["dataset"] / f"{item['scene_name']}.mp4"

        def geometry_dir(item):
            return predictor.geometry_dir(item["dataset"], item["scene_name"])

        def before(item) -> str:  # what the predictor did per question up to e79710d
            clip = read_video(video(item), sampling=predictor.sampling, allow_fewer=True)
            geometry = load_video_geometry(geometry_dir(item), clip.indices, coordinate_normalization=processor.coordinate_normalization)
            return ask_video(model, processor, clip.frames, item["question"], geometry=geometry, num_frames=None).text

        def after(item) -> str:
            return predictor.answer(video(item), item["question"], geometry_dir(item)).text

        before(items[0]), after(items[0])  # warm-up
        seconds, answers = {}, {}
        for name, answer in (("before: encode per question", before), ("after: encode per video", after)):
            predictor._last_encoded = None
            start = time.process_time()
            answers[name] = [answer(item) for item in items]
            seconds[name] = time.process_time() - start
    names = list(seconds)
    same = sum(a == b for a, b in zip(*answers.values()))
    print(f"# bench_eval_encode_once (torch {__import__('torch').__version__}, {threads} threads): {len(items)} questions "
          f"of {scenes} scenes, {CHECKPOINT.name}\n")
    print("| way | CPU s | s per question | share of before |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {seconds[name]:.1f} | {seconds[name] / len(items):.3f} | {seconds[name] / seconds[names[0]]:.0%} |")
    print(f"\nequal answers: {same} of {len(items)}")


if __name__ == "__main__":
    main()
