"""`latency build`'s scratch directory lives beside the output, named
after its process (converters/staging.py, as convert's staging dir), so one left by a build
killed with SIGKILL is removed by the next build; nothing goes to /tmp."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_helpers import install_fake

AMC_TF = Path(sys.executable).with_name("amc-tf")
TINY = ["--grid", "tiny", "--family", "v1", "--input-size", "32", "--no-calibrate", "-q"]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sigkilled_build_leaves_its_scratch_beside_the_output_and_the_next_build_removes_it(tmp_path):
    bm = install_fake("benchmark_model", tmp_path / "build")
    work = tmp_path / "w"
    work.mkdir()
    env = dict(os.environ, FAKE_BM_SLEEP="60", FAKE_BM_SLEEP_AT="3", TMPDIR=str(tmp_path / "tmpdir"))
    (tmp_path / "tmpdir").mkdir()
    proc = subprocess.Popen([str(AMC_TF), "latency", "build", "-o", "lut.json", *TINY, "--benchmark-binary",
                             str(bm)], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    calls = bm.parent / ".fake_bm_calls.jsonl"
    deadline = time.monotonic() + 120
    while not (calls.exists() and len(calls.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [p.name for p in work.iterdir() if p.name.startswith(".lut.json.amc-")]
    assert len(left) == 1 and left[0].startswith(f".lut.json.amc-{proc.pid}-"), sorted(os.listdir(work))
    assert not [p for p in (tmp_path / "tmpdir").iterdir() if p.name.startswith("amc-lut-")]
    # a stale dir of another dead build, and one of a live process (this one), are told apart
    stale = work / f".lut.json.amc-{_dead_pid()}-12345.abcd.tmp"
    stale.mkdir()
    (stale / "layer.tflite").write_bytes(b"x")
    with open(f"/proc/{os.getpid()}/stat", "rb") as fh:
        start = int(fh.read().rsplit(b")", 1)[1].split()[19])
    live = work / f".lut.json.amc-{os.getpid()}-{start}.efgh.tmp"
    live.mkdir()
    res = subprocess.run([str(AMC_TF), "latency", "build", "-o", "lut.json", *TINY, "--benchmark-binary", str(bm),
                          "--json"], cwd=work, env=dict(env, FAKE_BM_SLEEP="0"), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["resumed_points"] >= 0
    assert sorted(p.name for p in work.iterdir()) == sorted(["lut.json", live.name])
    live.rmdir()
