"""Read `benchmark_model` logs of any vintage into one `LogResult`.

Formats met (all times in microseconds unless said):
  * 2018 (the AMC Pixel-1 logs): `native : file.cc:NNN ` prefixes, two
    `Running benchmark for N iterations ...` headers, each followed by a stat line, and
    `Average inference timings in us: Warmup: X, no stats: Y` (≤ TF 2.1 also
    `Average inference timings in us: Warmup: W, Init: I, Inference: A`).
  * current TFLite: `Running benchmark for at least N iterations ...` headers, stat
    lines (`count=N first=F curr=C min=m max=M avg=A std=S`, `avg` possibly in
    scientific notation, LiteRT adds `p5= median= p95=`), and
    `Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): A`,
    optional memory lines and op-profiling tables.
  * LiteRT's newer tool: a `========== BENCHMARK RESULTS ==========` block in ms.
  * prefixes (`INFO: `, `INFO: [file.h:81] `, logcat) and terminal noise anywhere.
  * failure: `Benchmarking failed.` / `Failed to apply ... delegate.`; or a log that
    simply holds no result (truncated, empty, not a benchmark log). Either way the
    numbers are None, never zero, and `failed`/`status`/`error` say what happened.

The timed average comes from the timed stat line when there is one: it carries more
digits than the 2018 summary (`avg=68307.7` vs `no stats: 68307`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amc_tf.benchmarks.logparse_ops import OpTiming, finite_number as _num, parse_op_tables

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\^\[\[[0-9;?]*[A-Za-z]")
_PREFIXES = (
    # logcat -v threadtime: "07-21 10:20:30.123  1234  1250 I tflite  : "
    re.compile(r"^\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?"),
    # logcat -v brief: "I/tflite  ( 1234): "
    re.compile(r"^[VDIWEF]/[^(:]*\(\s*\d+\):\s?"),
    # 2018 Android builds: "native : benchmark_tflite_model.cc:440 "
    re.compile(r"^native\s*:\s*\S+:\d+\s"),
)
_LEVEL = re.compile(r"^(INFO|WARNING|ERROR|VERBOSE|DEBUG|FATAL):\s?(?:\[[^\]]*:\d+\]\s?)?")
_LOGCAT_LEVEL = re.compile(r"^\d{2}-\d{2}\s+\S+\s+\d+\s+\d+\s+([VDIWEF])\s|^([VDIWEF])/")

_HEADER = re.compile(r"Running benchmark for (?:at least )?(\d+) iterations")
_STAT = re.compile(r"(?<![\w(])count=(\d+)(.*)$")
_KV = re.compile(rf"(\w+)=({NUM})")
_SUMMARY = re.compile(r"(Average inference timings|Inference timings) in us:\s*(.*)$")
_SUMMARY_ITEM = re.compile(rf"\s*([A-Za-z][A-Za-z ()]*?)\s*:\s*({NUM})")
_INIT_SESSION = re.compile(rf"Initialized session in ({NUM})\s*(ms|s)\b")
_MEM_OVERALL = re.compile(
    rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):\s*"
    rf"init=({NUM})\s+overall=({NUM})"
)
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUM})")
_LITERT_BLOCK = re.compile(r"^=*\s*BENCHMARK RESULTS\s*=*$")
_LITERT_ITEM = re.compile(rf"^\s*([A-Za-z][A-Za-z0-9 ()]*?):\s+({NUM})\s*(ms|MB|MB/s)?\s*(?:\((\d+) runs\))?")
_FAILED = re.compile(r"Benchmarking failed\.?")
_FAIL_REASON = re.compile(r"(Failed to .*|.*failed to prepare.*|Didn't find op .*|Aborted.*|Segmentation fault.*)")


@dataclass
class LogResult:
    """What one log says. Numbers are None when the log does not hold them."""

    source: str | None = None
    format: str | None = None  # "2018", "tflite", "litert" or None (no result)
    status: str = "no_result"  # "ok", "failed" (the tool said so), "no_result"
    failed: bool = True  # True unless the log holds a timed result
    error: str | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    init_us: float | None = None
    first_us: float | None = None
    count: int | None = None
    warmup_count: int | None = None
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    median_us: float | None = None
    memory_mb: float | None = None
    memory_init_mb: float | None = None
    graph: str | None = None
    num_threads: int | None = None
    ops: list[OpTiming] = field(default_factory=list)
    ops_by_type: dict[str, dict] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def inference_avg_ms(self) -> float | None:
        return None if self.inference_avg_us is None else self.inference_avg_us / 1000.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def clean_lines(text: str) -> list[tuple[str, str]]:
    """Split a log into (level, text) pairs with prefixes and terminal noise removed.

    level is "E" for error lines, "W" for warnings, "" otherwise. Tabs are kept so
    that op-profiling tables can still be split into columns.
    """
    out = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _ANSI.sub("", raw)
        level = ""
        m = _LOGCAT_LEVEL.match(line)
        if m:
            level = (m.group(1) or m.group(2)).replace("F", "E")
        for pat in _PREFIXES:
            line, n = pat.subn("", line, count=1)
            if n:
                break
        m = _LEVEL.match(line)
        if m:
            level = {"ERROR": "E", "FATAL": "E", "WARNING": "W"}.get(m.group(1), level)
            line = line[m.end():]
        out.append((level, line.rstrip()))
    return out


_NUM_TOKEN = re.compile(r"\d[\d.]*[eE][-+]?\d{3,}")  # exponents of 3+ digits: may overflow a float


def _stat(rest: str, count: int) -> dict:
    kv = {k: _num(v) for k, v in _KV.findall(rest)}
    kv["count"] = count
    if "avg" not in kv and "curr" in kv:
        # single or identical samples print only `count=N curr=C` (+ "(all same)")
        c = kv["curr"]
        kv.update(first=kv.get("first", c), min=c, max=c, avg=c, std=0.0)
    return kv


def _parse_summary_items(body: str) -> dict[str, float]:
    items = {}
    for part in body.split(","):
        m = _SUMMARY_ITEM.match(part)
        if m:
            items[m.group(1).strip().lower()] = _num(m.group(2))
    return items


@dataclass
class _Scan:
    """What one pass over a log's lines collected, before any of it is interpreted."""

    headers: list[int] = field(default_factory=list)  # the iteration count each header announced
    stats: list[dict] = field(default_factory=list)  # stat line that follows each header
    loose_stats: list[dict] = field(default_factory=list)  # stat lines with no header (odd logs)
    summary: dict[str, float] | None = None
    summary_kind: str | None = None
    litert: dict[str, tuple[float, str | None, int | None]] = field(default_factory=dict)
    failed_line: bool = False
    errors: list[str] = field(default_factory=list)


def _scan(pairs, res: LogResult) -> _Scan:
    """One pass over the cleaned lines: collect stat lines, summaries, the LiteRT block and
    failure lines; fill the header facts (init time, memory, graph, threads) into `res`."""
    sc = _Scan()
    expect_stat = in_litert = False
    for level, line in pairs:
        s = line.strip()
        if not s:
            continue
        if _NUM_TOKEN.search(s) and any(math.isinf(float(t)) for t in _NUM_TOKEN.findall(s)):
            sc.errors.append(f"ignored a line with a number out of range: {s[:120]}")
            continue
        if level == "E":
            sc.errors.append(s)
        m = _HEADER.search(s)
        if m:
            sc.headers.append(int(m.group(1)))
            expect_stat = True
            continue
        m = _STAT.search(s)
        if m and "Timings (" not in s and "Memory (" not in s:
            st = _stat(m.group(2), int(m.group(1)))
            if expect_stat:
                sc.stats.append(st)
                expect_stat = False
            else:
                sc.loose_stats.append(st)
            continue
        m = _SUMMARY.search(s)
        if m:
            sc.summary = _parse_summary_items(m.group(2))
            sc.summary_kind = "2018" if m.group(1).startswith("Average") else "tflite"
            continue
        if _LITERT_BLOCK.search(s):
            in_litert = True
            continue
        if in_litert:
            if s.startswith("====="):
                # the block's closing rule (a rule right under the title is decoration)
                in_litert = not sc.litert
                continue
            m = _LITERT_ITEM.match(s)
            if m:
                sc.litert[m.group(1).strip().lower()] = (_num(m.group(2)), m.group(3),
                                                         int(m.group(4)) if m.group(4) else None)
            continue
        m = _INIT_SESSION.search(s)
        if m and res.init_us is None:
            v = _num(m.group(1))
            res.init_us = v * (1e6 if m.group(2) == "s" else 1e3)
            continue
        m = _MEM_OVERALL.search(s)
        if m:
            res.memory_init_mb, res.memory_mb = _num(m.group(1)), _num(m.group(2))
            continue
        m = _MEM_PEAK.search(s)
        if m:
            res.memory_mb = _num(m.group(1))
            continue
        if _FAILED.search(s):
            sc.failed_line = True
            continue
        if _FAIL_REASON.search(s) and s not in sc.errors:
            sc.errors.append(s)
        if s.startswith("Graph: [") and res.graph is None:
            res.graph = s[len("Graph: ["):].rstrip("]")
        elif s.startswith("Num threads: [") and res.num_threads is None:
            try:
                res.num_threads = int(s[len("Num threads: ["):].rstrip("]"))
            except ValueError:
                pass
    return sc


def _apply_stats(sc: _Scan, res: LogResult) -> dict | None:
    """Stat lines: the first header's is the warm-up, the second's the timed runs. Returns the
    timed stat line, if any."""
    warm = sc.stats[0] if len(sc.stats) >= 1 else None
    timed = sc.stats[1] if len(sc.stats) >= 2 else None
    if not sc.headers and len(sc.loose_stats) >= 2:
        warm, timed = sc.loose_stats[0], sc.loose_stats[1]
    if warm:
        res.warmup_count = int(warm["count"])
        res.warmup_avg_us = warm.get("avg")
        res.first_us = warm.get("first")
    if timed:
        res.count = int(timed["count"])
        res.inference_avg_us = timed.get("avg")
        res.std_us = timed.get("std")
        res.min_us = timed.get("min")
        res.max_us = timed.get("max")
        res.median_us = timed.get("median")
    return timed


def _apply_summary(summary: dict[str, float], kind: str, res: LogResult) -> None:
    """The `(Average) Inference timings in us:` line fills what the stat lines did not."""
    res.format = kind
    w = summary.get("warmup (avg)", summary.get("warmup"))
    if res.warmup_avg_us is None and w is not None:
        res.warmup_avg_us = w
    inf = summary.get("inference (avg)", summary.get("inference", summary.get("no stats")))
    if res.inference_avg_us is None and inf is not None:
        res.inference_avg_us = inf
    if "init" in summary:
        res.init_us = summary["init"]
    if "first inference" in summary:
        res.first_us = summary["first inference"]


def _apply_litert(litert: dict[str, tuple[float, str | None, int | None]], have_stat_lines: bool,
                  res: LogResult) -> None:
    """The newer LiteRT tool's BENCHMARK RESULTS block (milliseconds)."""
    res.format = res.format or "litert"

    def ms(key):
        v = litert.get(key)
        return None if v is None else v[0] * 1000.0

    if "model initialization" in litert:
        res.init_us = ms("model initialization")
    first = ms("warmup (first)") if "warmup (first)" in litert else ms("first inference")
    if first is not None:
        res.first_us = first
    if not have_stat_lines:
        # the stat lines (µs, 6 digits) beat the block (ms, 2 decimals) when both exist
        res.warmup_avg_us = ms("warmup (avg)") if "warmup (avg)" in litert else res.warmup_avg_us
        if "warmup (avg)" in litert and litert["warmup (avg)"][2] is not None:
            res.warmup_count = litert["warmup (avg)"][2]
        res.inference_avg_us = ms("inference (avg)")
        if "inference (avg)" in litert and litert["inference (avg)"][2] is not None:
            res.count = litert["inference (avg)"][2]
        res.min_us = ms("inference (min)")
        res.max_us = ms("inference (max)")
        res.std_us = ms("inference (std)")
        res.median_us = ms("inference (median)")
    if "overall footprint" in litert:
        res.memory_mb = litert["overall footprint"][0]
    if "init footprint" in litert:
        res.memory_init_mb = litert["init footprint"][0]
    if "peak memory" in litert:
        res.memory_mb = litert["peak memory"][0]


def _decide_status(sc: _Scan, timed: dict | None, lines: list[str], text: str, res: LogResult) -> None:
    """ok, failed (with the reason) or no_result (with what is missing) — never a zero latency."""
    has_result = res.inference_avg_us is not None and (sc.summary is not None or sc.litert or timed is not None)
    if has_result and res.count == 0:
        has_result = False
    if has_result:
        res.status, res.failed, res.error = "ok", False, None
        if res.format is None:
            res.format = "tflite"
    elif sc.failed_line or sc.errors:
        res.status, res.failed = "failed", True
        reason = next((e for e in reversed(sc.errors) if e.startswith("Failed to")), None)
        reason = reason or (sc.errors[0] if sc.errors else None)
        res.error = f"Benchmarking failed: {reason}" if reason else "Benchmarking failed (the log gives no reason)"
        res.format = None
    else:
        res.status, res.failed, res.format = "no_result", True, None
        if not any(l.strip() for l in lines):
            res.error = "no result: the log is empty"
        elif not sc.headers and not sc.summary and "STARTING!" not in text:
            res.error = "no result: this does not look like a benchmark_model log"
        elif len(sc.stats) == 1:
            res.error = "no result: the log ends after the warm-up (run cut short?)"
        else:
            res.error = "no result: the log ends before the timed runs finished (run cut short?)"


def parse_text(text: str, source: str | None = None) -> LogResult:
    res = LogResult(source=source)
    pairs = clean_lines(text)
    lines = [t for _, t in pairs]
    sc = _scan(pairs, res)
    timed = _apply_stats(sc, res)
    if sc.summary is not None:
        _apply_summary(sc.summary, sc.summary_kind, res)
    if sc.litert:
        _apply_litert(sc.litert, timed is not None, res)
    res.ops, res.ops_by_type = parse_op_tables(lines)
    res.details = sc.errors
    _decide_status(sc, timed, lines, text, res)
    return res


MAX_LOG_BYTES = 64 * 2**20  # a benchmark_model log is at most a few MB; anything far larger is not one


def read_log(path: str | Path) -> str:
    """The text of a log file, refused (AmcError naming the file) when it cannot be a
    benchmark_model log: over MAX_LOG_BYTES (checked before reading, and the read is bounded)
    or binary (a NUL byte in its first 64 KiB: a .tflite, an image, ...)."""
    import os

    from amc_tf.core.errors import AmcError

    p = Path(path)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = b"" if size > MAX_LOG_BYTES else fh.read(MAX_LOG_BYTES + 1)
    except OSError as exc:
        raise AmcError(f"cannot read {p}: {exc.strerror or exc}") from None
    if size > MAX_LOG_BYTES or len(data) > MAX_LOG_BYTES:
        raise AmcError(f"{p} is {max(size, len(data)) / 2**20:,.0f} MiB, over the {MAX_LOG_BYTES // 2**20} MiB limit: "
                       "not a benchmark_model log (those are at most a few MB)")
    head = data[:65536]
    if b"\0" in head:
        what = " (a TFLite model)" if head[4:8] == b"TFL3" else ""
        raise AmcError(f"{p} is a binary file{what}, not a benchmark_model log")
    return data.decode("utf-8", errors="replace")


def parse_file(path: str | Path) -> LogResult:
    """Parse one log file; AmcError (exit 2) for a file too large or binary (see read_log)."""
    return parse_text(read_log(path), source=str(Path(path)))
