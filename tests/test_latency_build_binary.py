"""`latency build --benchmark-binary` resolves the binary as `bench` does
(a name with a `/` is a path, `./bm` included; a bare name is looked up on PATH) and refuses a
bad one before any work: no partial file, nothing timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench_helpers import install_fake

AMC_TF = Path(sys.executable).with_name("amc-tf")
TINY = ["--grid", "tiny", "--family", "v1", "--input-size", "32", "--no-calibrate", "--no-probe", "-q"]  # runs counted per grid point


def _build(cwd, *extra, env=None):
    return subprocess.run([str(AMC_TF), "latency", "build", "-o", "lut.json", *TINY, *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def test_dot_slash_binary_is_a_path(tmp_path):
    bm = install_fake("benchmark_model", tmp_path)
    os.rename(bm, tmp_path / "bm")
    proc = _build(tmp_path, "--benchmark-binary", "./bm", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["fingerprint"]["runtime"].startswith("benchmark_model sha256:")
    calls = (tmp_path / ".fake_bm_calls.jsonl").read_text().splitlines()
    assert len(calls) == summary["points"]


def test_bare_name_is_looked_up_on_path_and_refused_before_work(tmp_path):
    bm = install_fake("benchmark_model", tmp_path)
    os.rename(bm, tmp_path / "bm")
    proc = _build(tmp_path, "--benchmark-binary", "bm")  # not on PATH: refused, with the ./bm hint
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "./bm" in lines[0], proc.stderr
    assert not (tmp_path / ".fake_bm_calls.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm", ".fake_bm_calls.jsonl"][:1]
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    work = tmp_path / "w"
    work.mkdir()
    proc = _build(work, "--benchmark-binary", "bm", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (work / "lut.json").exists()


def test_missing_or_non_executable_binary_is_refused_before_work(tmp_path):
    (tmp_path / "plain").write_text("not a program")
    for arg, needle in (("./nothere", "not found"), ("./plain", "not executable")):
        proc = _build(tmp_path, "--benchmark-binary", arg)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
