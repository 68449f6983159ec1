"""Fix c (audit 16): `diff --tolerance` must be a finite number >= 0, refused by click before any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_diff_tolerance_refused_up_front(tmp_path, value):
    t0 = time.monotonic()
    proc = run("diff", DIGITS, "--input-size", "64", "--tolerance", value, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "--tolerance" in line and "finite number >= 0" in line
    assert "reading" not in proc.stderr  # refused by click, before the model is opened
    assert time.monotonic() - t0 < 60
    assert list(tmp_path.iterdir()) == []
