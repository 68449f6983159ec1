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

from dataclasses import asdict, dataclass, field
from pathlib import Path

from amc_tf.benchmarks import logkinds as K
from amc_tf.benchmarks import loglines as L
from amc_tf.benchmarks.loglines import MAX_KEPT, MAX_LOG_BYTES
from amc_tf.benchmarks.logparse_ops import OpTables, OpTiming


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
    that op-profiling tables can still be split into columns. (A list: for small texts and
    tests; the parser itself streams the lines, see `parse_chunks`.)"""
    return [L.clean(raw) for raw in L.iter_lines(L.text_chunks(text))]


def _stat(rest: str, count: int) -> dict:
    kv = L.key_values(rest)
    kv["count"] = count
    if "avg" not in kv and "curr" in kv:
        # single or identical samples print only `count=N curr=C` (+ "(all same)")
        c = kv["curr"]
        kv.update(first=kv.get("first", c), min=c, max=c, avg=c, std=0.0)
    return kv


def _parse_summary_items(body: str) -> dict[str, float]:
    return L.summary_items(body)


@dataclass
class _Scan:
    """What one pass over a log's lines collected, before any of it is interpreted. Lists hold
    at most MAX_KEPT entries each; the counters count every line."""

    headers: list[int] = field(default_factory=list)  # the iteration count each header announced
    n_headers: int = 0
    stats: list[dict] = field(default_factory=list)  # stat line that follows each header
    n_stats: int = 0
    loose_stats: list[dict] = field(default_factory=list)  # stat lines with no header (odd logs)
    summary: dict[str, float] | None = None
    summary_kind: str | None = None
    litert: dict[str, tuple[float, str | None, int | None]] = field(default_factory=dict)
    failed_line: bool = False
    errors: list[str] = field(default_factory=list)
    nonblank: int = 0
    lines: int = 0  # lines read that were not blank before cleaning (what MAX_LINES counts)
    starting: bool = False  # a "STARTING!" line
    too_long: bool = False  # over loglines.MAX_LINES non-blank lines: not read further
    expect_stat: bool = False
    in_litert: bool = False

    seen: set = field(default_factory=set)

    def error(self, s: str) -> None:
        s = s[:500]
        if len(self.errors) < MAX_KEPT:
            self.errors.append(s)
            self.seen.add(s)


def _scan_line(sc: _Scan, level: str, line: str, res: LogResult) -> None:
    """One cleaned line: collect stat lines, summaries, the LiteRT block and failure lines;
    fill the header facts (init time, memory, graph, threads) into `res`. Linear in the line."""
    s = line.strip()
    if not s:
        return
    sc.nonblank += 1
    if "STARTING!" in s:
        sc.starting = True
    if L.out_of_range_number(s):
        sc.error(f"ignored a line with a number out of range: {s[:120]}")
        return
    if level == "E":
        sc.error(s)
    n = K.header_iterations(s)
    if n is not None:
        sc.n_headers += 1
        if len(sc.headers) < MAX_KEPT:
            sc.headers.append(n)
        sc.expect_stat = True
        return
    st = K.stat_line(s)
    if st is not None and "Timings (" not in s and "Memory (" not in s:
        kv = _stat(st[1], st[0])
        if sc.expect_stat:
            sc.n_stats += 1
            if len(sc.stats) < MAX_KEPT:
                sc.stats.append(kv)
            sc.expect_stat = False
        elif len(sc.loose_stats) < MAX_KEPT:
            sc.loose_stats.append(kv)
        return
    sb = K.summary_body(s)
    if sb is not None:
        sc.summary = L.summary_items(sb[1])
        sc.summary_kind = sb[0]
        return
    if K.litert_block_title(s):
        sc.in_litert = True
        return
    if sc.in_litert:
        if s.startswith("====="):
            # the block's closing rule (a rule right under the title is decoration)
            sc.in_litert = not sc.litert
            return
        item = L.litert_item(s)
        if item is not None and (item[0] in sc.litert or len(sc.litert) < MAX_KEPT):
            sc.litert[item[0]] = item[1:]
        return
    v = K.init_session_us(s)
    if v is not None and res.init_us is None:
        res.init_us = v
        return
    mo = K.memory_overall(s)
    if mo is not None:
        res.memory_init_mb, res.memory_mb = mo
        return
    mp = K.memory_peak(s)
    if mp is not None:
        res.memory_mb = mp
        return
    if "Benchmarking failed" in s:
        sc.failed_line = True
        return
    if L.fail_reason(s) and s[:500] not in sc.seen:
        sc.error(s)
    if s.startswith("Graph: [") and res.graph is None:
        res.graph = s[len("Graph: ["):].rstrip("]")
    elif s.startswith("Num threads: [") and res.num_threads is None:
        t = s[len("Num threads: ["):].rstrip("]")
        if t.isascii() and t.isdigit() and len(t) <= 9:
            res.num_threads = int(t)


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


def _decide_status(sc: _Scan, timed: dict | None, res: LogResult) -> None:
    """ok, failed (with the reason) or no_result (with what is missing) — never a zero latency."""
    if sc.too_long:
        res.status, res.failed, res.format = "no_result", True, None
        res.error = (f"no result: over {L.MAX_LINES:,} non-blank lines, not a benchmark_model log "
                     "(those have a few hundred); the rest was not read")
        res.inference_avg_us = None
        return
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
        if not sc.nonblank:
            res.error = "no result: the log is empty"
        elif not sc.n_headers and not sc.summary and not sc.starting:
            res.error = "no result: this does not look like a benchmark_model log"
        elif sc.n_stats == 1:
            res.error = "no result: the log ends after the warm-up (run cut short?)"
        else:
            res.error = "no result: the log ends before the timed runs finished (run cut short?)"


def parse_chunks(chunks, source: str | None = None) -> LogResult:
    """Parse a log given as text chunks, one line at a time: time linear in the input, memory
    bounded (lines cut at loglines.MAX_LINE_CHARS, at most MAX_KEPT records of each kind kept)."""
    res = LogResult(source=source)
    sc = _Scan()
    tables = OpTables()
    for raw in L.iter_lines(chunks):
        if not raw or raw.isspace():
            if tables.section is not None:
                tables.feed("")
            continue
        sc.lines += 1
        if sc.lines > L.MAX_LINES:
            sc.too_long = True
            break
        level, line = L.clean(raw)
        if not line or line.isspace():  # only a prefix or escape codes: a blank line
            if tables.section is not None:
                tables.feed("")
            continue
        if level == "E" or sc.in_litert or sc.expect_stat or L.interesting(line):
            _scan_line(sc, level, line, res)
        else:
            sc.nonblank += 1
        if tables.section is not None or "=" in line or "Profiling Info" in line:
            tables.feed(line)
    timed = _apply_stats(sc, res)
    if sc.summary is not None:
        _apply_summary(sc.summary, sc.summary_kind, res)
    if sc.litert:
        _apply_litert(sc.litert, timed is not None, res)
    res.ops, res.ops_by_type = tables.result()
    res.details = sc.errors
    _decide_status(sc, timed, res)
    return res


def parse_text(text: str, source: str | None = None) -> LogResult:
    return parse_chunks(L.text_chunks(text), source)


def _open_log(path: str | Path):
    """The log opened as a regular file of at most MAX_LOG_BYTES, its first 64 KiB checked for
    a NUL byte (a binary file: a .tflite, an image...); AmcError naming the file otherwise."""
    from amc_tf.core.errors import AmcError
    from amc_tf.core.fileutil import FileTooLargeError, open_regular

    p = Path(path)
    try:
        fh = open_regular(p, MAX_LOG_BYTES)
    except FileTooLargeError:
        size = p.stat().st_size
        raise AmcError(f"{p} is {size / 2**20:,.0f} MiB, over the {MAX_LOG_BYTES // 2**20} MiB limit: "
                       "not a benchmark_model log (those are at most a few MB)") from None
    except OSError as exc:
        raise AmcError(f"cannot read {p}: {exc.strerror or exc}") from None
    head = fh.read(65536)
    if b"\0" in head:
        fh.close()
        what = " (a TFLite model)" if head[4:8] == b"TFL3" else ""
        raise AmcError(f"{p} is a binary file{what}, not a benchmark_model log")
    fh.seek(0)
    return fh


def check_log(path: str | Path) -> None:
    """AmcError when the file cannot be a benchmark_model log (see _open_log); reads 64 KiB."""
    _open_log(path).close()


def read_log(path: str | Path) -> str:
    """The text of a log file (at most MAX_LOG_BYTES), refused (AmcError naming the file) when
    it cannot be a benchmark_model log: not a regular file, over MAX_LOG_BYTES, or binary."""
    with _open_log(path) as fh:
        data = fh.read(MAX_LOG_BYTES + 1)
    if len(data) > MAX_LOG_BYTES:
        from amc_tf.core.errors import AmcError

        raise AmcError(f"{path} grew over the {MAX_LOG_BYTES // 2**20} MiB limit while being read")
    return data.decode("utf-8", errors="replace")


def parse_file(path: str | Path) -> LogResult:
    """Parse one log file, streamed (never held whole in memory); AmcError (exit 2) for a file
    that cannot be a log (see _open_log)."""
    with _open_log(path) as fh:
        return parse_chunks(L.file_chunks(fh, MAX_LOG_BYTES), source=str(Path(path)))
