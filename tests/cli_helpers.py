"""Running ``spatialvlm`` in tests, and reading its one-line errors (``tests/conftest.py`` puts this
folder on sys.path, so every test folder imports it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spatialvlm.cli import main

SPATIALVLM = str(Path(sys.executable).parent / "spatialvlm")


def spatialvlm(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``spatialvlm`` command as a user does (one thread: tiny models)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("SPATIALVLM_DEBUG", None)
    environment.update(env or {})
    return subprocess.run(
        [SPATIALVLM, *map(str, args)], capture_output=True, text=True, env=environment, cwd=cwd, timeout=600
    )


def one_line_error(run: subprocess.CompletedProcess, command: str = "ask") -> str:
    """The error line of a failed run, after checking it is the only stderr line that is not a
    warning and that no traceback was printed."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip() and ": warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"spatialvlm {command}: error: "), run.stderr
    return lines[0]


def main_error(argv, capsys) -> str:
    """``main(argv)`` run in-process: its one error line (exit 2, nothing else but warnings on stderr)."""
    code = main([str(token) for token in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and ": warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith("spatialvlm "), err
    return lines[0]
