"""One size limit (64 MiB) and the binary check on every log `logs parse`
and `logs summarize` read; summarize refuses (exit 2) naming the file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from cli_run import one_error_line, run


LOG_OK = """STARTING!
Num runs: [10]
Inference timings in us: Init: 1000, First inference: 2000, Warmup (avg): 1500, Inference (avg): 1234.5
"""


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


def test_logs_summarize_refuses_huge_log_fast(tmp_path):
    lg = tmp_path / "lg"
    lg.mkdir()
    (lg / "small_run1.txt").write_text(LOG_OK)
    _sparse(lg / "big_run1.txt", 2 * 2**30)  # 2 GiB, like `truncate -s 2G`
    t0 = time.monotonic()
    proc = run("logs", "summarize", lg)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "big_run1.txt" in line and "2,048 MiB" in line and "64 MiB" in line
    assert proc.stdout == ""


def test_logs_parse_refuses_huge_log_by_size(tmp_path):
    big = tmp_path / "big_run1.txt"
    with open(big, "wb") as fh:  # text, no NUL: only the size limit refuses it
        fh.write(LOG_OK.encode())
        fh.seek(64 * 2**20 + 10)
        fh.write(b"x\n")
    os.truncate(big, 64 * 2**20 + 12)
    with open(big, "r+b") as fh:  # fill the hole so the file is NUL-free text
        fh.seek(len(LOG_OK))
        chunk = b"." * 2**20
        for _ in range(64):
            fh.write(chunk)
    proc = run("logs", "parse", big)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(big) in line and "over the 64 MiB limit" in line


def test_logs_summarize_refuses_binary_log_like_parse(tmp_path):
    lg = tmp_path / "lg"
    lg.mkdir()
    (lg / "m_run1.txt").write_bytes(b"\x1c\0\0\0TFL3" + bytes(200))
    for cmd in (("logs", "summarize", lg), ("logs", "parse", lg / "m_run1.txt")):
        proc = run(*cmd)
        assert proc.returncode == 2, proc.stderr
        assert "m_run1.txt is a binary file (a TFLite model)" in one_error_line(proc)


def test_logs_limit_keeps_real_logs(tmp_path):
    lg = tmp_path / "lg"
    lg.mkdir()
    (lg / "m_run1.txt").write_text(LOG_OK)
    proc = run("logs", "summarize", lg, "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"mean_ms": 1.2345' in proc.stdout

