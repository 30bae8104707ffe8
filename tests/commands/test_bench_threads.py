"""``spatialvlm bench``: the scripts take their thread count from OMP_NUM_THREADS and the command
shows each section as it runs (unbuffered children), with its number and time."""

from __future__ import annotations

import re
import sys
from pathlib import Path


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_script_takes_threads_from_the_environment():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from threads import configure_threads
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    before = torch.get_num_threads()
    try:
        for value, expected in (("1", 1), ("3", 3), ("", 2)):
            import os

            os.environ["OMP_NUM_THREADS"] = value
            assert configure_threads() == expected == torch.get_num_threads()
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(before)
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        source = script.read_text()
        assert "configure_threads()" in source, script.name
        assert not re.search(r"set_num_threads\(\d", source), f"{script.name} hard-codes a thread count"


def test_bench_streams_each_section_as_it_runs(tmp_path):
    """A script prints its first section's header and then waits (a long measurement) until the
    test has seen that header: through a pipe, the header must arrive while the script runs."""
    import os
    import subprocess

    go = tmp_path / "go"
    (tmp_path / "bench_sections.py").write_text(
        "import os, time\n"
        "print('## 1. first section', os.environ.get('OMP_NUM_THREADS'))\n"
        f"deadline = time.time() + 20\n"
        f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('## 2. second section')\n"
    )
    (tmp_path / "bench_other.py").write_text("print('## other')\n")
    from cli_helpers import SPATIALVLM

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([SPATIALVLM, "bench", "--dir", str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env) as process:
        seen = []
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("## 1. first section"):
                still_running = process.poll() is None and not go.exists()
                go.touch()
        rest = process.wait(timeout=60)
    assert rest == 0 and still_running, seen
    assert seen[0] == "== other (1/2, threads: 1)" and "== sections (2/2, threads: 1)" in seen
    assert "## 1. first section 1" in seen  # the script saw OMP_NUM_THREADS
    assert any(re.fullmatch(r"== sections done in \d+ s", line) for line in seen)
