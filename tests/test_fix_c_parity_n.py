"""Fix c (audit 15): `parity --n` is bounded (1..10000), refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AMC_TF = [sys.executable, "-m", "amc_tf"]
DIGITS = Path(__file__).parent / "data" / "digits" / "mobilenet_v1_digits.pth.tar"


def run(*args, cwd=None, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([*AMC_TF, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


@pytest.mark.parametrize("value", ["100000000", "0", "10001"])
def test_parity_n_bounded(tmp_path, value):
    proc = run("parity", DIGITS, "--input-size", "64", "--n", value, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "--n" in line and "1<=x<=10000" in line
    assert list(tmp_path.iterdir()) == []


def test_parity_n_bound_in_help():
    proc = run("parity", "--help")
    assert proc.returncode == 0 and "1..10000" in proc.stdout
