"""Diagnostics: statistics, pictures and timings of what the modules do."""

from .geometry_plot import GeometryPicture, plot_geometry
from .memory_plot import plot_memory_trace
from .memory_stats import (
    MemoryTrace,
    MemoryTraceRecorder,
    VideoMemoryStatistics,
    format_memory_statistics,
    memory_statistics,
    record_memory_trace,
    replacement_label_agreement,
)
from .memory_synthetic import SyntheticStream, run_synthetic_memory_stream, synthetic_scene_stream
from .profiling import StageTimer, maybe_stage

__all__ = [
    "GeometryPicture",
    "plot_geometry",
    "MemoryTrace",
    "MemoryTraceRecorder",
    "StageTimer",
    "SyntheticStream",
    "VideoMemoryStatistics",
    "format_memory_statistics",
    "maybe_stage",
    "memory_statistics",
    "plot_memory_trace",
    "record_memory_trace",
    "replacement_label_agreement",
    "run_synthetic_memory_stream",
    "synthetic_scene_stream",
]
