"""Adb control calls time out. ANDROID_ADB_SERVER_PORT pointing at a socket
that accepts and stays silent, or at the emulated device's own port, makes `bench --target adb`
stop with one line naming the port (exit 2), not hang. The control timeout (60 s) is shortened
to 3 s in the subprocess so the test is quick; adb itself is the real one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from adb_helpers import adb_env, emulators  # noqa: F401  (fixtures)
from adb_helpers import FAKE_TFLITE

AMC_TF_3S = [sys.executable, "-c",
             "import amc_tf.benchmarks.android as a; a.CONTROL_TIMEOUT_S = 3.0; from amc_tf.cli import main; main()"]


@pytest.fixture
def silent_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # accepted, never answered
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


def bench(tmp_path, port, serial):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    bm = tmp_path / "bm"
    bm.write_text("#!/bin/sh\n")
    env = {**__import__("os").environ, "ANDROID_ADB_SERVER_PORT": str(port)}
    t0 = time.monotonic()
    res = subprocess.run([*AMC_TF_3S, "bench", str(model), "--target", "adb", "--serial", serial,
                          "--benchmark-binary", str(bm), "--logdir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    return res, time.monotonic() - t0


def check(res, elapsed, port, tmp_path):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: `adb devices` got no answer within 3 s"), res.stderr
    assert f"ANDROID_ADB_SERVER_PORT={port}" in lines[0] and "is it an adb server" in lines[0]
    assert elapsed < 30
    assert not (tmp_path / "logs").exists()


def test_a_silent_server_port_times_out(adb_env, silent_port, tmp_path):
    res, elapsed = bench(tmp_path, silent_port, "127.0.0.1:5555")
    check(res, elapsed, silent_port, tmp_path)


def test_the_emulators_port_as_server_port_times_out(adb_env, emulators, tmp_path):
    emu = emulators("dev", connect=False)
    res, elapsed = bench(tmp_path, emu.port, emu.serial)
    check(res, elapsed, emu.port, tmp_path)
