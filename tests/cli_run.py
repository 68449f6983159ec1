"""Run the real `amc-tf` as a subprocess (exit codes, stderr lines and leftovers are what the
tests check, which an in-process runner cannot see) and read its one `error:` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AMC_TF = [sys.executable, "-m", "amc_tf"]
DIGITS = Path(__file__).parent / "data" / "digits" / "mobilenet_v1_digits.pth.tar"


def run(*args, cwd=None, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([*AMC_TF, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]
