"""Every benchmark run has a timeout (issue 11, item 6): derived from the protocol or set
with --run-timeout; a run beyond it is stopped and reported as timed out, the finished
runs are kept, and the exit code is 3. Run as real subprocesses: a hang is a process matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_helpers import install_fake
from amc_tf.benchmarks.protocol import PIXEL1, Protocol, ProtocolError

AMC = Path(sys.executable).parent / "amc-tf"


def run(*args, env=None, timeout=120):
    return subprocess.run([str(AMC), *map(str, args)], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "models" / "mnet.tflite"
    p.parent.mkdir()
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(200))
    return p


def test_timeout_is_derived_from_the_protocol():
    assert PIXEL1.timeout_s() == 120 + 2 * 300 * 1.0  # 12 minutes per Pixel-1 run (was a fixed hour on adb)
    assert Protocol(warmup=0, runs=1).timeout_s() == 122
    assert Protocol(run_timeout=5).timeout_s() == 5
    with pytest.raises(ProtocolError, match="--run-timeout"):
        Protocol(run_timeout=0)


def _check_timed_out(res, logdir: Path, slow_k: int, repeats: int = 3, partial: bool = True):
    assert res.returncode == 3, res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: ") and f"run {slow_k} timed_out" in last, res.stderr
    out = json.loads(res.stdout)
    statuses = [r["status"] for r in out["runs"][0]["runs"]]
    assert statuses == ["timed_out" if k == slow_k else "ok" for k in range(1, repeats + 1)]
    assert sorted(p.name for p in logdir.glob("mnet_run?.txt")) == [f"mnet_run{k}.txt" for k in range(1, repeats + 1)
                                                                    if k != slow_k]
    if partial:  # what it printed before the hang is kept
        kept = logdir / f"mnet_run{slow_k}.partial.txt"
        assert kept.is_file() and "Loaded model" in kept.read_text()
    (model_summary,) = out["models"]
    assert model_summary["n_ok"] == repeats - 1  # the finished runs still make the summary


def test_local_benchmark_binary_run_is_stopped_at_the_timeout(model, tmp_path):
    bm = install_fake("benchmark_model", tmp_path / "bin")
    t0 = time.monotonic()
    res = run("bench", model, "--benchmark-binary", bm, "--warmup", 1, "--runs", 2, "--run-timeout", 1,
              "--logdir", tmp_path / "logs", "--json", env={"FAKE_BM_SLEEP": "30", "FAKE_BM_SLEEP_AT": "2"})
    assert time.monotonic() - t0 < 25  # not the 30 s sleep
    _check_timed_out(res, tmp_path / "logs", slow_k=2)


def test_adb_run_is_stopped_at_the_timeout(model, tmp_path):
    from test_bench_android import FakeAdb

    root = tmp_path / "adbroot"
    install_fake("adb", root / "bin")
    fa = FakeAdb(root)
    fa.devices(S1={"state": "device", "props": {"ro.product.model": "Pixel"}})
    bm = install_fake("benchmark_model", tmp_path / "build")
    env = {"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", "FAKE_ADB_ROOT": str(root),
           "FAKE_BM_SLEEP": "4", "FAKE_BM_SLEEP_AT": "3"}
    res = run("bench", model, "--target", "adb", "--benchmark-binary", bm, "--warmup", 1, "--runs", 2,
              "--run-timeout", 1.5, "--logdir", tmp_path / "logs", "--json", env=env)
    # the stand-in adb passes output on only when the command ends: no partial log here
    _check_timed_out(res, tmp_path / "logs", slow_k=3, partial=False)


def test_inprocess_run_is_stopped_at_the_timeout(tmp_path):
    """The in-process runner runs each run in a forked child, so a run that will not finish
    (here 10 million invocations) is killed at the timeout and reported."""
    tiny = _tiny_tflite(tmp_path)
    t0 = time.monotonic()
    res = run("bench", tiny, "--warmup", 0, "--runs", 10_000_000, "--repeats", 1, "--run-timeout", 2,
              "--logdir", tmp_path / "logs", "--json")
    assert time.monotonic() - t0 < 60
    assert res.returncode == 3 and "timed_out" in res.stderr.splitlines()[-1], res.stderr
    (rec,) = json.loads(res.stdout)["runs"]
    assert rec["runs"][0]["status"] == "timed_out" and "2 s" in rec["runs"][0]["error"]


def _tiny_tflite(tmp_path: Path) -> Path:
    import tensorflow as tf

    w = tf.Variable(tf.random.stateless_normal([3, 3, 3, 4], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.reduce_mean(tf.nn.conv2d(x, w, 1, "SAME"), axis=[1, 2])

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    path = tmp_path / "tiny.tflite"
    path.write_bytes(conv.convert())
    return path
