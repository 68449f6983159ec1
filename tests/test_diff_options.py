"""`diff --tolerance` must be a finite number >= 0, refused by click before any work."""

from __future__ import annotations

import time

import pytest

from cli_run import DIGITS, one_error_line, run


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
