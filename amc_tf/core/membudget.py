"""The memory backstop: a per-process limit on the data segment (RLIMIT_DATA) while the CLI runs.

Every reader bounds what it allocates before allocating (checkpoint_safety, pickle_budget,
protobuf_bounds, tflite_bounds, preprocess.check_resize). This limit is the net under them: a
parse that escapes every bound fails with MemoryError (Python, numpy) or an allocator error
(torch, TensorFlow) instead of taking the machine, and the CLI's boundary (amc_tf/cli/app.py)
turns it into one `error:` line, exit 2.

RLIMIT_DATA (Linux >= 4.7: heap plus private writable mappings) rather than RLIMIT_AS: TensorFlow,
XLA and glibc reserve large address ranges they never touch, which RLIMIT_AS would count.
The limit is `default_limit()` (4 GiB + 32 MiB per CPU), or `AMC_TF_MEMORY_LIMIT` (bytes, or with a K/M/G suffix; `0` or
`off` disables it). It only ever lowers the soft limit, never raises one set by the user or the
system, and `limited()` restores the previous soft limit when it ends. Child processes (the
reference worker, benchmark_model) inherit it.
"""

from __future__ import annotations

import contextlib
import os
import re

from amc_tf.core.errors import AmcError

BASE_LIMIT = 4 << 30  # an int8 conversion of MobileNetV2 1.0 (224) peaks at 3.2 GiB of data segment
PER_CPU = 32 << 20  # TensorFlow's thread pools grow with the cores; each thread stack counts (8 MiB)
ENV = "AMC_TF_MEMORY_LIMIT"
HEADROOM = 2 << 30  # at least this much above the data segment in use when the limit is set
_applied: list = []  # the limits in force, innermost last (for the error message)


def default_limit() -> int:
    """4 GiB plus 32 MiB per CPU (4.06 GiB on 2 cores, 6 GiB on 64)."""
    return BASE_LIMIT + PER_CPU * (os.cpu_count() or 1)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class LimitSyntaxError(AmcError):
    """AMC_TF_MEMORY_LIMIT is not a size."""


class OutOfMemory(AmcError):
    """An allocation failed under the memory budget (exit 2: the input asked for too much)."""


def parse_size(text: str) -> int | None:
    """Bytes from `4G`, `512M`, `1073741824`; None for `0`, `off`, `none`, `unlimited`."""
    value = text.strip().lower()
    if value in ("0", "off", "none", "unlimited", "no"):
        return None
    match = re.fullmatch(r"(\d{1,15})\s*([kmgt]?)(?:i?b)?", value)
    if not match:
        raise LimitSyntaxError(f"{ENV}={text!r} is not a size (e.g. 4G, 512M, or 0 to disable)")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if size < (300 << 20):
        raise LimitSyntaxError(f"{ENV}={text!r} is below 300M, too little to import TensorFlow (it aborts); 0 disables the limit")
    return size


def configured_limit() -> int | None:
    """The limit this process should run under (None: no limit)."""
    text = os.environ.get(ENV)
    return default_limit() if text is None or not text.strip() else parse_size(text)


def current_limit() -> int | None:
    """The soft RLIMIT_DATA now in force (None: unlimited or not supported)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def data_size() -> int:
    """This process's data segment now (VmData, bytes; 0 when /proc is not there)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def apply(limit: int | None) -> tuple | None:
    """Lower the soft RLIMIT_DATA to `limit` (never raising it, never above the hard limit).
    Returns the previous (soft, hard) to restore, or None when nothing was changed."""
    if limit is None:
        return None
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        if soft != resource.RLIM_INFINITY and soft <= new:
            return None
        resource.setrlimit(resource.RLIMIT_DATA, (new, hard))
        return soft, hard
    except (ImportError, AttributeError, OSError, ValueError):  # not Linux/Unix, or not permitted
        return None


def restore(previous: tuple | None) -> None:
    if previous is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, previous)
    except (ImportError, AttributeError, OSError, ValueError):
        pass


@contextlib.contextmanager
def limited(limit: int | None = None):
    """Run the block under `limit` (default: `configured_limit()`); the old soft limit comes back
    after. An out-of-memory error in the block leaves it as `OutOfMemory`, one line naming the budget."""
    explicit = limit is not None or bool(os.environ.get(ENV, "").strip())
    limit = configured_limit() if limit is None else limit
    if limit is not None and not explicit:
        # the default keeps HEADROOM above what is in use: a command run inside a larger program
        # (the test suite's in-process runner) still has room to work
        limit = max(limit, data_size() + HEADROOM)
    previous = apply(limit)
    _applied.append(current_limit())
    try:
        yield
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemory(out_of_memory_message()) from None
        raise
    finally:
        _applied.pop()
        restore(previous)


def describe(nbytes: int | None) -> str:
    if nbytes is None:
        return "no limit"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if nbytes >= size:
            return f"{nbytes / size:g} {unit}"
    return f"{nbytes} bytes"


_OOM_TEXT = ("can't allocate memory", "cannot allocate memory", "std::bad_alloc", "out of memory",
             "oom when allocating", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError, for the allocator failures torch (RuntimeError "DefaultCPUAllocator:
    can't allocate memory") and TensorFlow (ResourceExhaustedError) raise instead of it, and for
    an ImportError of a shared library the loader could not map ("failed to map segment")."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "ResourceExhaustedError":
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(t in text for t in _OOM_TEXT)
    if isinstance(exc, ImportError):  # a native library that could not be mapped under the limit
        text = str(exc).lower()
        return "failed to map segment" in text or "cannot allocate memory" in text
    return False


def out_of_memory_message(limit: int | None = None) -> str:
    """The one line for an allocation that failed under the budget (`limit`: the one in force
    when it failed; default the innermost `limited()` block's, else the process's)."""
    if limit is None:
        limit = _applied[-1] if _applied else current_limit()
    if limit is None:
        return "out of memory (no memory budget was set); the input is probably malformed or hostile"
    return (f"out of memory: the command needed more than its memory budget of {describe(limit)} "
            f"(RLIMIT_DATA; set {ENV}, 0 disables it); a MobileNet needs less, so the input is "
            "probably malformed or hostile")


GROWTH_HEADROOM = 1 << 30  # what one LiteRT invoke of a MobileNet may add (its arena exists already)


def growth_limited(headroom: int = GROWTH_HEADROOM):
    """`limited()` to the data segment in use now plus `headroom`: for work whose own memory is
    already allocated, such as invoking a loaded model (LiteRT allocates dynamic tensors, whose
    shapes come from values, only at invoke). Meant for a process that does nothing else at the
    time (a LiteRT worker): other threads' allocations count against the same limit."""
    return limited(data_size() + headroom)
