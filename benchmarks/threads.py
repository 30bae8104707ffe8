"""Thread count of the benchmark scripts: ``OMP_NUM_THREADS`` when set, else 2 (the figures in
docs/results.md were measured with 2, this machine's cores)."""

from __future__ import annotations

import os

DEFAULT_THREADS = 2


def configure_threads() -> int:
    """Set torch's intra-op threads from ``OMP_NUM_THREADS`` (default 2) and return the count."""
    import torch

    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        threads = int(text) if text else DEFAULT_THREADS
    except ValueError:
        raise SystemExit(f"OMP_NUM_THREADS must be a positive integer, got {text!r}") from None
    if threads < 1:
        raise SystemExit(f"OMP_NUM_THREADS must be a positive integer, got {text!r}")
    torch.set_num_threads(threads)
    return threads
