"""Worker processes that never outlive their parent: `Worker` runs one function in a spawned
process (the conversion's reference run, torch or onnxruntime, overlapping the TensorFlow
work); amc_tf/core/service.py's `Service` is a long-lived child serving requests (LiteRT on
untrusted models, amc_tf/core/litert_worker.py). Whatever ends the parent (exit, exception, SIGINT, SIGTERM,
SIGKILL), the worker ends too:
- SIGINT and SIGTERM are held while it is spawned, and it ignores SIGINT (a terminal's Ctrl-C
  goes to the parent, which kills it), so it never prints a KeyboardInterrupt traceback;
- on Linux it asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), and
  a watchdog thread also exits when its parent pid changes; `cancel()` kills it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from amc_tf.core.errors import AmcError

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the watchdog remains
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="amc-tf-parent-watchdog", daemon=True).start()


def _worker_main(conn, parent_pid: int, task) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)  # held by the parent during the spawn
    _die_with_parent(parent_pid)
    try:
        fn, args = task.recv()
    except BaseException:  # the parent stopped while sending the task: it is gone or cancelling us
        os._exit(1)
    finally:
        task.close()
    try:
        result = ("ok", fn(*args))
    except BaseException as exc:  # report it to the parent, which decides
        result = ("error", exc)
    try:
        conn.send(result)
    except Exception as exc:  # the exception itself did not pickle
        conn.send(("error", RuntimeError(f"{type(result[1]).__name__}: {result[1]} ({exc})")))
    finally:
        conn.close()


class Worker:
    """`fn(*args)` running in a spawned process; `result()` returns its value or raises its error."""

    def __init__(self, fn, *args, name: str = "amc-tf-worker"):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # not fork: the parent may hold TensorFlow's threads
        self._conn, child_conn = ctx.Pipe(duplex=False)
        task_r, task_w = ctx.Pipe(duplex=False)
        # the task (megabytes of weights) goes through its own pipe after the spawn: the spawn itself
        # then writes a few bytes, so the window in which signals are held is short
        self._proc = ctx.Process(target=_worker_main, args=(child_conn, os.getpid(), task_r), name=name,
                                 daemon=True)
        try:
            _spawn(self._proc)
        finally:
            child_conn.close()
            task_r.close()
        try:
            task_w.send((fn, args))
        except BaseException:  # a Ctrl-C while sending: stop the worker before it can say anything
            self.cancel()
            raise
        finally:
            task_w.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def result(self):
        try:
            status, value = self._conn.recv()
        except EOFError:
            self._proc.join(5)
            raise AmcError(f"the {self._proc.name} process died (exit code {self._proc.exitcode})") from None
        finally:
            self._reap()
        if status == "error":
            raise value
        return value

    def cancel(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        self._proc.join(5)
        if self._proc.is_alive():  # pragma: no cover - it sent its result but hangs on exit
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()


_HELD = {signal.SIGINT, signal.SIGTERM}


def _spawn(proc) -> None:
    """Start the worker with SIGINT and SIGTERM held (blocked, not ignored): the child inherits
    the mask from its first instruction, so a Ctrl-C to the terminal's process group during its
    start-up cannot print a traceback there (it ignores SIGINT, then unblocks); a signal meant
    for this process stays pending and is delivered right after the spawn, never lost. The
    spawn writes a few bytes only: the task goes through its own pipe afterwards."""
    old = hold_signals()
    try:
        proc.start()
    finally:
        try:
            release_signals(old)  # a signal held during the spawn is delivered here
        except BaseException:
            if proc.pid is not None and proc.is_alive():
                proc.kill()  # the child must not outlive an interrupted start
                proc.join(5)
            raise


def hold_signals():
    """SIGINT and SIGTERM held (blocked) during a spawn: the child inherits the mask (no traceback
    from its start-up), and a signal for this process is delivered after the spawn, not lost."""
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no pthread_sigmask
        return None


def release_signals(old) -> None:
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
