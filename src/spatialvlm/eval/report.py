"""Score tables (markdown, json) and the per-task bar chart of an evaluation run."""

from __future__ import annotations

import json
from pathlib import Path

from spatialvlm.eval.metrics import BenchmarkScores

__all__ = ["VIDEO_SCORES_NOTE", "scores_markdown", "write_scores_json", "plot_task_scores"]

VIDEO_SCORES_NOTE = (
    "Official = the benchmark's own scoring (first word, exact letter / float, MRA). "
    "Lenient = answers parsed from free text; reported beside, never instead of, official."
)


def scores_markdown(
    official: BenchmarkScores, lenient: BenchmarkScores, title: str = "", note: str = VIDEO_SCORES_NOTE
) -> str:
    """A markdown table: task, question count, official score, lenient score (percent), the micro
    average when it differs from the official overall, then ``note`` (and a categories table when the
    scores have categories)."""
    counts = {**official.counts, **official.task_counts}
    lines = [f"## {title or official.benchmark}", "", "| task | n | official | lenient |", "|---|---:|---:|---:|"]
    for name, score in official.tasks.items():
        lines.append(f"| {name} | {counts.get(name, 0)} | {score:.1f} | {lenient.tasks[name]:.1f} |")
    for name, score in official.subtasks.items():
        lines.append(f"| &nbsp;&nbsp;{name} | {counts.get(name, 0)} | {score:.1f} | {lenient.subtasks[name]:.1f} |")
    total = sum(official.counts.values())
    lines.append(f"| **overall** | {total} | **{official.overall:.1f}** | {lenient.overall:.1f} |")
    # Papers report micro and macro averages under one name (Spatial-MLLM#23): show both when they differ.
    for name, kind in (("macro", "macro: mean of the task scores"), ("micro", "micro: mean over the questions")):
        value, lenient_value = getattr(official, name), getattr(lenient, name)
        if abs(value - official.overall) > 1e-9 or abs(lenient_value - lenient.overall) > 1e-9:
            lines.append(f"| {kind} | {total} | {value:.1f} | {lenient_value:.1f} |")
    if official.categories:
        heading = "VLM-3R paper categories:" if official.benchmark == "vstibench" else "Categories:"
        lines += ["", heading, "", "| category | official | lenient |", "|---|---:|---:|"]
        for name, score in official.categories.items():
            lines.append(f"| {name} | {score:.1f} | {lenient.categories[name]:.1f} |")
    lines += ["", note]
    return "\n".join(lines) + "\n"


def write_scores_json(path: str | Path, official: BenchmarkScores, lenient: BenchmarkScores, **extra: object) -> None:
    """Write both score sets (and ``extra`` run facts) as one json object."""
    payload = {"official": official.to_dict(), "lenient": lenient.to_dict(), **extra}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


# Reference-line styles of the chart: name → (colour, line style, legend label).
REFERENCE_STYLES: dict[str, tuple[str, str, str]] = {
    "chance": ("#7f7f7f", "--", "chance (random option)"),
    "frequency": ("#d62728", ":", "most frequent answer"),
}


def plot_task_scores(
    path: str | Path,
    official: BenchmarkScores,
    lenient: BenchmarkScores,
    title: str = "",
    references: dict[str, dict[str, float]] | None = None,
) -> None:
    """A bar chart of per-task scores, official and lenient side by side, with the overall, and
    per-task reference lines (``references``: name → task → score, e.g. chance and most frequent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(official.tasks) + ["overall"]
    official_values = list(official.tasks.values()) + [official.overall]
    lenient_values = [lenient.tasks[name] for name in official.tasks] + [lenient.overall]
    positions = np.arange(len(names))
    figure, axes = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 4.0))
    axes.bar(positions - 0.2, official_values, 0.4, label="official", color="#3b6ea8")
    axes.bar(positions + 0.2, lenient_values, 0.4, label="lenient", color="#b8c9e0")
    for x, value in zip(positions - 0.2, official_values):
        axes.text(x, value + 1, f"{value:.0f}", ha="center", fontsize=7)
    for name, levels in (references or {}).items():
        colour, style, label = REFERENCE_STYLES.get(name, ("#2ca02c", "-.", name))
        labelled = False
        for x, task in zip(positions, names):
            if task in levels:
                axes.hlines(levels[task], x - 0.45, x + 0.45, colors=colour, linestyles=style, linewidth=2,
                            label=None if labelled else label)
                labelled = True
    axes.set_xticks(positions, names, rotation=35, ha="right", fontsize=8)
    axes.set_ylim(0, 105)
    axes.set_ylabel("score (%)")
    axes.set_title(title or official.benchmark)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
