"""What a shell session started on the emulated device (and what that
started in turn) dies with the emulator, even when the emulator is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from adb_helpers import adb_env, adb_server, emulators  # noqa: F401  (fixtures)
from adb_helpers import ADB, wait_for


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_session_processes_die_with_the_emulator(adb_server, emulators, how):
    emu = emulators("dev")
    # a grandchild of the session's shell (as the benchmark wrapper's python is), spinning the CPU
    cmd = ("sh -c 'while :; do :; done' & echo $! > /data/local/tmp/spin.pid; "
           "sleep 300 & echo $! > /data/local/tmp/sleep.pid; wait")
    client = subprocess.Popen([ADB, "-s", emu.serial, "shell", cmd], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(emu.tmp / "sleep.pid") and wait_for(emu.tmp / "spin.pid")
        time.sleep(0.3)
        pids = [int((emu.tmp / f).read_text()) for f in ("spin.pid", "sleep.pid")]
        assert all(alive(p) for p in pids)
        emu.proc.send_signal(how)
        emu.proc.wait(10)
        end = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), f"still running after the emulator died: {pids}"
    finally:
        client.kill()
        client.wait(10)
        for f in ("spin.pid", "sleep.pid"):
            try:
                os.kill(int((emu.tmp / f).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
