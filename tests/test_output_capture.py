"""What a benchmark binary or a device prints is captured with a cap (head and tail kept, the
middle counted and dropped), so a flood cannot fill the host's memory, and it is parsed by the
linear parser, so a pathological line cannot hang the host."""

from __future__ import annotations

import sys
import time

from amc_tf.benchmarks.capture import MAX_OUTPUT_BYTES, CappedBuffer, run_capped
from amc_tf.benchmarks.local import run_binary
from amc_tf.benchmarks.logparse import parse_text
from amc_tf.benchmarks.protocol import Protocol

RESULT = ("INFO: Running benchmark for at least 3 iterations and at least 0 seconds\n"
          "INFO: count=3 first=2100 curr=2000 min=2000 max=2100 avg=2033.3 std=47\n"
          "INFO: Running benchmark for at least 20 iterations and at least 0 seconds\n"
          "INFO: count=20 first=2010 curr=1990 min=1980 max=2020 avg=2001.5 std=11\n"
          "INFO: Inference timings in us: Init: 5000, First inference: 2100, Warmup (avg): 2033.3, "
          "Inference (avg): 2001.5\n")


def test_capped_buffer_keeps_head_and_tail_and_counts_the_rest():
    buf = CappedBuffer(max_bytes=1000, tail=100)
    data = bytes(range(256)) * 40  # 10,240 bytes
    for i in range(0, len(data), 333):
        buf.write(data[i:i + 333])
    value = buf.getvalue()
    assert value.startswith(data[:900]) and value.endswith(data[-100:])
    assert buf.dropped == len(data) - 1000
    assert f"{len(data) - 1000:,} bytes of output dropped".encode() in value
    small = CappedBuffer(max_bytes=1000, tail=100)
    small.write(b"abc")
    assert small.getvalue() == b"abc" and small.dropped == 0


def _fake_binary(tmp_path, body: str):
    exe = tmp_path / "benchmark_model"
    exe.write_text(f"#!{sys.executable} -S\nimport sys\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_a_flooding_binary_is_capped_and_its_result_still_read(tmp_path):
    flood_mib = 96
    exe = _fake_binary(tmp_path, f"""
chunk = ("noise " * 10922 + "\\n").encode()  # 64 KiB lines
for _ in range({flood_mib} * 16):
    sys.stderr.buffer.write(chunk)
sys.stderr.write({RESULT!r})
""")
    t0 = time.perf_counter()
    out, code = run_binary(exe, tmp_path / "m.tflite", Protocol(warmup=3, runs=20, repeats=1))
    assert time.perf_counter() - t0 < 120
    assert code == 0
    assert len(out) <= MAX_OUTPUT_BYTES + 200  # not the 96 MiB printed
    assert "bytes of output dropped here" in out
    r = parse_text(out)
    assert r.ok and r.inference_avg_us == 2001.5 and r.count == 20


def test_a_pathological_line_from_a_binary_does_not_hang_the_parse(tmp_path):
    exe = _fake_binary(tmp_path, f"""
sys.stderr.write("Inference timings in us: a" + " " * 300000 + "\\n")
sys.stderr.write("x" * 300000 + "failed to prepar\\n")
sys.stderr.write({RESULT!r})
""")
    out, code = run_binary(exe, tmp_path / "m.tflite", Protocol(warmup=3, runs=20, repeats=1))
    t0 = time.perf_counter()
    r = parse_text(out)
    assert time.perf_counter() - t0 < 1.0
    assert r.ok and r.inference_avg_us == 2001.5


def test_a_silent_child_is_killed_at_the_timeout():
    t0 = time.perf_counter()
    got = run_capped([sys.executable, "-S", "-c", "import sys, time; print('started', flush=True); time.sleep(60)"],
                     timeout=1.0, new_session=True)
    assert got.timed_out and got.returncode is None
    assert got.stdout.startswith(b"started")
    assert time.perf_counter() - t0 < 30


def test_both_streams_are_capped_separately():
    got = run_capped([sys.executable, "-S", "-c",
                      "import sys; sys.stdout.write('o' * 3000000); sys.stderr.write('e' * 3000000)"],
                     timeout=60, max_bytes=1 << 20)
    assert got.returncode == 0
    for stream, ch in ((got.stdout, b"o"), (got.stderr, b"e")):
        assert len(stream) <= (1 << 20) + 200 and b"bytes of output dropped here" in stream
        assert stream.startswith(ch * 1000) and stream.endswith(ch * 1000)
