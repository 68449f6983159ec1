"""The log parser runs in linear time and bounded memory on any input: pathological lines (the
shapes that made the old regexes backtrack), logs of millions of short lines, and run numbers
in file names that would size a loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amc_tf.benchmarks import loglines
from amc_tf.benchmarks.logparse import parse_text
from cli_run import one_error_line, run
from hostile import run_measured

LINE = 300_000  # characters: the old parser needed 63 s for one such line

# Fragments of the log formats the parser knows, and characters its rules look for: repeated,
# they make the inputs on which a backtracking regex goes quadratic.
FRAGMENTS = ["count=", "count=1", "avg=", "1", "1.", ".5", "e", "E", "e+", "999", " ", "\t", ":", "=", "(", ")",
             "[", "]", "a", "_", "Failed to ", "failed to prepar", "Inference timings in us: ", "Init",
             "Initialized session in ", "INFO: [", "native : ", "07-21 10:20:30.123  1234  1250 I ", "I/", "\x1b[",
             "^[[", "Peak memory footprint (MB): init=", " overall=", "Running benchmark for ", "at least ",
             "==", "BENCHMARK RESULTS", "Inference (avg):", " ms", "Overall peak memory footprint (MB) via periodic monitoring:"]


def _timed_parse(text: str) -> float:
    t0 = time.perf_counter()
    parse_text(text)
    return time.perf_counter() - t0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.lists(st.sampled_from(FRAGMENTS), max_size=4),
       unit=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3),
       suffix=st.lists(st.sampled_from(FRAGMENTS), max_size=3))
def test_any_long_line_parses_in_linear_time(prefix, unit, suffix):
    body = "".join(unit)
    line = "".join(prefix) + body * (LINE // len(body)) + "".join(suffix)
    # the old regexes took tens of seconds on such lines; linear parsing takes milliseconds
    assert _timed_parse(line) < 1.0
    assert _timed_parse("Running benchmark for at least 5 iterations\n" + line + "\n" + line) < 2.0


@pytest.mark.parametrize("line", [
    "Inference timings in us: a" + " " * LINE,  # the summary item regex (lazy name, spaces)
    "x" * LINE,  # the failure-reason regex (.*failed to prepare.*)
    "count=5 " + "a" * LINE,  # key=value on a long word
    "Initialized session in " + "1" * LINE,  # an ambiguous number pattern
    "07-21 10:20:30.123  1234  1250 I " + " " * LINE,  # the logcat prefix
    "1e1" * (LINE // 3),  # numbers with exponents
], ids=["summary", "fail-reason", "key-value", "number", "logcat", "exponents"])
def test_the_regexes_that_backtracked_are_linear(line):
    assert _timed_parse(line) < 1.0


def test_lines_are_cut_and_records_capped():
    lines = list(loglines.iter_lines(["a" * 10_000 + "\nb\r\nc\rd"]))
    assert [len(x) for x in lines] == [loglines.MAX_LINE_CHARS, 1, 1, 1]
    errors = "\n".join(f"ERROR: Failed to thing {i}" for i in range(5 * loglines.MAX_KEPT))
    r = parse_text(errors)
    assert r.status == "failed" and len(r.details) == loglines.MAX_KEPT


@pytest.mark.parametrize("noise", ["noise\n", "\x1b[0m\n", "INFO: \n", "count=1 avg=2\n"])
def test_a_log_of_too_many_lines_is_no_result(noise):
    good = ("Running benchmark for at least 5 iterations\ncount=5 avg=10\n"
            "Running benchmark for at least 50 iterations\ncount=50 avg=12.5\n")
    assert parse_text(good).inference_avg_us == 12.5
    r = parse_text(noise * (loglines.MAX_LINES + 1) + good)
    assert r.status == "no_result" and r.inference_avg_us is None
    assert f"over {loglines.MAX_LINES:,} non-blank lines" in r.error


def test_a_64_mib_log_of_short_lines_stays_small_and_fast(tmp_path):
    """Peak memory and time of a real process parsing a log just under the 64 MiB limit."""
    for name, unit in (("newlines", b"\n"), ("short", b"a\n"), ("crlf", b"\r\n")):
        log = tmp_path / f"{name}.txt"
        with open(log, "wb") as fh:
            fh.write(unit * ((loglines.MAX_LOG_BYTES - 1) // len(unit)))
        code = ("import sys, time; from amc_tf.benchmarks.logparse import parse_file; "
                "t = time.perf_counter(); r = parse_file(sys.argv[1]); print(time.perf_counter() - t, r.status)")
        # run_measured: the parser's own peak RSS (a child forked from this session would report
        # the session's peak)
        proc = run_measured([sys.executable, "-c", code, str(log)], env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr
        seconds, status = proc.stdout.split()
        assert status == "no_result"
        assert proc.max_rss_mb < 400, (name, proc.max_rss_mb)  # the old parser reached 2.9 GB
        assert float(seconds) < 60, (name, seconds)
        log.unlink()


def test_summarize_does_not_trust_the_run_number_in_a_file_name(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = ("Running benchmark for at least 5 iterations\ncount=5 avg=10\n"
            "Running benchmark for at least 50 iterations\ncount=50 avg=12.5\n")
    (logs / "m_run1.txt").write_text(good)
    (logs / "m_run99999999999.txt").write_text(good)
    (logs / ("m_run" + "9" * 200 + ".txt")).write_text(good)
    t0 = time.perf_counter()
    proc = run("logs", "summarize", logs, "--json")
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 3, proc.stderr  # the stray files are named as problems
    assert "Traceback" not in proc.stderr
    import json

    (m,) = json.loads(proc.stdout)["models"]
    assert [r["k"] for r in m["runs"]] == [1] and m["runs"][0]["avg_ms"] == 0.0125
    assert len(m["ignored"]) == 2
    assert any("not 1..1000" in p for p in m["problems"])


def test_run_numbers_are_read_within_bounds():
    assert loglines.run_number("1") == 1
    assert loglines.run_number(str(loglines.MAX_REPEATS)) == loglines.MAX_REPEATS
    for bad in ("0", str(loglines.MAX_REPEATS + 1), "99999999999", "9" * 5000, "١"):
        assert loglines.run_number(bad) is None


def test_repeats_over_the_run_number_limit_are_refused():
    proc = run("bench", "nothing.tflite", "--repeats", "1001")
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "--repeats must be at most 1000" in line
