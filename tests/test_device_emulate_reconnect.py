"""The real adb server reconnects by itself to an emulated device that was
restarted on the same port (its reconnect CNXN carries checksum 0, which the device accepts)."""

from __future__ import annotations

import re
import subprocess
import time

from adb_helpers import adb_env, adb_server  # noqa: F401  (fixtures)
from adb_helpers import AMC_TF, adb, free_port


def start(root, port, log):
    proc = subprocess.Popen([*AMC_TF, "device", "emulate", "--port", str(port), "--root", str(root),
                             "--max-seconds", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))
    end = time.monotonic() + 60
    while "listening on" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < end, log.read_text()
        time.sleep(0.05)
    return proc


def state(serial):
    for line in adb("devices").stdout.splitlines():
        if line.startswith(serial + "\t"):
            return line.split("\t")[1]
    return None


def test_restarted_emulator_is_reconnected_by_the_real_adb_server(adb_server, tmp_path):
    port = free_port()
    serial = f"127.0.0.1:{port}"
    root = tmp_path / "root"
    first = start(root, port, tmp_path / "first.log")
    second = None
    try:
        assert "connected" in adb("connect", serial).stdout
        assert adb("-s", serial, "shell", "echo one").stdout.strip() == "one"
        first.kill()  # the device goes away without a word
        first.wait(10)
        second = start(root, port, tmp_path / "second.log")
        end = time.monotonic() + 45  # no `adb connect`: the server's own reconnect must get through
        while state(serial) != "device":
            assert time.monotonic() < end, (state(serial), (tmp_path / "second.log").read_text())
            time.sleep(0.25)
        assert adb("-s", serial, "shell", "echo two").stdout.strip() == "two"
        log = (tmp_path / "second.log").read_text()
        assert not re.search(r"checksum", log), log
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
