"""A faster TensorFlow start-up for the CLI: Keras is not loaded while TensorFlow initialises.

`import tensorflow` ends with an eager `import keras.src.optimizers` (inside a try/except
ImportError), which loads all of Keras 3 -- and, when scikit-learn is installed, scikit-learn
through Keras' wrappers. amc-tf never uses Keras (the graphs are tf.Module + tf.nn), and that
import is about a third of TensorFlow's start-up (measured: 4.4-6.7 s instead of 9.4-11.5 s on
the 2-core machine under load; docs/figures.md).

`install()` puts a finder first on sys.meta_path that, only while the `tensorflow` package is
still initialising, answers the import of `keras` with a loader that raises ImportError, which
TensorFlow's own try/except swallows. `tf.keras` stays a lazy loader: the first real use of
Keras imports it normally. AMC_TF_LOAD_KERAS=1 turns this off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time


class _NotDuringTensorFlowInit(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError("amc-tf: keras is loaded on first use, not during TensorFlow's start-up")


class _DeferKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or not _tensorflow_initialising():
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None:  # keep origin/locations: TensorFlow derives tf.keras's path from them
            spec.loader = _NotDuringTensorFlowInit()
        return spec


def _tensorflow_initialising() -> bool:
    tf = sys.modules.get("tensorflow")
    spec = getattr(tf, "__spec__", None)
    return tf is not None and bool(getattr(spec, "_initializing", False))


def install() -> None:
    """Idempotent; a no-op once TensorFlow is imported, or with AMC_TF_LOAD_KERAS=1."""
    if os.environ.get("AMC_TF_LOAD_KERAS", "") not in ("", "0") or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _DeferKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferKeras())


def process_age() -> float:
    """Seconds since this process started (interpreter start-up included), from /proc; 0.0
    where /proc is not readable."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): starttime, in clock ticks after boot
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


_cli = {"start_age": None}


def mark_cli_start() -> None:
    """Called by the console script's entry point: from here on, `startup_seconds()` is the
    process's age at that moment (interpreter start-up and amc-tf's own imports)."""
    _cli["start_age"] = process_age()


def startup_seconds() -> float | None:
    """The CLI process's start-up (seconds before the command began), or None when amc-tf is
    used as a library or in-process (the process's age then says nothing about amc-tf)."""
    return _cli["start_age"]


def timed_import_tensorflow() -> float:
    """Import TensorFlow (if not yet imported); seconds it took here (0.0 if already loaded)."""
    if "tensorflow" in sys.modules:
        return 0.0
    t = time.perf_counter()
    import tensorflow  # noqa: F401

    return time.perf_counter() - t
