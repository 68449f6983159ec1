"""Helpers for the tests that drive the real adb client and server against
`amc-tf device emulate`: each test gets its own adb server port (never 5037) and its own
emulated devices on free loopback ports, and stops both afterwards."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ADB = shutil.which("adb")
NO_ADB = "the real adb client is not installed (apt-get install adb; .ci/run installs it)"
AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(200)
LOG_LINES = ("STARTING!\n"
             "Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding "
             "100000 seconds.\n"
             "count=5 first=110 curr=100 min=95 max=110 avg=100.5 std=4\n\n"
             "Inference timings in us: Init: 50, First inference: 110, Warmup (avg): 104, Inference (avg): 100.5\n")


def recv_from(data: bytes):
    """A `recv_exact(n)` over a byte string (EOFError past its end), as the wire readers take."""
    buf = bytearray(data)

    def recv_exact(n):
        if len(buf) < n:
            raise EOFError
        out = bytes(buf[:n])
        del buf[:n]
        return out

    return recv_exact


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adb(*args, timeout=60, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([ADB, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"adb {' '.join(args)} -> {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


class Emulator:
    """`amc-tf device emulate --port 0` in a subprocess; `.serial` is 127.0.0.1:PORT."""

    def __init__(self, root: Path, *options: str):
        self.root = Path(root)
        self.proc = subprocess.Popen([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(root), "--quiet",
                                      *options], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"emulator did not start: {line}{self.proc.stderr.read()}")
        self.port = int(m.group(1))
        self.serial = f"127.0.0.1:{self.port}"
        self.tmp = self.root / "data/local/tmp"

    def connect(self) -> str:
        return adb("connect", self.serial).stdout.strip()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def adb_env(monkeypatch, tmp_path):
    """The environment of a private adb server on a free port (ANDROID_ADB_SERVER_PORT), with
    its own HOME (its RSA key lands in tmp_path/home/.android, not the user's); whatever
    server runs there at the end is killed."""
    if ADB is None:
        pytest.skip(NO_ADB)
    port = free_port()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for var in ("ANDROID_SERIAL", "ADB", "ANDROID_SDK_HOME", "ANDROID_USER_HOME", "ADB_VENDOR_KEYS"):
        monkeypatch.delenv(var, raising=False)
    yield port
    adb("kill-server", check=False)


@pytest.fixture
def adb_server(adb_env):
    """adb_env with the server started."""
    adb("start-server")
    return adb_env


@pytest.fixture
def emulators(tmp_path):
    started = []

    def start(name="dev", *options, connect=True):
        emu = Emulator(tmp_path / name, *options)
        started.append(emu)
        if connect:
            emu.connect()
        return emu

    yield start
    for emu in started:
        emu.stop()


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def wait_for(path: Path, timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def tiny_tflite(path: Path) -> Path:
    """A real two-conv float model (16x16x3 -> 4), built with TensorFlow."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(tf.random.stateless_normal([3, 3, 3, 8], seed=[5, 6]))
            self.w2 = tf.Variable(tf.random.stateless_normal([1, 1, 8, 4], seed=[7, 8]))

        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def __call__(self, x):
            return tf.reduce_mean(tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, self.w1, 2, "SAME")), self.w2, 1, "SAME"),
                                  axis=[1, 2])

    m = Tiny()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(conv.convert())
    return path
