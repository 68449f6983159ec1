"""The line kinds of a benchmark_model log (one function per kind of line), on the linear
helpers of benchmarks/loglines.py: no regex that can backtrack, every number bounded."""

from __future__ import annotations

from amc_tf.benchmarks.loglines import _digits, leading_number  # noqa: F401


def _count(s: str) -> int | None:
    return int(s) if s and s.isascii() and s.isdigit() and len(s) <= 18 else None


def header_iterations(s: str) -> int | None:
    """`Running benchmark for [at least ]N iterations` -> N."""
    i = s.find("Running benchmark for ")
    if i < 0:
        return None
    i += len("Running benchmark for ")
    if s.startswith("at least ", i):
        i += len("at least ")
    j = _digits(s, i)
    if j == i or not s.startswith(" iterations", j):
        return None
    return _count(s[i:j])


def stat_line(s: str) -> tuple[int, str] | None:
    """`... count=N rest` (not preceded by a word character or '(') -> (N, rest)."""
    i = s.find("count=")
    while i >= 0:
        before = s[i - 1] if i > 0 else " "
        if not (before.isalnum() or before in "_("):
            j = _digits(s, i + 6)
            n = _count(s[i + 6:j])
            if n is not None:
                return n, s[j:]
        i = s.find("count=", i + 1)
    return None


def summary_body(s: str) -> tuple[str, str] | None:
    """(`2018` or `tflite`, the text after `... timings in us:`)."""
    for marker, kind in (("Average inference timings in us:", "2018"), ("Inference timings in us:", "tflite")):
        i = s.find(marker)
        if i >= 0:
            return kind, s[i + len(marker):]
    return None


def _number_after(s: str, marker: str) -> tuple[float, int] | None:
    i = s.find(marker)
    if i < 0:
        return None
    got = leading_number(s[i + len(marker):])
    if got is None:
        return None
    return got[0], i + len(marker) + got[1]


def init_session_us(s: str) -> float | None:
    """`Initialized session in 12.3ms` (or `s`) -> microseconds."""
    i = s.find("Initialized session in ")
    if i < 0:
        return None
    rest = s[i + len("Initialized session in "):]
    got = leading_number(rest)
    if got is None:
        return None
    unit = rest[got[1]:].lstrip(" \t")
    for u, scale in (("ms", 1e3), ("s", 1e6)):
        if unit.startswith(u) and (len(unit) == len(u) or not (unit[len(u)].isalnum() or unit[len(u)] == "_")):
            return got[0] * scale
    return None


def memory_overall(s: str) -> tuple[float, float] | None:
    """`Peak memory footprint (MB): init=I overall=O` (or the `delta` form) -> (I, O)."""
    for marker in ("Peak memory footprint (MB):", "Memory footprint delta from the start of the tool (MB):"):
        i = s.find(marker)
        if i < 0:
            continue
        rest = s[i + len(marker):].lstrip(" \t")
        if not rest.startswith("init="):
            continue
        init = leading_number(rest[5:])
        if init is None:
            continue
        tail = rest[5 + init[1]:]
        if not tail[:1].isspace():
            continue
        tail = tail.lstrip()
        if not tail.startswith("overall="):
            continue
        overall = leading_number(tail[8:])
        if overall is not None and not tail[8:8 + 1].isspace():
            return init[0], overall[0]
    return None


def memory_peak(s: str) -> float | None:
    got = _number_after(s, "Overall peak memory footprint (MB) via periodic monitoring:")
    return None if got is None else got[0]


def litert_block_title(s: str) -> bool:
    return s.strip("=").strip() == "BENCHMARK RESULTS"
