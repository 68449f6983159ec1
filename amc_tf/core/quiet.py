"""Keep TensorFlow's and LiteRT's start-up chatter off the user's terminal.

TensorFlow prints absl/oneDNN notices from C++ when it is imported (`WARNING: All log
messages before absl::InitializeLog() ...`, `oneDNN custom operations are on ...`), and
LiteRT prints `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` when an
interpreter allocates its tensors. Both go straight to file descriptor 2, below Python,
so `contextlib.redirect_stderr` cannot catch them: `silenced()` points fd 2 at a
temporary file for the duration and replays what was caught if the block raises (not
when it is interrupted: then what was caught is start-up noise).

The CLI calls `install()` once at start: unless verbose (`amc-tf -v`, or AMC_TF_VERBOSE=1)
it sets TF_CPP_MIN_LOG_LEVEL=3 and silences the import of `tensorflow` wherever it happens
(an import hook), and `silenced()` becomes active. Library callers that never call
`install()` see everything, as before.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
import tempfile

from amc_tf.core.errors import Interrupted

_state = {"quiet": False}


def active() -> bool:
    return _state["quiet"]


@contextlib.contextmanager
def silenced(force: bool = False):
    """Send fd 2 to a temporary file inside the block (when quiet, or `force`); on an
    exception, write what was caught back to stderr before it propagates."""
    if not (force or _state["quiet"]):
        yield
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all
        yield
        return
    sink = tempfile.TemporaryFile()
    os.dup2(sink.fileno(), 2)
    failed = False
    try:
        yield
    except (KeyboardInterrupt, Interrupted):  # the user stopped it: what was caught is start-up noise
        raise
    except BaseException:
        failed = True
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if failed:
            sink.seek(0)
            caught = sink.read()
            if caught:
                os.write(2, caught)
        sink.close()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with silenced():
            self._loader.exec_module(module)
        if _state["quiet"]:
            _quiet_python_loggers()

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Loads the named top-level packages with fd 2 silenced."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def _quiet_python_loggers() -> None:
    """absl's and TensorFlow's Python loggers: errors only (SavedModel export warnings etc.)."""
    import logging

    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "absl.logging" in sys.modules:
        sys.modules["absl.logging"].set_verbosity("error")


def install(verbose: bool = False) -> None:
    """Quiet mode for the CLI (idempotent); `verbose` (or AMC_TF_VERBOSE=1) leaves everything on."""
    verbose = verbose or os.environ.get("AMC_TF_VERBOSE", "") not in ("", "0")
    if verbose:
        _state["quiet"] = False
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    _state["quiet"] = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport(("tensorflow",)))
    if "tensorflow" in sys.modules:
        _quiet_python_loggers()
