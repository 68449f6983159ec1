"""Bounded capture of what a benchmark binary or a device prints.

A device or a `benchmark_model` binary is not trusted to print a sensible amount: `run_capped`
reads its stdout/stderr in threads as it arrives, keeps the first bytes and the last
TAIL_BYTES of each stream up to MAX_OUTPUT_BYTES in all, and drains (counts, drops) the rest,
so the child never blocks on a full pipe and the host never holds more than the cap. The result
then goes through the linear log parser (benchmarks/logparse.py). Where bytes were dropped, a
marker line says how many.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass

MAX_OUTPUT_BYTES = 64 * 2**20  # as a log file (loglines.MAX_LOG_BYTES): benchmark_model prints a few KB
TAIL_BYTES = 1 * 2**20  # the results are at the end of the output: always kept
_READ = 1 << 16


class CappedBuffer:
    """The first `max_bytes - tail` bytes and the last `tail` bytes written to it."""

    def __init__(self, max_bytes: int = MAX_OUTPUT_BYTES, tail: int = TAIL_BYTES):
        tail = min(tail, max_bytes // 2)
        self.head_cap, self.tail_cap = max_bytes - tail, tail
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail.append(bytes(data))
        self.tail_len += len(data)
        while self.tail_len > self.tail_cap:
            first = self.tail[0]
            excess = self.tail_len - self.tail_cap
            if len(first) <= excess:
                self.tail.popleft()
                self.tail_len -= len(first)
                self.dropped += len(first)
            else:
                self.tail[0] = first[excess:]
                self.tail_len -= excess
                self.dropped += excess

    def getvalue(self) -> bytes:
        mid = (f"\n[amc-tf: {self.dropped:,} bytes of output dropped here: over the "
               f"{(self.head_cap + self.tail_cap) // 2**20} MiB capture limit]\n".encode() if self.dropped else b"")
        return bytes(self.head) + mid + b"".join(self.tail)


def _pump(stream, buf: CappedBuffer) -> None:
    try:
        while True:
            data = stream.read1(_READ) if hasattr(stream, "read1") else stream.read(_READ)
            if not data:
                break
            buf.write(data)
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


@dataclass
class Captured:
    returncode: int | None  # None: killed at the timeout
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def run_capped(args: list[str], timeout: float | None, *, merge_stderr: bool = False,
               max_bytes: int = MAX_OUTPUT_BYTES, new_session: bool = False, preexec_fn=None,
               stdin=subprocess.DEVNULL) -> Captured:
    """Run `args`, capturing at most `max_bytes` of each output stream (see CappedBuffer); past
    `timeout` seconds the child (its whole process group with `new_session`) is killed and the
    output so far returned with timed_out=True. OSError when it cannot be started."""
    proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            start_new_session=new_session, preexec_fn=preexec_fn)
    out, err = CappedBuffer(max_bytes), CappedBuffer(max_bytes)
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True)]
    if not merge_stderr:
        pumps.append(threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True))
    for t in pumps:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc, new_session)
        proc.wait()
    except BaseException:
        _kill(proc, new_session)
        proc.wait()
        raise
    for t in pumps:
        t.join(timeout=5.0)  # a grandchild holding the pipe open must not hang the host
    return Captured(None if timed_out else proc.returncode, out.getvalue(), err.getvalue(), timed_out)


def _kill(proc: subprocess.Popen, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
