"""``spatialvlm bench``: lists and runs the scripts of a benchmarks folder."""

from __future__ import annotations

from pathlib import Path

from spatialvlm.cli import main


def test_list_names_every_script_of_the_repository(capsys):
    expected = sorted(p.stem.removeprefix("bench_") for p in (Path(__file__).parents[2] / "benchmarks").glob("bench_*.py"))
    assert main(["bench", "--list"]) == 0
    assert capsys.readouterr().out.split() == expected


def test_runs_the_named_scripts_with_quick_and_stops_on_failure(tmp_path, capfd):
    (tmp_path / "bench_ok.py").write_text("import sys\nprint('ok', sys.argv[1:])\n")
    (tmp_path / "bench_bad.py").write_text("raise SystemExit(3)\n")
    assert main(["bench", "--dir", str(tmp_path), "ok", "--quick"]) == 0
    assert "ok ['--quick']" in capfd.readouterr().out  # the script runs in a child process
    assert main(["bench", "--dir", str(tmp_path), "bad", "ok"]) == 3


def test_unknown_benchmark_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bench_ok.py").write_text("")
    assert main(["bench", "--dir", str(tmp_path), "nope"]) == 2
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
