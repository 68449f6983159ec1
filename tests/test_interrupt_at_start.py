"""Ctrl-C in the first seconds of a command, as a user types it: whatever it is doing (importing
numpy, click or TensorFlow, reading the checkpoint, starting the reference worker) the only
output is the one interrupt line, exit 130, nothing left behind. (From 0.3 s on: in the first
tens of milliseconds Python itself is still starting, before any code of amc-tf runs.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cli_run import DIGITS

LINE = "error: interrupted (SIGINT); nothing half-written was kept\n"


def _interrupt_after(delay: float, cwd, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "AMC_TF_VERBOSE")}
    proc = subprocess.Popen([sys.executable, "-m", "amc_tf", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.parametrize("delay", [0.3, 0.35, 0.4, 0.5, 0.6, 1.0, 1.5, 2.5, 5.0])
def test_convert_q_interrupted_early_prints_one_line(tmp_path, delay):
    code, out, err = _interrupt_after(delay, tmp_path, "convert", DIGITS, "-o", "out", "--input-size", "64", "-q")
    if code == 0 and delay >= 2.5:  # a fast machine converts the digits model in a few seconds
        pytest.skip(f"convert finished within {delay}s")
    # below that a 0 would be a lost Ctrl-C (the reference worker's spawn once ignored SIGINT)
    assert (code, out, err) == (130, "", LINE)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_parity_interrupted_while_importing_tensorflow(tmp_path):
    code, out, err = _interrupt_after(2.0, tmp_path, "parity", DIGITS, "--input-size", "64", "--limit", "2", "-q")
    assert (code, out, err) == (130, "", LINE)
