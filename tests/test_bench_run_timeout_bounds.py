"""A huge run timeout, given or derived, no longer overflows poll().
A --run-timeout above 7 days is refused before any work (one line, exit 2, no logdir);
a derived one (huge --warmup/--runs) is clamped to 7 days."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amc_tf.benchmarks.protocol import MAX_RUN_TIMEOUT_S, Protocol, ProtocolError

AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(200)
LOG = ("STARTING!\ncount=3 first=110 curr=100 min=95 max=110 avg=100.5 std=4\n\n"
       "Inference timings in us: Init: 50, First inference: 110, Warmup (avg): 104, Inference (avg): 100.5\n")


def run(*args, cwd):
    return subprocess.run([*AMC_TF, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("target", ["local", "adb"])
def test_huge_run_timeout_is_refused_before_any_work(tmp_path, target):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    extra = ["--target", "adb", "--benchmark-binary", model] if target == "adb" else []
    res = run("bench", model, "--run-timeout", 2200000, *extra, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == ["error: --run-timeout must be at most 604800 seconds (7 days), got 2.2e+06"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]  # no logs/ folder


def test_derived_timeout_is_clamped_and_the_run_goes_through(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    bm = tmp_path / "bm"
    bm.write_text("#!/bin/sh\ncat <<'EOF'\n" + LOG + "EOF\n")
    bm.chmod(0o755)
    res = run("bench", model, "--runs", 1500000, "--repeats", 1, "--json", "--benchmark-binary", bm,
              "--logdir", tmp_path / "logs", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)["runs"][0]
    assert rec["runner"]["run_timeout_s"] == MAX_RUN_TIMEOUT_S == 604800
    assert rec["runs"][0]["status"] == "ok"


def test_protocol_bounds():
    assert Protocol(runs=1500000).timeout_s() == MAX_RUN_TIMEOUT_S
    assert Protocol().timeout_s() == 720
    assert Protocol(run_timeout=MAX_RUN_TIMEOUT_S).timeout_s() == MAX_RUN_TIMEOUT_S
    with pytest.raises(ProtocolError):
        Protocol(run_timeout=MAX_RUN_TIMEOUT_S + 1)
