"""A `benchmark_model` for the emulated device: takes benchmark_model's flags, runs the
model once through the project's in-process LiteRT runner (benchmarks.local.run_inprocess:
exact warm-up and timed counts, every invocation timed) and prints the log in
benchmark_model's current format. It runs on the host, so its numbers are the host CPU's.

`amc-tf device benchmark-binary OUT` writes a small sh wrapper around it that can be
pushed to the emulated device like an Android build of benchmark_model.
Exit status: 0, or 1 with `Benchmarking failed.` as the real tool does.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for a in argv:
        if not (a.startswith("--") and "=" in a):
            raise ValueError(f"unknown argument {a}")
        k, v = a[2:].split("=", 1)
        flags[k] = v
    return flags


def main(argv: list[str]) -> int:
    try:
        flags = _flags(argv)
        from amc_tf.benchmarks.protocol import Protocol

        if flags.get("use_gpu") == "true" or flags.get("use_nnapi") == "true":
            raise ValueError("the emulated device has neither a GPU nor an NNAPI delegate")
        graph = Path(flags.get("graph", ""))
        if not graph.is_file():
            raise ValueError(f"Could not open '{graph}'.")
        protocol = Protocol(warmup=int(flags.get("warmup_runs", "1")), runs=int(flags.get("num_runs", "50")),
                            repeats=1, threads=max(1, int(flags.get("num_threads", "1"))),
                            delegate="none" if flags.get("use_xnnpack") == "false" else "xnnpack")
        from amc_tf.benchmarks.local import run_inprocess

        text = run_inprocess(graph, protocol)
    except Exception as exc:  # the real tool's failure shape: a message, then the marker line
        print(f"ERROR: {exc}", file=sys.stderr)
        print("Benchmarking failed.", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def wrapper_script(python: str) -> str:
    """The pushable stand-in: /bin/sh running this module with the given Python."""
    import shlex

    return ("#!/bin/sh\n# amc-tf emulated device's benchmark_model (host LiteRT)\n"
            f"exec {shlex.quote(python)} -m amc_tf.benchmarks.adbemu.host_benchmark_model \"$@\"\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
