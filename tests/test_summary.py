"""`logs summarize`: grouping `<model>_run<k>.txt`, the statistics across runs, the
baseline ratio, the output formats, and the seed's Pixel-1 table from the fixtures."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from amc_tf.cli import main
from bench_helpers import FIXTURES, write_runs
from amc_tf.benchmarks.summary import summarize_dir

ROOT = Path(__file__).resolve().parents[1]
PIXEL1 = ROOT / "logs" / "amc-pixel1-2018"  # the seed's ./logs, tracked in the repository


def test_statistics_across_runs(tmp_path):
    write_runs(tmp_path, "a", [1000, 1200, 1100])
    write_runs(tmp_path, "b", [500, 520])
    by = {m.name: m for m in summarize_dir(tmp_path, baseline="a")}
    a, b = by["a"], by["b"]
    assert a.mean_ms == pytest.approx(1.1) and a.std_ms == pytest.approx(0.1)  # sample std (n-1)
    assert (a.min_ms, a.median_ms, a.max_ms) == pytest.approx((1.0, 1.1, 1.2))
    assert [r.avg_ms for r in a.runs] == pytest.approx([1.0, 1.2, 1.1])
    assert b.mean_ms == pytest.approx(0.51) and b.std_ms == pytest.approx(statistics.stdev([0.5, 0.52]))
    assert b.ratio_to_baseline == pytest.approx(0.51 / 1.1) and a.ratio_to_baseline == 1.0
    assert a.complete and b.complete


def test_failed_and_missing_runs_are_named_not_zeroed(tmp_path):
    write_runs(tmp_path, "m", [1000, None])  # run 2 failed
    write_runs(tmp_path, "m", [1400], start_k=4)  # run 3 missing
    (m,) = summarize_dir(tmp_path)
    assert [(r.k, r.status) for r in m.runs] == [(1, "ok"), (2, "failed"), (3, "missing"), (4, "ok")]
    assert m.mean_ms == pytest.approx(1.2) and m.n_ok == 2 and not m.complete
    assert any("run 2 failed" in p and "Didn't find op" in p for p in m.problems)
    assert any(p.startswith("run 3 missing") for p in m.problems)


def test_manifest_says_which_runs_are_missing(tmp_path):
    write_runs(tmp_path, "m", [1000, 1010])
    (tmp_path / "m.bench.json").write_text(json.dumps({
        "expected_runs": 3,
        "runs": [{"k": 1, "status": "ok"}, {"k": 2, "status": "ok"},
                 {"k": 3, "status": "lost", "error": "device S1 lost during run 3"}],
    }))
    (m,) = summarize_dir(tmp_path)
    assert [(r.k, r.status) for r in m.runs] == [(1, "ok"), (2, "ok"), (3, "lost")]
    assert m.runs[2].error == "device S1 lost during run 3"
    assert m.mean_ms == pytest.approx(1.005) and not m.complete


@pytest.mark.parametrize("fmt", ["text", "json", "csv", "markdown"])
def test_cli_formats(tmp_path, fmt):
    write_runs(tmp_path, "base", [2000, 2000, 2000])
    write_runs(tmp_path, "small", [1000, 1100, 900])
    args = ["logs", "summarize", str(tmp_path), "--baseline", "base"] + ([] if fmt == "text" else [f"--{fmt}"])
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    out = res.output
    if fmt == "json":
        d = json.loads(out)
        small = next(m for m in d["models"] if m["name"] == "small")
        assert small["mean_ms"] == pytest.approx(1.0) and small["ratio_to_baseline"] == pytest.approx(0.5)
        assert [r["avg_ms"] for r in small["runs"]] == pytest.approx([1.0, 1.1, 0.9])
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 6 and {r["model"] for r in rows} == {"base", "small"}
        assert [r["avg_ms"] for r in rows if r["model"] == "small"] == ["1.0000", "1.1000", "0.9000"]
        assert {r["ratio_to_baseline"] for r in rows if r["model"] == "small"} == {"0.5000"}
    elif fmt == "markdown":
        assert "| Model | Latency (ms) |" in out
        assert "| small | 1.00 | 0.100 | 0.90 | 1.00 | 1.10 | 3/3 | 1.000, 1.100, 0.900 | 0.500 |" in out
    else:
        line = next(l for l in out.splitlines() if l.startswith("small"))
        assert line.split() == ["small", "1.00", "0.10", "0.90", "1.00", "1.10", "3/3", "0.500"]


def test_cli_incomplete_exits_3_and_still_prints(tmp_path):
    write_runs(tmp_path, "m", [1000, None, 1000])
    res = CliRunner().invoke(main, ["logs", "summarize", str(tmp_path)])
    assert res.exit_code == 3
    assert "m: run 2 failed" in res.output and " 1.00 " in res.output


@pytest.mark.parametrize("args,msg", [
    (["--json", "--csv"], "choose one of"),
    (["--baseline", "nope"], "--baseline 'nope' has no logs"),
])
def test_cli_bad_flags_exit_2(tmp_path, args, msg):
    write_runs(tmp_path, "m", [1000])
    res = CliRunner().invoke(main, ["logs", "summarize", str(tmp_path)] + args)
    assert res.exit_code == 2 and msg in res.output


def test_cli_empty_dir_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["logs", "summarize", str(tmp_path)])
    assert res.exit_code == 2 and "no <model>_run<k>.txt logs" in res.output


# The seed README's Latency column (ms) and what the 2018 logs give.
SEED_LATENCY_MS = {"mobilenet": 123, "0.75mobilenet": 72.5, "0.5flops": 68.9, "0.5time": 63.2}


@pytest.mark.parametrize("model", sorted(SEED_LATENCY_MS))
def test_the_repositorys_pixel1_logs_reproduce_the_seed_table(model):
    by = {m.name: m for m in summarize_dir(PIXEL1, baseline="mobilenet")}
    m = by[model]
    assert m.n_ok == 3 and m.complete
    if model == "mobilenet":
        # The logs do not support "123" as a mean: run 3 (127.2 ms) pulls it to 124.5.
        # The published figure matches the median of the runs (123.2) instead (see docs).
        assert round(m.mean_ms, 1) == 124.5
        assert round(m.median_ms) == SEED_LATENCY_MS[model]
    else:
        assert round(m.mean_ms, 1) == SEED_LATENCY_MS[model]


def test_pixel1_markdown_table_from_the_checkout():
    # as a user types it in a clone: the relative path, from the checkout's top
    proc = subprocess.run([sys.executable, "-m", "amc_tf", "logs", "summarize", "logs/amc-pixel1-2018", "--markdown",
                           "--baseline", "mobilenet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "Model" not in line]
    assert rows == [
        "| 0.5flops | 68.9 | 0.82 | 68.3 | 68.4 | 69.8 | 3/3 | 68.31, 68.45, 69.80 | 0.553 |",
        "| 0.5time | 63.2 | 0.21 | 63.0 | 63.2 | 63.4 | 3/3 | 63.42, 63.02, 63.18 | 0.508 |",
        "| 0.75mobilenet | 72.5 | 0.54 | 72.1 | 72.2 | 73.1 | 3/3 | 73.08, 72.13, 72.16 | 0.582 |",
        "| mobilenet | 124.5 | 2.38 | 123.0 | 123.2 | 127.2 | 3/3 | 123.16, 123.03, 127.21 | 1.000 |"]


def test_pixel1_logs_are_the_files_their_readme_names_and_are_not_git_ignored():
    import hashlib

    listed = dict(re.findall(r"^\| (\S+_run\d\.txt) \| ([0-9a-f]{64}) \|$", (PIXEL1 / "README.md").read_text(),
                             flags=re.M))
    files = sorted(p.name for p in PIXEL1.glob("*.txt"))
    assert sorted(listed) == files and len(files) == 12
    for name in files:
        assert hashlib.sha256((PIXEL1 / name).read_bytes()).hexdigest() == listed[name], name
    # a clone gets them: .gitignore ignores the rest of logs/, not this folder
    proc = subprocess.run(["git", "check-ignore", "--no-index", *(f"logs/amc-pixel1-2018/{f}" for f in files),
                           "logs/README.md", "logs/amc-pixel1-2018/README.md"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout  # 1: none of them is ignored
    mine = subprocess.run(["git", "check-ignore", "--no-index", "-q", "logs/20261207-120000/m_run1.txt"], cwd=ROOT)
    assert mine.returncode == 0  # bench's own log folders stay out of the repository
