"""`bench --force` replaces old logs only once the new runs have finished:
a SIGINT during the new run 1 leaves the earlier complete logs exactly as they were (and no
staging folder); an interrupted or refused first bench into a new logdir leaves no empty folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(200)
BM = """#!/bin/sh
d=$(dirname "$0")
if [ -f "$d/slow" ]; then touch "$d/started"; sleep 300; fi
a=$(cat "$d/avg")
echo "STARTING!"
echo "count=3 first=110 curr=100 min=95 max=110 avg=$a std=4"
echo ""
echo "Inference timings in us: Init: 50, First inference: 110, Warmup (avg): 104, Inference (avg): $a"
"""


def setup(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    bm = tmp_path / "bin" / "bm"
    bm.parent.mkdir()
    bm.write_text(BM)
    bm.chmod(0o755)
    (bm.parent / "avg").write_text("100.5")
    return model, bm


def bench(model, bm, logdir, *extra):
    return [*AMC_TF, "bench", str(model), "--benchmark-binary", str(bm), "--logdir", str(logdir),
            "--warmup", "1", "--runs", "3", *extra]


def interrupt(cmd, started, cwd):
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_interrupted_force_run_keeps_the_old_logs(tmp_path):
    model, bm = setup(tmp_path)
    logdir = tmp_path / "logs"
    res = subprocess.run(bench(model, bm, logdir), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    before = {p.name: p.read_bytes() for p in logdir.iterdir()}
    assert {"m_run1.txt", "m_run2.txt", "m_run3.txt", "m.bench.json"} <= set(before)

    (bm.parent / "slow").touch()
    rc, err = interrupt(bench(model, bm, logdir, "--force"), bm.parent / "started", tmp_path)
    assert rc == 130, err
    assert {p.name: p.read_bytes() for p in logdir.iterdir()} == before  # nothing lost, no .replaced-* left

    (bm.parent / "slow").unlink()
    (bm.parent / "avg").write_text("200.5")
    res = subprocess.run(bench(model, bm, logdir, "--force"), cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in logdir.iterdir()) == sorted(before)
    assert all("avg=200.5" in (logdir / f"m_run{k}.txt").read_text() for k in (1, 2, 3))


def test_interrupted_first_bench_leaves_no_empty_logdir(tmp_path):
    model, bm = setup(tmp_path)
    (bm.parent / "slow").touch()
    rc, err = interrupt(bench(model, bm, tmp_path / "logs"), bm.parent / "started", tmp_path)
    assert rc == 130, err
    assert not (tmp_path / "logs").exists()


def test_refused_model_leaves_no_empty_logdir(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)  # not loadable by LiteRT: refused once the run starts
    res = subprocess.run([*AMC_TF, "bench", str(model), "--logdir", str(tmp_path / "logs")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines()[-1].startswith(f"error: {model}: not a loadable .tflite")
    assert not (tmp_path / "logs").exists()
