"""`parity --limit` (old spelling --n, still accepted) is bounded (1..10000), refused before any
work; the error names the option by its current name."""

from __future__ import annotations

import pytest

from cli_run import DIGITS, one_error_line, run


@pytest.mark.parametrize("spelling", ["--limit", "--n"])
@pytest.mark.parametrize("value", ["100000000", "0", "10001"])
def test_parity_n_bounded(tmp_path, value, spelling):
    proc = run("parity", DIGITS, "--input-size", "64", spelling, value, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "'--limit'" in line and "1<=x<=10000" in line
    assert list(tmp_path.iterdir()) == []


def test_parity_n_bound_in_help():
    proc = run("parity", "--help")
    assert proc.returncode == 0 and "1..10000" in proc.stdout
