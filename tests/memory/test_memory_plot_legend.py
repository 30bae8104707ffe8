"""The replacement panel of ``viz memory --synthetic`` colours points by scene: its legend must
say so (a swatch per scene) and keep the video markers apart from the colours."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import pyplot as plt

from spatialvlm.diagnostics.memory_plot import memory_trace_figure
from spatialvlm.diagnostics.memory_synthetic import run_synthetic_memory_stream


def test_scene_colours_have_a_legend():
    _, _, trace = run_synthetic_memory_stream((14, 10), working_size=2, episodic_size=3, seed=0)
    replaced = trace.replaced_slot >= 0
    scenes = sorted({int(label) % 10 for label in trace.labels[replaced]})
    assert len(scenes) >= 2  # the stream walks through several scenes
    figure = memory_trace_figure(trace)
    try:
        panel = figure.axes[1]
        legend = panel.get_legend()
        texts = [text.get_text() for text in legend.get_texts()]
        assert texts == [f"video {b}" for b in range(trace.num_videos)] + [f"scene {k}" for k in scenes]
        tab10 = plt.get_cmap("tab10")
        handles = dict(zip(texts, legend.legend_handles))
        for k in scenes:
            assert mcolors.same_color(handles[f"scene {k}"].get_color(), tab10(k))
        # Each drawn point has the colour its scene's swatch shows.
        for b, points in enumerate(panel.collections):
            expected = [tab10(int(label) % 10) for label in trace.labels[replaced[:, b], b]]
            assert np.allclose(points.get_facecolors(), np.array(expected))
    finally:
        plt.close(figure)
