"""Pictures of a dual-memory stream: occupancy, replacements, gate and attention entropy over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .memory_stats import MemoryTrace

_MARKERS = "os^DvP*Xh"


def plot_memory_trace(trace: MemoryTrace, path: str | Path, title: str | None = None) -> Path:
    """Draw ``trace`` into a PNG at ``path`` (parents created) and return the path.

    Panels (x = step): fill level of each memory per video; each episodic replacement as a point
    (slot index; colour = the frame's label when the trace has labels, marker = video; the legend
    names both); mean gate γ per video (γ > 0.5 leans on the working memory); attention entropy
    per memory when recorded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = memory_trace_figure(trace, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory_trace_figure(trace: MemoryTrace, title: str | None = None):
    """The matplotlib Figure :func:`plot_memory_trace` saves (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    steps = np.arange(trace.num_steps)
    has_entropy = bool(np.isfinite(trace.working_entropy).any())
    rows = 4 if has_entropy else 3
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.6 * rows), sharex=True, constrained_layout=True)
    colors = plt.get_cmap("tab10")

    occupancy = axes[0]
    for b in range(trace.num_videos):
        # Wide pale working line under a dashed, marked episodic one: equal fills must stay visible.
        occupancy.plot(steps, trace.working_fill[:, b], color=colors(b), linewidth=4, alpha=0.35,
                       label=f"video {b} working")
        occupancy.plot(steps, trace.episodic_fill[:, b], color=colors(b), linestyle="--", marker="x",
                       markersize=4, label=f"video {b} episodic")
    occupancy.axhline(trace.working_size, color="grey", linewidth=0.5)
    occupancy.axhline(trace.episodic_size, color="grey", linewidth=0.5)
    occupancy.set_ylabel("entries held")
    occupancy.legend(fontsize=7, ncol=min(trace.num_videos, 4))

    replacements = axes[1]
    for b in range(trace.num_videos):
        hit = trace.replaced_slot[:, b] >= 0
        if trace.labels is not None:
            color = [colors(int(label) % 10) for label in trace.labels[hit, b]]
        else:
            color = [colors(b)] * int(hit.sum())
        replacements.scatter(steps[hit], trace.replaced_slot[hit, b], c=color, s=10,
                             marker=_MARKERS[b % len(_MARKERS)], label=f"video {b}")
    replacements.set_ylim(-1, trace.episodic_size)
    replacements.set_ylabel("episodic slot\nreplaced")
    if trace.labels is not None:
        replacements.set_title("colour = scene of the new frame, marker = video", fontsize=8, loc="right")
        # Colours mean scenes here, so the legend has grey markers per video and a swatch per scene.
        videos = [Line2D([], [], color="grey", marker=_MARKERS[b % len(_MARKERS)], linestyle="", label=f"video {b}")
                  for b in range(trace.num_videos)]
        shown = sorted({int(label) % 10 for label in np.unique(trace.labels[trace.replaced_slot >= 0])})
        scenes = [Line2D([], [], color=colors(k), marker="o", linestyle="", label=f"scene {k}") for k in shown]
        replacements.legend(handles=videos + scenes, fontsize=7, ncol=min(len(videos) + len(scenes), 8))
    else:
        replacements.legend(fontsize=7, ncol=min(trace.num_videos, 4))

    gate = axes[2]
    for b in range(trace.num_videos):
        gate.plot(steps, trace.gate[:, b], color=colors(b), label=f"video {b}")
    gate.set_ylabel("mean gate γ\n(working share)")
    gate.set_ylim(0, 1)
    gate.legend(fontsize=7, ncol=min(trace.num_videos, 4))

    if has_entropy:
        entropy = axes[3]
        for b in range(trace.num_videos):
            entropy.plot(steps, trace.working_entropy[:, b], color=colors(b), label=f"video {b} working")
            entropy.plot(steps, trace.episodic_entropy[:, b], color=colors(b), linestyle="--", label=f"video {b} episodic")
        entropy.set_ylabel("attention\nentropy (nats)")
        entropy.legend(fontsize=7, ncol=min(trace.num_videos, 4))
    axes[-1].set_xlabel("frame")
    fig.suptitle(title or "dual memory over time")
    return fig
