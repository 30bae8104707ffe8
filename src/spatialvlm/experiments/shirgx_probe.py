"""Where a SHIRG-X run's read-out is lost: its base against its shared reader, one step against the decoder.

```bash
python -m spatialvlm.experiments.shirgx_probe --run OUT/seed0 [--rows shirgx,pool] [--budget 512] [--test-images 60]
python -m spatialvlm.experiments.shirgx_probe --run OUT/seed0 --selection [--rows shirgx,divprune] [--budget 512]
python -m spatialvlm.experiments.shirgx_probe --run OUT/seed0 --scaffold [--budget 512]
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

``--selection`` asks instead *which patches* each row keeps beside the answer (``probe_selection``):
whether the answer patch is kept at full resolution, how many of its eight grid neighbours and of
the image's other content cells (marks, glyphs, bar labels) are, the accuracy of the run's recorded
answers with and without the answer patch kept, and what the wrong answers are (another kept
cell's content, a neighbour's, or nothing in the image). Writes ``OUT/selection_probe.json``.

``--scaffold`` swaps the 144-token scaffold between SHIRG-X and DivPrune at equal token counts
(``probe_scaffold``): SHIRG-X as run (scaffold + K), SHIRG-X's own K + 144 detail tokens without the
scaffold, DivPrune as run (K + 144 of its own), DivPrune's K after a 144-token scaffold (the 4×4
pools of the projected patches: SHIRG-X's scaffold without its coordinate embedding); each answered
by the shared reader through the evaluation's decoder. Writes ``OUT/scaffold_probe.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

__all__ = ["probe_read_out", "probe_markdown", "selection_stats", "content_cells", "wrong_answer_kind", "probe_selection",
           "selection_markdown", "probe_scaffold", "scaffold_markdown", "main"]


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
    from .shirgx_budget import BUDGET_ROWS, _evaluate_row, _load_reader, _shared_row_path

    run = Path(run_dir)
    with _opened_run(run, rows, show_progress, test_images) as (config, by_name, experiment):
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
    return {"budget": budget, "questions": len(experiment.test_items), "accuracy": accuracy, "predictions": predictions}


def _run_config(run: Path, rows: Sequence[str], show_progress: bool):
    """The ``BudgetExperimentConfig`` a finished run's shared reader was made with, and the rows by name."""
    from .shirgx_budget import BUDGET_ROWS, BudgetExperimentConfig

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
    return dataclasses.replace(config, out_dir=str(run), show_progress=show_progress), by_name


@contextlib.contextmanager
def _opened_run(run: Path, rows: Sequence[str], show_progress: bool, test_images: int | None):
    """``(config, rows by name, _Experiment)`` of a finished run, its first ``test_images`` test
    questions only, with torch at the run's thread count for the duration."""
    import torch

    from .shirgx_budget import _Experiment

    config, by_name = _run_config(run, rows, show_progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        experiment = _Experiment(config)
        if test_images is not None:
            experiment.test_items = experiment.test_items[:test_images]
            experiment.test_records = experiment.test_records[:test_images]
        yield config, by_name, experiment
    finally:
        torch.set_num_threads(threads)


def content_cells(description: dict[str, Any], grid: int = 48) -> dict[int, str]:
    """Patch index (row-major over the ``grid``×``grid`` patches) → the content drawn there: a mark's
    colour, a glyph, a bar's label (the detail families' descriptions)."""
    family = description["family"]
    if family in ("dense_marks", "dense_glyphs"):
        key = "marks" if family == "dense_marks" else "glyphs"
        return {row * grid + col: value for row, col, value in description[key]}
    if family == "dense_bars":
        return {description["label_row"] * grid + bar["col"]: bar["label"] for bar in description["bars"]}
    raise ValueError(f"no content cells for family {family!r} (the detail families only)")


def _neighbours(target: int, grid: int) -> set[int]:
    """The up to 8 grid neighbours of patch ``target`` (row-major index)."""
    row, col = divmod(target, grid)
    return {
        (row + dy) * grid + col + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        if (dy or dx) and 0 <= row + dy < grid and 0 <= col + dx < grid
    }


def _kept_alone(source_index, is_scaffold) -> set[int]:
    """Patches that are the only source of a non-scaffold token (kept at full resolution)."""
    single = ~is_scaffold & ((source_index >= 0).sum(-1) == 1)
    return set(source_index[single, 0].tolist())


def selection_stats(source_index, is_scaffold, target: int, content: Sequence[int], grid: int = 48) -> dict[str, int]:
    """What one image's selection keeps around its answer patch.

    Args:
        source_index: (T, W) patch indices each token averages, −1 padded (one image of
            ``SelectionOutput.source_index``).
        is_scaffold: (T,) bool.
        target: the answer patch (row-major index).
        content: the image's content-cell patch indices (``content_cells``), target included.
    Returns:
        ``target_kept`` (1 if a non-scaffold token averages the target patch alone), ``target_group``
        (patches in the non-scaffold token holding the target; 0 if none), ``neighbours_kept`` (of the
        target's up to 8 grid neighbours, how many are kept alone), ``content_kept`` (other content
        cells kept alone), ``fine_tokens`` (non-scaffold tokens averaging one patch), ``merged_tokens``
        (non-scaffold tokens averaging more).
    """
    sizes = (source_index >= 0).sum(-1)
    detail = ~is_scaffold
    kept = _kept_alone(source_index, is_scaffold)
    holding = detail & (source_index == target).any(-1)
    return {
        "target_kept": int(target in kept),
        "target_group": int(sizes[holding].max()) if bool(holding.any()) else 0,
        "neighbours_kept": len(_neighbours(target, grid) & kept),
        "content_kept": len((set(content) - {target}) & kept),
        "fine_tokens": int((detail & (sizes == 1)).sum()),
        "merged_tokens": int((detail & (sizes > 1)).sum()),
    }


def wrong_answer_kind(prediction: str, kept: set[int], target: int, cells: dict[int, str], grid: int = 48) -> str:
    """Where a wrong answer came from: ``"kept_other"`` (the content of another cell kept at full
    resolution), ``"neighbour"`` (a grid neighbour's content, that cell not kept), ``"elsewhere"`` (the
    content of some other cell of the image) or ``"absent"`` (nothing drawn in the image)."""
    values = lambda patches: {cells[p] for p in patches if p in cells and p != target}  # noqa: E731
    if prediction in values(kept):
        return "kept_other"
    if prediction in values(_neighbours(target, grid)):
        return "neighbour"
    return "elsewhere" if prediction in values(cells) else "absent"


def probe_selection(
    run_dir: str | Path, rows: Sequence[str] = ("shirgx", "divprune"), budget: int = 512, test_images: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Per test question and row: ``selection_stats`` of the shared reader's selection at ``budget``,
    beside the run's recorded answer (``OUT/results.json``).

    Returns:
        ``{"budget", "questions": [{"question_type", "answer", "content_cells", "ink", row: {**stats, "prediction",
        "correct", "wrong_kind"}}], "summary": {row: {question_type: {...}}}}`` where ``wrong_kind`` is
        ``"kept_other"`` (the content of another kept cell), ``"neighbour"`` (a grid neighbour's content,
        not kept), ``"elsewhere"`` (content of a cell neither kept nor adjacent), ``"absent"`` (not in the
        image) or ``None`` when correct; ``ink`` is the adaptive row's complexity measure (share of
        non-background pixels).
    """
    import torch
    from tqdm.auto import tqdm

    from PIL import Image

    from ..eval.image_metrics import score_image_prediction
    from .shirgx_budget import _image_tokens, _ink_fraction, _load_reader, _shared_row_path

    if budget <= 0 or budget >= 2304:
        raise ValueError(f"budget must be a K between 1 and 2303 (a selection); got {budget}")
    run = Path(run_dir)
    _run_config(run, rows, show_progress)  # a shared-reader run and known rows, before reading its answers
    results_file = run / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} not found: the selection probe reads the run's recorded answers")
    recorded = json.loads(results_file.read_text())["predictions"]
    missing = [row for row in rows if str(budget) not in recorded.get(row, {})]
    if missing:
        raise ValueError(f"{results_file} has no answers at K = {budget} for rows {missing}")
    with _opened_run(run, rows, show_progress, test_images) as (config, by_name, experiment):
        count = len(experiment.test_items)
        model, _ = experiment.model_for(by_name[rows[0]])
        _load_reader(model, run / "reader")
        model.eval()
        grid = experiment.selector_config.grid[0]
        embeddings = model.model.get_input_embeddings()
        questions: list[dict[str, Any]] = []
        for index in range(count):
            record = experiment.test_records[index]
            description = json.loads((experiment.paths["test"].parent / record["image"]).with_suffix(".json").read_text())
            cells = content_cells(description, grid)
            target = record["target_patch"][0] * grid + record["target_patch"][1]
            with Image.open(experiment.paths["test"].parent / record["image"]) as image:
                ink = _ink_fraction(image)
            questions.append({"question_type": record["question_type"], "answer": record["answers"][0],
                              "content_cells": len(cells), "ink": ink, "_cells": cells, "_target": target})
        for row_name in rows:
            path = _shared_row_path(experiment, by_name[row_name], model)
            predictions = recorded[row_name][str(budget)]
            bar = tqdm(range(count), desc=f"selection {row_name}", unit="q", disable=not show_progress, leave=False)
            with torch.no_grad():
                for index in bar:
                    item, record, question = experiment.test_items[index], experiment.test_records[index], questions[index]
                    hidden = path.vision_hidden_states(item["pixel_values"][None])
                    _, selection = _image_tokens(path, None, hidden, embeddings(item["question_ids"][None]), budget,
                                                 min(config.train_budgets), item["pixel_values"][None])
                    cells, target = question["_cells"], question["_target"]
                    stats = selection_stats(selection.source_index[0], selection.is_scaffold[0], target, list(cells), grid)
                    prediction = predictions[index]
                    correct = score_image_prediction({**record, "prediction": prediction}) > 0
                    kind = None if correct else wrong_answer_kind(
                        prediction, _kept_alone(selection.source_index[0], selection.is_scaffold[0]), target, cells, grid)
                    question[row_name] = {**stats, "prediction": prediction, "correct": bool(correct), "wrong_kind": kind}
    for question in questions:
        del question["_cells"], question["_target"]
    return {"budget": budget, "questions": questions, "summary": _selection_summary(questions, rows)}


def _selection_summary(questions: list[dict[str, Any]], rows: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for row in rows:
        for kind in sorted({q["question_type"] for q in questions}) + ["all"]:
            chosen = [q for q in questions if kind in ("all", q["question_type"])]
            stats = [q[row] for q in chosen]
            kept = [s for s in stats if s["target_kept"]]
            lost = [s for s in stats if not s["target_kept"]]
            wrong = [s for s in stats if not s["correct"]]
            share = lambda part, whole: 100 * len(part) / len(whole) if whole else float("nan")  # noqa: E731
            mean = lambda key, group: sum(s[key] for s in group) / len(group) if group else float("nan")  # noqa: E731
            summary.setdefault(row, {})[kind] = {
                "questions": len(stats), "accuracy": share([s for s in stats if s["correct"]], stats),
                "target_kept": share(kept, stats),
                "accuracy_target_kept": share([s for s in kept if s["correct"]], kept), "n_kept": len(kept),
                "accuracy_target_lost": share([s for s in lost if s["correct"]], lost), "n_lost": len(lost),
                "neighbours_kept": mean("neighbours_kept", stats), "content_kept": mean("content_kept", stats),
                "content_cells": sum(q["content_cells"] for q in chosen) / len(chosen),
                "fine_tokens": mean("fine_tokens", stats), "merged_tokens": mean("merged_tokens", stats),
                "wrong": {k: share([s for s in wrong if s["wrong_kind"] == k], wrong)
                          for k in ("kept_other", "neighbour", "elsewhere", "absent")},
            }
    return summary


def selection_markdown(probe: dict[str, Any]) -> str:
    """The selection probe's table: one line per row × question type."""
    lines = [
        f"Selection probe at {probe['budget']}+144 tokens, {len(probe['questions'])} test questions", "",
        "| row | type | n | accuracy | answer patch kept | accuracy kept (n) / lost (n) | neighbours kept (of 8) "
        "| other content kept / cells | fine / merged tokens | wrong: kept other / neighbour / elsewhere / absent |",
        "|---|---|---:|---:|---:|---|---:|---|---|---|",
    ]
    for row, kinds in probe["summary"].items():
        for kind, s in kinds.items():
            w = s["wrong"]
            lines.append(
                f"| {row} | {kind} | {s['questions']} | {s['accuracy']:.1f} | {s['target_kept']:.1f} | "
                f"{s['accuracy_target_kept']:.1f} ({s['n_kept']}) / {s['accuracy_target_lost']:.1f} ({s['n_lost']}) | "
                f"{s['neighbours_kept']:.2f} | {s['content_kept']:.0f} / {s['content_cells']:.0f} | "
                f"{s['fine_tokens']:.0f} / {s['merged_tokens']:.0f} | "
                f"{w['kept_other']:.0f} / {w['neighbour']:.0f} / {w['elsewhere']:.0f} / {w['absent']:.0f} % |"
            )
    return "\n".join(lines) + "\n"


def _detail_only(selector):
    """SHIRG-X's selection at K + 144 with its scaffold dropped: as many tokens as a baseline at K, all
    of them SHIRG-X's own detail tokens (groups chosen by its score, merging and spreading)."""
    import torch

    from ..selection import SelectionOutput

    class DetailOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = selector
            self.config = selector.config

        def forward(self, hi_tokens, text_embeds=None, budget=None, **kwargs):
            out = self.inner(hi_tokens, text_embeds, budget + self.config.num_scaffold, **kwargs)
            keep = ~out.is_scaffold[0]
            return SelectionOutput(
                tokens=out.tokens[:, keep], coords=out.coords[:, keep], is_scaffold=out.is_scaffold[:, keep],
                budget=out.budget, source_index=out.source_index[:, keep], patch_scores=out.patch_scores,
            )

    return DetailOnly()


def probe_scaffold(
    run_dir: str | Path, budget: int = 512, test_images: int | None = None, show_progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (percent, per question type and overall) of four selections at K + 144 tokens each.

    ``shirgx`` and ``divprune`` are the run's rows; ``shirgx-detail-only`` is SHIRG-X at K + 144 without
    its scaffold; ``divprune+scaffold`` is a 144-token scaffold (4×4 pools of the projected patches,
    SHIRG-X's without its coordinate embedding) plus K DivPrune tokens (``BaselineSelector(keep_scaffold=True)``). All four are answered by the shared reader through the
    evaluation's decoder, so the first and third reproduce the run's recorded answers.

    Returns:
        ``{"budget", "questions", "accuracy": {variant: {"all", question_type...}}, "predictions":
        {variant: [...]}, "region_full_res": {variant: percent}}``.
    """
    from ..models.shirgx_vlm import ShirgXImagePath
    from ..selection import BaselineSelector
    from .shirgx_budget import _evaluate_row, _load_reader, _shared_row_path

    if budget <= 0 or budget + 144 > 2304:
        raise ValueError(f"budget must be a K with K + 144 ≤ 2304 patches; got {budget}")
    run = Path(run_dir)
    with _opened_run(run, ("shirgx", "divprune"), show_progress, test_images) as (config, by_name, experiment):
        model, _ = experiment.model_for(by_name["shirgx"])
        _load_reader(model, run / "reader")
        model.eval()
        shirgx = _shared_row_path(experiment, by_name["shirgx"], model)
        divprune = _shared_row_path(experiment, by_name["divprune"], model)
        selector_config = experiment.training_config(by_name["divprune"]).selector
        variants = {
            "shirgx": (by_name["shirgx"], shirgx),
            "shirgx-detail-only": (by_name["shirgx"], ShirgXImagePath(shirgx.model, _detail_only(shirgx.selector), shirgx.config)),
            "divprune": (by_name["divprune"], divprune),
            "divprune+scaffold": (by_name["divprune"], ShirgXImagePath(divprune.model, BaselineSelector(
                "divprune", selector_config, keep_scaffold=True, seed=config.seed), divprune.config)),
        }
        experiment.config = dataclasses.replace(config, eval_budgets=(budget,))
        accuracy: dict[str, Any] = {}
        predictions: dict[str, Any] = {}
        full_res: dict[str, float] = {}
        for name, (row, path) in variants.items():
            evaluation = _evaluate_row(experiment, row, path, adaptive=False)
            scores = evaluation.scores[str(budget)]
            accuracy[name] = {"all": 100 * sum(scores) / len(scores), **{
                kind: 100 * sum(values) / len(values) for kind, values in sorted(evaluation.families[str(budget)].items())
            }}
            predictions[name] = evaluation.predictions[str(budget)]
            full = evaluation.full_res[str(budget)]
            full_res[name] = 100 * sum(full) / len(full)
        experiment.config = config
    return {"budget": budget, "questions": len(experiment.test_items), "accuracy": accuracy,
            "predictions": predictions, "region_full_res": full_res}


def scaffold_markdown(probe: dict[str, Any]) -> str:
    """The scaffold swap's table: one line per variant, accuracy per question type."""
    kinds = [kind for kind in next(iter(probe["accuracy"].values())) if kind != "all"]
    lines = [f"Scaffold swap at {probe['budget'] + 144} tokens each, {probe['questions']} test questions (% exact match)", "",
             "| selection | all | " + " | ".join(kinds) + " | answer patches kept alone % |",
             "|---|---:|" + "---:|" * len(kinds) + "---:|"]
    for name, values in probe["accuracy"].items():
        lines.append(f"| {name} | {values['all']:.1f} | " + " | ".join(f"{values[k]:.1f}" for k in kinds)
                     + f" | {probe['region_full_res'][name]:.0f} |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--budget", type=int, default=512, help="K: 0 (the scaffold alone), any K below 2304, or 2304 (every patch)")
    parser.add_argument("--test-images", type=int, default=None, help="the first N test questions (default: all)")
    parser.add_argument("--selection", action="store_true",
                        help="which patches each row keeps around the answer (probe_selection), not the read-out")
    parser.add_argument("--scaffold", action="store_true",
                        help="swap the scaffold between SHIRG-X and DivPrune at equal token counts (probe_scaffold)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.test_images is not None and args.test_images < 1:
        parser.error(f"--test-images must be ≥ 1; got {args.test_images}")
    if args.selection and args.scaffold:
        parser.error("--selection and --scaffold are two probes: pick one")
    rows = tuple(args.rows.split(","))
    if args.scaffold:
        probe_of = lambda: probe_scaffold(args.run, args.budget, args.test_images, not args.no_progress)  # noqa: E731
        name, table = "scaffold_probe.json", scaffold_markdown
    elif args.selection:
        probe_of = lambda: probe_selection(args.run, rows, args.budget, args.test_images, not args.no_progress)  # noqa: E731
        name, table = "selection_probe.json", selection_markdown
    else:
        probe_of = lambda: probe_read_out(args.run, rows, args.budget, args.test_images, not args.no_progress)  # noqa: E731
        name, table = "probe.json", probe_markdown
    try:
        probe = probe_of()
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    (Path(args.run) / name).write_text(json.dumps(probe, indent=1))
    print(table(probe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
