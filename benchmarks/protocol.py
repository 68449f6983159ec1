"""The benchmark protocol: how many warm-up and timed invocations, how many runs, on
how many threads, pinned to which cores, with which delegate.

The defaults are the Pixel-1 protocol of the AMC release: 1 thread, 100 warm-up and
200 timed invocations per run, 3 runs, each run one fresh interpreter (or one
`benchmark_model` invocation). The headline is the mean of the runs' averages.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from amc_tf.core.errors import AmcError

DELEGATES = ("xnnpack", "none", "gpu", "nnapi")
LOCAL_DELEGATES = ("xnnpack", "none")

# benchmark_model treats --warmup_runs/--num_runs as minimums unless the time floors are
# zero; --max_secs caps both loops, so it is set far beyond any real run.
DEFAULT_MAX_SECS = 100000

# The run timeout: a run that takes longer is stopped and reported as timed out. Derived
# from the protocol: a floor (process start, model load, adb overheads) plus a generous
# multiple of the invocations times a per-invocation bound. 1 s per invocation is 8x the
# slowest AMC model on a Pixel 1 (MobileNetV1 1.0: 125 ms); the Pixel-1 protocol's 300
# invocations give 120 + 2 * 300 * 1 = 720 s per run (the old fixed limit was one hour).
RUN_TIMEOUT_FLOOR_S = 120.0
RUN_TIMEOUT_MULTIPLE = 2.0
PER_INVOCATION_BOUND_S = 1.0
# The longest run timeout: 7 days. A larger --run-timeout is refused; a larger derived one
# (huge --warmup/--runs) is clamped to it (the OS's poll/select wait limits are ~24 days).
MAX_REPEATS = 1000  # as benchmarks/loglines.MAX_REPEATS: `logs summarize` reads runs 1..1000
MAX_RUN_TIMEOUT_S = 7 * 24 * 3600.0

_MASK = re.compile(r"^(0x)?[0-9a-fA-F]+$")


class ProtocolError(ValueError):
    """A protocol field is out of range; the message says which and why."""


@dataclass(frozen=True)
class Protocol:
    warmup: int = 100
    runs: int = 200
    repeats: int = 3
    threads: int = 1
    delegate: str = "xnnpack"
    taskset: str | None = None
    max_secs: int = DEFAULT_MAX_SECS
    run_timeout: float | None = None  # seconds; None: derived from the protocol (timeout_s)

    def __post_init__(self):
        if self.warmup < 0:
            raise ProtocolError(f"--warmup must be >= 0, got {self.warmup}")
        if self.runs < 1:
            raise ProtocolError(f"--runs must be >= 1, got {self.runs}")
        if self.repeats < 1:
            raise ProtocolError(f"--repeats must be >= 1, got {self.repeats}")
        if self.repeats > MAX_REPEATS:
            raise ProtocolError(f"--repeats must be at most {MAX_REPEATS} (run numbers beyond it are not read back), "
                                f"got {self.repeats}")
        if self.threads < 1:
            raise ProtocolError(f"--threads must be >= 1, got {self.threads}")
        if self.delegate not in DELEGATES:
            raise ProtocolError(f"--delegate must be one of {', '.join(DELEGATES)}, got {self.delegate!r}")
        if self.run_timeout is not None and not self.run_timeout > 0:
            raise ProtocolError(f"--run-timeout must be > 0 seconds, got {self.run_timeout}")
        if self.run_timeout is not None and self.run_timeout > MAX_RUN_TIMEOUT_S:
            raise ProtocolError(f"--run-timeout must be at most {MAX_RUN_TIMEOUT_S:g} seconds (7 days), "
                                f"got {self.run_timeout:g}")
        if self.taskset is not None and (not _MASK.match(self.taskset) or taskset_cpus(self.taskset) == []):
            raise ProtocolError(f"--taskset wants a non-zero hex CPU mask such as f0, got {self.taskset!r}")

    def as_dict(self) -> dict:
        """The fields; `run_timeout` only when given (the derived one is `timeout_s()`)."""
        d = asdict(self)
        if d["run_timeout"] is None:
            del d["run_timeout"]
        return d

    def timeout_s(self) -> float:
        """Seconds one run may take before it is stopped (--run-timeout, else derived from the
        protocol and clamped to MAX_RUN_TIMEOUT_S)."""
        if self.run_timeout is not None:
            return float(self.run_timeout)
        derived = RUN_TIMEOUT_FLOOR_S + RUN_TIMEOUT_MULTIPLE * (self.warmup + self.runs) * PER_INVOCATION_BOUND_S
        return min(derived, MAX_RUN_TIMEOUT_S)

    def benchmark_model_args(self, graph: str) -> list[str]:
        """The `benchmark_model` flags for one run of this protocol (exact counts)."""
        args = [
            f"--graph={graph}",
            f"--num_threads={self.threads}",
            f"--warmup_runs={self.warmup}",
            "--warmup_min_secs=0",
            f"--num_runs={self.runs}",
            "--min_secs=0",
            f"--max_secs={self.max_secs}",
        ]
        if self.delegate == "xnnpack":
            args.append("--use_xnnpack=true")
        elif self.delegate == "none":
            args.append("--use_xnnpack=false")
        elif self.delegate == "gpu":
            args.append("--use_gpu=true")
        elif self.delegate == "nnapi":
            args.append("--use_nnapi=true")
        return args


PIXEL1 = Protocol()


def taskset_cpus(mask: str) -> list[int]:
    """CPU indices selected by a hex affinity mask (`f0` -> [4, 5, 6, 7])."""
    value = int(mask, 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def cpu_list(text: str) -> list[int]:
    """A kernel CPU list (`0-3,6`, as /sys/devices/system/cpu/present holds) as indices; [] when unreadable."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return []
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def _span(cpus) -> str:
    cpus = sorted(cpus)
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 2 and cpus == list(range(cpus[0], cpus[-1] + 1)) else \
        ",".join(map(str, cpus))


def check_taskset(mask: str | None, available, where: str) -> None:
    """Refuse, before any run, a --taskset mask that selects none of the CPUs `where` can use
    (the runs would all fail). `available`: those CPUs' indices; empty when unknown (no check)."""
    if not mask or not available:
        return
    wanted = taskset_cpus(mask)
    if not set(wanted) & set(available):
        raise AmcError(f"--taskset {mask} selects CPU{'s' * (len(wanted) > 1)} {_span(wanted)}, but {where} "
                       f"CPU{'s' * (len(list(available)) > 1)} {_span(available)} only; nothing was run")
