"""The first thing the `amc-tf` command runs, before it imports anything heavy.

Until the CLI's own signal handlers are in place (amc_tf/cli/app.py), Python's default
SIGINT handler would print a KeyboardInterrupt traceback from inside whatever import was
running (numpy, click, TensorFlow). `begin()` puts a handler in place from the first
instruction: nothing has been written yet, so it prints the CLI's one interrupt line and
exits 130 (143 for SIGTERM) at once. It also quiets TensorFlow's C++ and absl start-up
logging through the environment before TensorFlow can be imported, unless the user asked
for them (`amc-tf -v`, `--verbose`, AMC_TF_VERBOSE=1).

Only the command's entry points call it (amc_tf/__main__.py, and amc_tf/cli/__init__.py when
the program is `amc-tf`): a library caller's or a test runner's signals are left alone."""

from __future__ import annotations

import os
import signal
import sys

_installed = {"done": False}


def wants_verbose(argv: list[str]) -> bool:
    """`amc-tf -v ...` / `--verbose` (a group option: before the command name), or AMC_TF_VERBOSE."""
    if os.environ.get("AMC_TF_VERBOSE", "") not in ("", "0"):
        return True
    for arg in argv:
        if arg in ("-v", "--verbose"):
            return True
        if not arg.startswith("-"):  # the command name: later options are the command's
            return False
    return False


def _exit_at_once(signum, _frame):
    name = signal.Signals(signum).name
    try:
        os.write(2, f"error: interrupted ({name}); nothing half-written was kept\n".encode())
    finally:
        os._exit(128 + signum)


def begin(argv: list[str] | None = None) -> None:
    """Interrupts exit with one line from now on; TensorFlow's start-up logging off unless verbose."""
    if _installed["done"]:
        return
    _installed["done"] = True
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL):
                signal.signal(signum, _exit_at_once)
        except (ValueError, OSError):  # not the main thread
            pass
    if not wants_verbose(sys.argv[1:] if argv is None else argv):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # read by TensorFlow's C++ logging when it loads
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
