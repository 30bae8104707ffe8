"""Where a SHIRG-X run's read-out is lost: its base against its shared reader, one step against the decoder.

```bash
python -m spatialvlm.experiments.shirgx_probe --run OUT/seed0 [--rows shirgx,pool] [--budget 512] [--test-images 60]
```

A finished ``shirgx_budget`` run folder (``OUT/base``, ``OUT/reader``, ``OUT/data``) is read back with
the settings its reader was made with. Each model (the base after the read-out curriculum, and the
shared reader after the answer-end pass, the mixture and the head fit) answers the first
``test_images`` test questions through each row's evaluation path at one budget, two ways:

- ``one_step``: the answer is one masked position (every detail answer is one word-token with
  ``answer_words_as_tokens``) and the argmax of one forward fills it. This is what the curriculum
  trains and scores.
- ``decoder``: the evaluation's masked-diffusion decoder over ``max_new_tokens`` positions, exactly
  as ``shirgx_budget`` scores its rows; a model that never saw an answer's end fills every
  position with content words and scores 0.

On the base the SHIRG-X row's selector is the run's initialisation (its coordinate embedding and
budget head untrained); the selection itself (scoring, merging, spreading) has no trained weights.
Writes ``OUT/probe.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

__all__ = ["probe_read_out", "probe_markdown", "main"]


def probe_read_out(
    run_dir: str | Path, rows: Sequence[str] = ("shirgx", "pool"), budget: int = 512, test_images: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (percent, the evaluation's exact-match score) of each model × row × read-out.

    Args:
        run_dir: a finished ``shirgx_budget`` run (shared reader) folder.
        rows: ``BUDGET_ROWS`` names to read through.
        budget: the evaluation budget K (0 = scaffold only, 2304 = all patches).
        test_images: the first this many test questions (``None``: all of them).

    Returns:
        ``{"budget", "questions", "accuracy": {model: {row: {"one_step", "decoder"}}},
        "predictions": {model: {row: {"one_step": [...], "decoder": [...]}}}}``.
    """
    import torch

    from .shirgx_budget import (
        BUDGET_ROWS, BudgetExperimentConfig, _evaluate_row, _Experiment, _load_reader, _shared_row_path,
    )

    run = Path(run_dir)
    record = run / "reader" / "reader_training.json"
    if not record.is_file():
        raise FileNotFoundError(f"{record} not found: --run takes a finished shirgx_budget run with reader='shared'")
    stored = json.loads(record.read_text())["config"]
    known = {f.name for f in dataclasses.fields(BudgetExperimentConfig)}
    config = BudgetExperimentConfig(**{
        key: tuple(value) if isinstance(value, list) else value for key, value in stored.items() if key in known
    })
    if config.objective != "diffusion":
        raise ValueError(f"the probe reads diffusion runs; this run's objective is {config.objective!r}")
    by_name = {row.name: row for row in BUDGET_ROWS}
    unknown = sorted(set(rows) - set(by_name))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {sorted(by_name)}")
    config = dataclasses.replace(config, out_dir=str(run), show_progress=show_progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        experiment = _Experiment(config)
        if test_images is not None:
            experiment.test_items = experiment.test_items[:test_images]
            experiment.test_records = experiment.test_records[:test_images]
        read_outs = {"one_step": 1, "decoder": config.max_new_tokens}
        accuracy: dict[str, Any] = {}
        predictions: dict[str, Any] = {}
        for model_name in ("base", "reader"):
            model, _ = experiment.model_for(BUDGET_ROWS[0])
            if model_name == "reader":
                _load_reader(model, run / "reader")
            model.eval()
            for row_name in rows:
                path = _shared_row_path(experiment, by_name[row_name], model)
                for read_out, length in read_outs.items():
                    experiment.config = dataclasses.replace(config, eval_budgets=(budget,), max_new_tokens=length)
                    evaluation = _evaluate_row(experiment, by_name[row_name], path, adaptive=False)
                    scores = evaluation.scores[str(budget)]
                    accuracy.setdefault(model_name, {}).setdefault(row_name, {})[read_out] = 100 * sum(scores) / len(scores)
                    predictions.setdefault(model_name, {}).setdefault(row_name, {})[read_out] = evaluation.predictions[str(budget)]
        experiment.config = config
    finally:
        torch.set_num_threads(threads)
    return {"budget": budget, "questions": len(experiment.test_items), "accuracy": accuracy, "predictions": predictions}


def probe_markdown(probe: dict[str, Any]) -> str:
    """The probe's accuracy table: one line per model × row."""
    budget = probe["budget"]
    label = "144" if budget == 0 else ("all 2304" if budget >= 2304 else f"{budget}+144")
    lines = [f"Read-out probe at {label} tokens, {probe['questions']} test questions (% exact match)", "",
             "| model | row | one step (answer masked at its length) | decoder (the evaluation's) |", "|---|---|---:|---:|"]
    for model_name, rows in probe["accuracy"].items():
        for row_name, values in rows.items():
            lines.append(f"| {model_name} | {row_name} | {values['one_step']:.1f} | {values['decoder']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatialvlm.experiments.shirgx_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished shirgx_budget run folder (shared reader), e.g. OUT/seed0")
    parser.add_argument("--rows", default="shirgx,pool", help="comma list of rows")
    parser.add_argument("--budget", type=int, default=512, help="K: 0 (scaffold), a training budget, or 2304")
    parser.add_argument("--test-images", type=int, default=None, help="the first N test questions (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.test_images is not None and args.test_images < 1:
        parser.error(f"--test-images must be ≥ 1; got {args.test_images}")
    try:
        probe = probe_read_out(args.run, tuple(args.rows.split(",")), args.budget, args.test_images, not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    (Path(args.run) / "probe.json").write_text(json.dumps(probe, indent=1))
    print(probe_markdown(probe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
