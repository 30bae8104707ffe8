"""Every command of the README's command-line block runs as written, as a user runs it.

The block is read from README.md (so the README cannot drift from what works), each command runs
through ``bash`` in a fresh folder that holds only a link to the repository's ``checkpoints/``,
with the virtualenv's ``spatialvlm`` first on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The README's other bash blocks, and why they are not run here.
NOT_RUN = {
    "make demo": "creates the virtualenv and installs (what this test runs inside)",
    "python -m spatialvlm.experiments.vlm2_ablation": "15-22 minute experiments (tests/experiments cover them)",
}


def bash_blocks(text: str) -> list[tuple[str, str]]:
    """(heading above, body) of each ```bash block."""
    blocks, heading = [], ""
    for match in re.finditer(r"^(#{1,4} [^\n]*)$|^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if match.group(1):
            heading = match.group(1)
        else:
            blocks.append((heading, match.group(2)))
    return blocks


def commands(block: str) -> list[str]:
    """Shell commands of a block: backslash continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_blocks_are_all_run_or_listed():
    blocks = bash_blocks((ROOT / "README.md").read_text())
    command_line = [body for heading, body in blocks if heading == "### The command line"]
    assert len(command_line) == 1
    others = [body for heading, body in blocks if heading != "### The command line"]
    for body in others:
        assert any(body.lstrip().startswith(prefix) for prefix in NOT_RUN), f"README block not run by any test:\n{body}"


def test_readme_command_line_runs_as_written(tmp_path):
    block = next(body for heading, body in bash_blocks((ROOT / "README.md").read_text()) if heading == "### The command line")
    lines = commands(block)
    assert len(lines) >= 8 and all(line.startswith("spatialvlm ") for line in lines)
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints", target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    for line in lines:
        run = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr, f"{line}\n{run.stderr[-3000:]}"
        # An answer is printed: the README's questions are ones the tiny checkpoint answers.
        assert "generated an empty answer" not in run.stderr, f"{line}\n{run.stderr}"
        if shlex.split(line)[1] == "ask":
            assert run.stdout.strip(), f"{line}: no answer printed"
    for made in ("memory.png", "heat.png", "runs/vsi/scores.json", "ckpt/vlm2/config.json", "bench/train_llava.json"):
        assert (tmp_path / made).is_file(), made
