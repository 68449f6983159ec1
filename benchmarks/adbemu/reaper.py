"""Device-side processes die with the emulator, however it ends (even SIGKILL).

Each shell session runs in its own process group (start_new_session). A small reaper
process, started with the emulator, is told on a pipe which groups are alive (`+PGID`,
`-PGID`); when the pipe closes - the emulator exited, or was killed outright - it kills
the groups still listed with SIGKILL. PR_SET_PDEATHSIG alone would not do: it reaches only
the direct child (/bin/sh), not what the shell started (a benchmark's python).
"""

from __future__ import annotations

import subprocess
import sys
import threading

_REAPER = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    (groups.add if line[0] == "+" else groups.discard)(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class ProcessGroups(set):
    """The set of running session processes (subprocess.Popen, each leading its own group),
    mirrored to the reaper process."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        try:
            # its own session: a terminal's Ctrl-C goes to the emulator, which cleans up itself
            self._reaper = subprocess.Popen([sys.executable, "-c", _REAPER], stdin=subprocess.PIPE,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
        except OSError:  # pragma: no cover - no reaper: stop() still kills the groups on a clean exit
            self._reaper = None

    def _tell(self, line: str) -> None:
        with self._lock:
            if self._reaper is None or self._reaper.stdin.closed:
                return
            try:
                self._reaper.stdin.write(line.encode())
                self._reaper.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def add(self, proc) -> None:
        super().add(proc)
        self._tell(f"+{proc.pid}\n")

    def discard(self, proc) -> None:
        super().discard(proc)
        self._tell(f"-{proc.pid}\n")

    def close(self) -> None:
        """Closing the pipe makes the reaper kill what is still listed, and exit."""
        with self._lock:
            if self._reaper is not None and not self._reaper.stdin.closed:
                try:
                    self._reaper.stdin.close()
                except OSError:
                    pass
        if self._reaper is not None:
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._reaper.kill()
