"""Run one function in a spawned worker process that never outlives its parent.

Used for the conversion's reference run (torch or onnxruntime), which overlaps with the
TensorFlow work. Whatever ends the parent - a normal exit, an exception, SIGINT, SIGTERM or
SIGKILL - the worker ends too:
- it starts with SIGINT ignored (a terminal's Ctrl-C goes to the parent, which kills it), so
  it never prints a `Process SpawnProcess-1 ... KeyboardInterrupt` traceback;
- on Linux it asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), and
  a watchdog thread also exits when its parent pid changes (any POSIX system);
- `cancel()` kills it; `result()` reaps it.
multiprocessing's resource tracker holds no work of ours: it exits once parent and worker
have closed their ends of its pipe.
"""

from __future__ import annotations

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
        # the task (megabytes of weights) goes through its own pipe once SIGINT is ours again: the
        # spawn itself then writes a few bytes, so the window in which SIGINT is ignored is short
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


def _spawn(proc) -> None:
    """Start the worker so that a Ctrl-C to the terminal's process group during its start-up
    (before `_worker_main` ignores SIGINT) cannot print a traceback. Quiet (the CLI's default):
    the child starts with stderr on /dev/null (its libraries' chatter is noise too; its errors
    come back through the pipe), and the parent's SIGINT handler stays in place, so no Ctrl-C
    is lost. Verbose (`amc-tf -v`): the child keeps stderr and starts with SIGINT ignored, for
    the milliseconds of the spawn the parent's too."""
    from amc_tf.core import quiet

    if not quiet.active():
        old = _ignore_sigint()
        try:
            proc.start()
        finally:
            _restore_sigint(old)
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        proc.start()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _ignore_sigint():
    """SIGINT ignored while spawning: an ignored signal stays ignored in the child from its first
    instruction, so a Ctrl-C during its start-up cannot print a traceback."""
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        return None


def _restore_sigint(old) -> None:
    if old is not None:
        signal.signal(signal.SIGINT, old)
