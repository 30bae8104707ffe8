"""The dual memory as it was before issue 14 (commit 281ff13), for ``bench_memory.py`` only.

``bench_memory.py`` measures "before" and "after" in one script. Rather than keep a second copy of
the old implementation in the tree, this module materialises ``src/spatialvlm/memory/`` at that
commit from git into a temporary package and imports it (the old package uses relative imports
only, so it runs as it was). Its parameters have the same names and shapes as the library's
``DualMemory(output="paper", read_order="read_then_write")``, so one state dict loads into both.
Nothing in the library imports this file. Needs a checkout with history (not a shallow clone).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

REVISION = "281ff13"
PACKAGE = "spatialvlm_memory_281ff13"
_REPO = Path(__file__).resolve().parents[1]


def _materialise() -> Path:
    """Write the memory package at ``REVISION`` under a temporary folder; returns that folder."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(_REPO), *args], check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            raise ImportError(
                f"legacy_memory: cannot read src/spatialvlm/memory at {REVISION} from git ({error}); "
                "run the benchmark in a clone with history (git fetch --unshallow)"
            ) from error

    root = Path(tempfile.mkdtemp(prefix="legacy_memory_"))
    target = root / PACKAGE
    target.mkdir()
    for name in git("ls-tree", "--name-only", f"{REVISION}:src/spatialvlm/memory").split():
        if name.endswith(".py"):
            (target / name).write_text(git("show", f"{REVISION}:src/spatialvlm/memory/{name}"))
    return root


sys.path.insert(0, str(_materialise()))
_legacy = importlib.import_module(PACKAGE)
DualMemory = _legacy.DualMemory
DualMemoryConfig = _legacy.DualMemoryConfig
MemoryState = _legacy.MemoryState
