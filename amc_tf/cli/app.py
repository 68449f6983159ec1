"""The `amc-tf` command line. Commands import TensorFlow lazily so `--help` is instant.

This module is the one error boundary of the tool (commands just raise):
- an `AmcError` -> one line `error: ...` on stderr, exit with its code (2 bad input,
  1 a gate failed, 3 a benchmark run failed);
- a click usage error -> one line, exit 2; an OSError on a user's path -> one line, exit 2;
- SIGINT -> exit 130, SIGTERM -> exit 143, one line each; both raise `Interrupted` so
  every `finally` (temp directories, worker processes) runs first;
- MemoryError (or torch's / TensorFlow's allocator failure) under the memory budget
  (RLIMIT_DATA, amc_tf/core/membudget.py, set here for every command) -> one line, exit 2;
- anything else is a bug: one line saying so, exit 70; `--debug` or AMC_TF_DEBUG=1 also
  prints the traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback

# TensorFlow's C++ start-up chatter (CPU feature notices, absl warnings) is noise for CLI
# users; a user who wants it can set TF_CPP_MIN_LOG_LEVEL=0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click

from amc_tf.core import membudget
from amc_tf.core.version import __version__
from amc_tf.core.errors import AmcError, Interrupted

EXIT_BUG = 70
_debug = False


def one_line(message: str, limit: int = 800) -> str:
    """Collapse a message to one line (the CLI never prints more than one for an error) of at
    most about `limit` characters, keeping its start and its end."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if len(text) > limit:
        text = f"{text[:limit - 200]} ...[{len(text) - limit + 10} characters]... {text[-190:]}"
    return text


def _say(message: str) -> None:
    """The one `error:` line: collapsed to one line, then every control character left in it (an
    escape sequence from a file name, a C1 code, a byte that is not UTF-8) made visible."""
    from amc_tf.core.textsafe import safe

    try:
        sys.stderr.write(f"error: {safe(one_line(message))}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    """SIGINT/SIGTERM raise `Interrupted` (a BaseException) so cleanup runs; returns the old ones."""
    old = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            old[signum] = signal.signal(signum, _raise_interrupted)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        pass
    return old


def _restore_signal_handlers(old: dict) -> None:
    for signum, handler in old.items():
        try:
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, TypeError):
            pass


def _usage_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see {ctx.command_path} --help)"
    return message


def _os_message(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def run_guarded(invoke) -> int:
    """Call `invoke()` and map every way it can end to (one stderr line, exit code)."""
    try:
        rv = invoke()
        return rv if isinstance(rv, int) else 0
    except Interrupted as exc:
        _say(f"interrupted ({exc.signame}); nothing half-written was kept")
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        _say("interrupted (SIGINT); nothing half-written was kept")
        return 130
    except AmcError as exc:
        _say(str(exc))
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `amc-tf`: the help, on stdout
        click.echo(exc.ctx.get_help())
        return 0
    except click.ClickException as exc:
        _say(_usage_message(exc))
        return 2
    except BrokenPipeError:  # `amc-tf ... | head`: the reader left; say nothing
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except MemoryError:
        _say(membudget.out_of_memory_message())
        return 2
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 141
        _say(_os_message(exc))
        return 2
    except Exception as exc:  # a bug: say so, once (unless it is an allocator's out-of-memory error)
        if membudget.is_out_of_memory(exc):
            _say(membudget.out_of_memory_message())
            return 2
        if _debug or os.environ.get("AMC_TF_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        _say(f"internal error (a bug in amc-tf, please report it): {type(exc).__name__}: {exc}"
             " -- run with --debug (or AMC_TF_DEBUG=1) to see the traceback")
        return EXIT_BUG


class AmcGroup(click.Group):
    """The top-level group: runs the command inside the one error boundary."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        global _debug
        _debug = False
        old = _install_signal_handlers()

        def invoke():
            # the memory backstop under every reader's own bounds (amc_tf/core/membudget.py)
            with membudget.limited():
                return super(AmcGroup, self).main(args, prog_name, complete_var, standalone_mode=False, **extra)

        try:
            code = run_guarded(invoke)
        except SystemExit as exc:
            from click.utils import PacifyFlushWrapper

            if exc.code == 1 and isinstance(sys.stdout, PacifyFlushWrapper):
                code = 141  # click's own EPIPE exit (`amc-tf ... | head`): the reader left, as run_guarded says
            else:
                raise
        finally:
            _restore_signal_handlers(old)
        sys.exit(code)


def _set_debug(_ctx, _param, value):
    global _debug
    _debug = _debug or bool(value)


@click.group(cls=AmcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amc-tf")
@click.option("--debug", is_flag=True, is_eager=True, expose_value=False, callback=_set_debug,
              help="Print the traceback of an unexpected error (also: AMC_TF_DEBUG=1).")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow/LiteRT start-up logs (hidden by default).")
def main(verbose=False):
    """Convert channel-pruned PyTorch MobileNets to TF-slim / SavedModel / TFLite,
    benchmark them with the Pixel-1 protocol and prove accuracy parity."""
    from amc_tf.core import quiet, tf_startup

    tf_startup.install()
    quiet.install(verbose)


def run(args=None, prog_name: str = "amc-tf") -> None:
    """The console script and `python -m amc_tf`: `main`, then a fast exit.

    Once TensorFlow is loaded, a normal interpreter exit spends 1-4 s tearing down its C++
    thread pools and modules. When the command is over and no non-daemon thread is left, the
    atexit handlers run (temporary folders, multiprocessing children), the streams are flushed,
    and the process ends with os._exit."""
    from amc_tf.core import tf_startup

    tf_startup.mark_cli_start()
    try:
        main(args=args, prog_name=prog_name)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            _say(str(exc.code))
            code = 1
    _exit_now(code)


def _exit_now(code: int) -> None:
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "tensorflow" not in sys.modules or others:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader of `amc-tf ... | head` left: as run_guarded says
            code = code or 141
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _register() -> None:
    from amc_tf.cli.commands import register_all

    register_all(main)


_register()
