"""Does a model read the video? Its scene descriptions against the truth and against a constant.

    python -m spatialvlm.experiments.vlm2_describe --data BENCH --models base=DIR,... [--scenes 40]

Every model is asked ``vlm2_base``'s description prompt ("Describe the objects in this room in the
order they appear.") on the first ``--scenes`` test scenes through ``ask_video``; its answer and
the true description (``describe_scene``) are compared as sets of categories (counts and order
dropped), by Jaccard index. The reference is the best *constant* answer: the set of the k most
frequent training categories, k chosen on the training descriptions. A model that reads the video
beats the constant; one that answers from the prior does not.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

__all__ = ["description_categories", "jaccard", "best_constant_set", "main"]


def description_categories(text: str) -> set[str]:
    """Categories named in a description ("2 chair, sofa, 3 lamp" → {"chair", "sofa", "lamp"})."""
    return {re.sub(r"^\d+\s+", "", part.strip()) for part in text.split(",") if part.strip()}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 1.0 for two empty sets."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def best_constant_set(truths: Sequence[set[str]]) -> set[str]:
    """The k most frequent categories of ``truths``, k maximising their mean Jaccard to ``truths``."""
    ranked = [name for name, _ in Counter(name for truth in truths for name in truth).most_common()]
    candidates = [set(ranked[:k]) for k in range(1, len(ranked) + 1)]
    return max(candidates, key=lambda constant: sum(jaccard(constant, truth) for truth in truths))


def _descriptions(data: Path, split: str, scenes: int | None) -> list[tuple[str, str]]:
    from .vlm2_base import BaseConfig, _records

    records = _records(BaseConfig(data_dir=str(data)), split, scenes)
    return [(record["video"], record["conversations"][1]["value"]) for record in records
            if record["id"].endswith("_description")]


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..models import ask_video, load_vlm2
    from .vlm2_base import DESCRIPTION_PROMPT
    from .vlm2_probe import parse_named_paths

    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.vlm2_describe", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="benchmark directory with train and test splits")
    parser.add_argument("--models", required=True, help="NAME=DIR,...: models to ask")
    parser.add_argument("--scenes", type=int, default=40, help="test scenes asked; default 40")
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--out", help="write the scores as json here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = Path(args.data)
    try:
        models = parse_named_paths(args.models)
    except ValueError as error:
        parser.error(str(error))
    test = _descriptions(data, "test", args.scenes)
    truths = [description_categories(text) for _, text in test]
    constant = best_constant_set([description_categories(text) for _, text in _descriptions(data, "train", None)])
    results = {"constant": {"answer": ", ".join(sorted(constant)), "jaccard": fmean(jaccard(constant, t) for t in truths)}}
    for name, directory in models.items():
        model, processor = load_vlm2(directory)
        model.eval()
        answers = []
        with torch.no_grad():
            for video, _ in tqdm(test, desc=f"describe {name}"):
                answers.append(ask_video(model, processor, str(data / video), DESCRIPTION_PROMPT,
                                         num_frames=args.num_frames, max_new_tokens=30).text)
        results[name] = {
            "jaccard": fmean(jaccard(description_categories(a), t) for a, t in zip(answers, truths)),
            "distinct_answers": len(set(answers)), "answers": answers,
        }
    print(f"| answer ({len(test)} test scenes) | category-set Jaccard |\n|---|---:|")
    for name, scores in results.items():
        print(f"| {name} | {scores['jaccard']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
