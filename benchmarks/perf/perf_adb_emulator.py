"""Figures of the adb path through the real adb client and server against
`amc-tf device emulate` (needs Debian's adb; uses private ports, never 5037):

- `adb shell true` round trip (median of 30), shell v2 and legacy;
- push and pull throughput of a 64 MiB file (sync protocol);
- the same model benchmarked through the emulated device and locally in-process
  (3 runs each): the transport must not change what benchmark_model measures.

Usage: python benchmarks/perf/perf_adb_emulator.py [--model M.tflite]
(default model: the committed digits MobileNetV1, converted to a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True, **kw)


def start_emulator(root: Path, *opts: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(root), "--quiet", *opts],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m = re.search(r"127\.0\.0\.1:(\d+)", proc.stderr.readline())
    if not m:
        proc.kill()
        raise SystemExit("the emulator did not start")
    return proc, f"127.0.0.1:{m.group(1)}"


def shell_rtt(adb: str, serial: str, n: int = 30) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run([adb, "-s", serial, "shell", "true"])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_json(args: list[str]) -> dict:
    proc = subprocess.run([*AMC_TF, "bench", *args, "--json"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench failed: {proc.stderr.strip().splitlines()[-1]}")
    (m,) = json.loads(proc.stdout)["models"]
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    adb = shutil.which("adb")
    if adb is None:
        print("adb not installed (apt-get install adb): nothing measured")
        return 2
    work = Path(tempfile.mkdtemp(prefix="perf_adb_"))
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(free_port())
    emus = []
    try:
        model = args.model
        if model is None:
            run([*AMC_TF, "convert", str(REPO / "tests/data/digits/mobilenet_v1_digits.pth.tar"), "-o",
                 str(work / "digits"), "-q"])
            model = work / "digits" / "model.tflite"
        run([adb, "start-server"])
        v2, s_v2 = start_emulator(work / "v2")
        legacy, s_legacy = start_emulator(work / "legacy", "--legacy-shell")
        emus += [v2, legacy]
        for s in (s_v2, s_legacy):
            run([adb, "connect", s])
        print(f"adb {run([adb, 'version']).stdout.splitlines()[1]}; model {model.name} "
              f"({model.stat().st_size / 1e6:.2f} MB); host {os.cpu_count()} CPUs")
        print(f"adb shell true, median of 30:  v2 {shell_rtt(adb, s_v2):.1f} ms   "
              f"legacy {shell_rtt(adb, s_legacy):.1f} ms")
        blob = work / "blob.bin"
        blob.write_bytes(os.urandom(64 << 20))
        t0 = time.perf_counter()
        run([adb, "-s", s_v2, "push", str(blob), "/data/local/tmp/blob.bin"])
        t1 = time.perf_counter()
        run([adb, "-s", s_v2, "pull", "/data/local/tmp/blob.bin", str(work / "back.bin")])
        t2 = time.perf_counter()
        same = (work / "back.bin").read_bytes() == blob.read_bytes()
        print(f"64 MiB push {64 / (t1 - t0):.0f} MiB/s, pull {64 / (t2 - t1):.0f} MiB/s, round trip identical: {same}")
        bm = work / "benchmark_model"
        run([*AMC_TF, "device", "benchmark-binary", str(bm)])
        emu = bench_json([str(model), "--name", "emu", "--target", "adb", "--serial", s_v2, "--benchmark-binary",
                          str(bm), "--logdir", str(work / "logs")])
        loc = bench_json([str(model), "--name", "local", "--logdir", str(work / "logs")])
        print("Pixel-1 protocol (1 thread, 100 warm-up + 200 timed, 3 runs), mean of run averages:")
        print(f"  through adb + emulated device: {emu['mean_ms']:.3f} ms (std {emu['std_ms']:.3f})")
        print(f"  local in-process LiteRT:       {loc['mean_ms']:.3f} ms (std {loc['std_ms']:.3f})")
        print(f"  ratio emulated/local:          {emu['mean_ms'] / loc['mean_ms']:.3f}")
    finally:
        for p in emus:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        subprocess.run([adb, "kill-server"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
