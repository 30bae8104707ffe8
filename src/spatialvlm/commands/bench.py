"""``spatialvlm bench``: run the benchmark scripts of a source checkout (``benchmarks/bench_*.py``).

    spatialvlm bench --list
    spatialvlm bench memory selection --quick

Each script prints absolute times and the ratios its targets are stated in, measured side by side
in one run, section by section as it goes; ``make bench`` runs them all. Threads: ``OMP_NUM_THREADS``
(default 2, as the recorded figures). Figures and the commands that made them: docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="run the benchmarks in benchmarks/", description=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench_NAME.py); default all")
    parser.add_argument("--quick", action="store_true", help="pass --quick: shorter runs")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--dir", type=Path, help="benchmarks folder; default the source checkout's")
    parser.set_defaults(run=run)


def benchmarks_dir() -> Path:
    """``benchmarks/`` beside the source tree (editable install), else under the working directory."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if any((root / "benchmarks").glob("bench_*.py")):
            return root / "benchmarks"
    raise FileNotFoundError("no benchmarks/bench_*.py here: run from a source checkout or pass --dir")


def available(folder: Path) -> dict[str, Path]:
    return {path.stem.removeprefix("bench_"): path for path in sorted(folder.glob("bench_*.py"))}


def run(args: argparse.Namespace) -> int:
    scripts = available(args.dir if args.dir is not None else benchmarks_dir())
    if not scripts:
        raise FileNotFoundError(f"no bench_*.py in {args.dir}")
    if args.list:
        print("\n".join(scripts))
        return 0
    unknown = sorted(set(args.names) - set(scripts))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {sorted(scripts)}")
    names = args.names or list(scripts)
    # Unbuffered children: each section header shows as it starts, even through a pipe (make, tee).
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    threads = env.get("OMP_NUM_THREADS") or "2 (default; set OMP_NUM_THREADS to change)"
    for number, name in enumerate(names, 1):
        print(f"== {name} ({number}/{len(names)}, threads: {threads})", flush=True)
        start = time.perf_counter()
        command = [sys.executable, str(scripts[name])] + (["--quick"] if args.quick else [])
        code = subprocess.call(command, env=env)
        print(f"== {name} done in {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            return code
    return 0
