"""A long-lived child process serving requests (amc_tf/core/worker.py's discipline: it never
outlives its parent): the LiteRT interpreter on untrusted models runs in one
(amc_tf/core/litert_worker.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import sys
import time
import weakref

from amc_tf.core.worker import _die_with_parent  # noqa: F401  (the child's side uses it)


# --- a long-lived service process ------------------------------------------------------------
# `Service(module)` starts `python -c ...` that serves `module.HANDLERS` until closed: the
# parent sends a JSON header per request (arrays go through a shared memfd, not the pipe) and
# reads back a JSON header and raw bytes. The parent never unpickles what the child sends. The
# child is in its own session (a terminal's Ctrl-C reaches the parent, which kills it), dies
# with its parent (PR_SET_PDEATHSIG and the watchdog above; EOF on its pipe too), and writes
# stray output to its stderr, never into the replies.

_FRAME = struct.Struct("<IQ")  # JSON header length, payload length; (0, 0) is a tick
_MAX_HEADER = 256 << 20
_BOOT = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
         "from amc_tf.core.service import serve_main; serve_main()")


class ServiceDied(Exception):
    """The service process ended while a request was pending (a signal, or an exit)."""

    def __init__(self, returncode: int | None, last_line: str = ""):
        self.returncode, self.last_line = returncode, last_line
        self.signame = None
        if returncode is not None and returncode < 0:
            try:
                self.signame = signal.Signals(-returncode).name
            except ValueError:
                self.signame = f"signal {-returncode}"
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.signame:
            return f"crashed with {self.signame}"
        return f"exited (exit code {self.returncode}{': ' + self.last_line if self.last_line else ''})"


class ServiceTimedOut(Exception):
    """No answer (and no sign of progress) within the timeout; the process was killed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"no progress in {seconds:g} s")


class ServiceError(Exception):
    """The request raised an ordinary exception inside the service (it is still alive)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class Service:
    """A long-lived child process running `module`'s HANDLERS ({op: fn(header, payload, ctx)});
    `request()` returns (reply header, payload bytes) or raises ServiceDied, ServiceTimedOut
    or ServiceError. The timeout bounds the time without progress: a handler may `ctx.tick()`."""

    def __init__(self, module: str, *, timeout: float, capture_stderr: bool = True):
        import subprocess
        import tempfile

        self.timeout = float(timeout)
        self._shared = _shared_file()
        self._map, self._map_size = None, 0
        self._stderr = tempfile.TemporaryFile(prefix="amc-tf-service-") if capture_stderr else None
        args = [sys.executable, "-c", _BOOT, json.dumps(sys.path), module, str(os.getpid()), str(self._shared)]
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                          pass_fds=(self._shared,), start_new_session=True)
        except BaseException:
            os.close(self._shared)
            if self._stderr is not None:
                self._stderr.close()
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._shared, self._stderr)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def request(self, header: dict, data=None, *, limit: int = 1 << 31) -> tuple[dict, bytearray]:
        """Send `header` (and `data`, any buffer, through shared memory); wait for the reply."""
        if self.closed:
            raise ServiceDied(self._proc.returncode)
        if data is not None:
            header = dict(header, shared=self._put_shared(data))
        text = json.dumps(header).encode()
        try:
            _write_all(self._proc.stdin.fileno(), _FRAME.pack(len(text), 0) + text)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None
        while True:
            size, length = _FRAME.unpack(self._read(_FRAME.size))
            if size == 0 and length == 0:
                continue  # a tick: the handler is making progress
            if size > _MAX_HEADER or length > limit:
                self.close()
                raise ServiceError("ProtocolError", f"a reply of {size} + {length} bytes (limit {limit})")
            reply = json.loads(self._read(size))
            payload = self._read(length) if length else bytearray()
            if "error" in reply:
                raise ServiceError(str(reply["error"]), str(reply.get("message", "")))
            return reply, payload

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _put_shared(self, data) -> int:
        import mmap

        view = memoryview(data).cast("B")
        n = view.nbytes
        if n > self._map_size:
            size = max(n, 2 * self._map_size, 1 << 20)
            os.ftruncate(self._shared, size)
            if self._map is not None:
                self._map.close()
            self._map, self._map_size = mmap.mmap(self._shared, size), size
        self._map[:n] = view
        return n

    def _read(self, n: int) -> bytearray:
        import select

        buf = bytearray(n)
        view, got = memoryview(buf), 0
        fd = self._proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while got < n:
            if not poller.poll(self.timeout * 1000):
                self.close()
                raise ServiceTimedOut(self.timeout)
            k = os.readv(fd, [view[got:]])
            if k == 0:
                raise self._died()
            got += k
        return buf

    def _died(self) -> ServiceDied:
        try:
            self._proc.wait(5)
        except Exception:  # noqa: BLE001 - EOF but still running: it is stopped below
            pass
        last = self._last_stderr_line()
        self.close()
        return ServiceDied(self._proc.returncode, last)

    def _last_stderr_line(self) -> str:
        """The last line the service wrote to its (captured) stderr, printable and short."""
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(max(0, os.fstat(self._stderr.fileno()).st_size - 4096))
            lines = [x for x in self._stderr.read().decode("utf-8", "replace").splitlines() if x.strip()]
        except (OSError, ValueError):
            return ""
        text = lines[-1].strip() if lines else ""
        return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _shutdown(proc, shared: int, stderr) -> None:
    """Kill the service (its whole session), reap it, close what the parent holds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session: itself and anything it started
        except OSError:
            proc.kill()
    try:
        proc.wait(10)
    except Exception:  # noqa: BLE001 - unkillable (D state): nothing more to do
        pass
    for f in (proc.stdin, proc.stdout, stderr):
        with contextlib.suppress(OSError, AttributeError):
            f.close()
    try:
        os.close(shared)
    except OSError:
        pass


def _shared_file() -> int:
    """An anonymous file for arrays: a memfd on Linux, else an already-unlinked temp file.
    Either way nothing is left on disk, whatever ends the processes."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("amc-tf-shared", 0)  # not inheritable; pass_fds passes it
    import tempfile

    with tempfile.TemporaryFile(prefix="amc-tf-shared-") as f:
        return os.dup(f.fileno())


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


# --- the service's side ----------------------------------------------------------------------

class _Context:
    """What a handler gets: the shared memory of the request, and `tick()` (progress)."""

    def __init__(self, out: int, shared: int):
        self._out, self._shared, self._map, self._last = out, shared, None, time.monotonic()

    def shared(self, n: int) -> memoryview:
        import mmap

        if self._map is None or len(self._map) < n:
            self._map = mmap.mmap(self._shared, os.fstat(self._shared).st_size)  # the parent grew it
        return memoryview(self._map)[:n]

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last > 0.2:
            _write_all(self._out, _FRAME.pack(0, 0))
            self._last = now


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def serve_main() -> None:
    """The service process: argv = [-c, sys.path, module, parent pid, shared fd]."""
    import importlib

    module, parent_pid, shared = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    out = os.dup(1)
    os.dup2(2, 1)  # print() and native code writing to stdout land on stderr, not in the replies
    handlers = importlib.import_module(module).HANDLERS
    ctx = _Context(out, shared)
    while True:
        head = _read_exact(0, _FRAME.size)
        if head is None:
            return  # the parent closed the pipe
        size, length = _FRAME.unpack(head)
        header = json.loads(_read_exact(0, size) or b"{}")
        payload = _read_exact(0, length) if length else b""
        try:
            reply, buffers = handlers[header["op"]](header, payload, ctx)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply, buffers = {"error": type(exc).__name__, "message": str(exc)[:4000]}, []
        views = [memoryview(b).cast("B") for b in buffers]
        text = json.dumps(reply).encode()
        _write_all(out, _FRAME.pack(len(text), sum(v.nbytes for v in views)) + text)
        for v in views:
            _write_all(out, v)
