"""Linear-time, bounded reading of `benchmark_model` output, line by line.

Logs and device output are untrusted: a device or a binary can print anything. Everything here
runs in time linear in the input and memory bounded by constants, whatever the input:

* `iter_lines` splits a stream of text chunks into lines without building a list of them, and
  cuts every line at MAX_LINE_CHARS (a real benchmark line is under 200 characters);
* the per-line helpers (`clean`, `number_at`, `key_values`, `summary_items`, `fail_reason`,
  `out_of_range_number`) scan by hand or with `str` methods: no regex with nested or
  overlapping quantifiers, so nothing backtracks;
* callers keep at most MAX_KEPT records of a kind (error lines, stat lines, op rows).
"""

from __future__ import annotations

import codecs
import re
from typing import BinaryIO, Iterable, Iterator

MAX_LINE_CHARS = 4096  # a line is cut here (benchmark_model's longest lines are op-table rows, < 300)
MAX_KEPT = 1000  # error lines, stat lines, op rows... kept per log; the rest are counted, not stored
MAX_LOG_BYTES = 64 * 2**20  # a benchmark_model log is at most a few MB
MAX_LINES = 200_000  # non-blank lines of one log: a benchmark_model log has < 2,000
MAX_REPEATS = 1000  # run numbers k of `<name>_run<k>.txt` beyond this are not runs of ours
_CHUNK_CHARS = 1 << 20
# Two or more line breaks with only blanks between them. Linear: an attempt starts only at a
# newline and scans one run of whitespace (backtracking at most over that run's last blanks).
_BLANK_RUN = re.compile(r"\n[\n \t\f\v]+\n")


def iter_lines(chunks: Iterable[str], max_line: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of the concatenated `chunks` (split at \\n, \\r\\n and \\r), each cut at `max_line`
    characters. Memory: one chunk's lines plus one partial line, whatever the input; time linear
    (each chunk is split by str methods once)."""
    carry = ""  # the unfinished last line of the previous chunk (already cut at max_line)
    held_cr = False
    for chunk in chunks:
        if not chunk:
            continue
        if held_cr:
            chunk = "\r" + chunk
            held_cr = False
        if chunk.endswith("\r"):  # maybe the first half of a \r\n split across chunks
            chunk, held_cr = chunk[:-1], True
        # a run of blank lines becomes one (the parser never needs more): the split list stays
        # short for a log of nothing but newlines (one linear regex pass, C speed)
        chunk = _BLANK_RUN.sub("\n\n", chunk.replace("\r\n", "\n").replace("\r", "\n"))
        parts = chunk.split("\n")
        if len(parts) == 1:
            if len(carry) < max_line:
                carry = (carry + parts[0])[:max_line]
            continue
        first = (carry + parts[0])[:max_line] if len(carry) < max_line else carry
        yield first
        for k in range(1, len(parts) - 1):
            line = parts[k]
            yield line if len(line) <= max_line else line[:max_line]
        carry = parts[-1][:max_line]
    if held_cr:
        yield carry
        carry = ""
    if carry:
        yield carry


def text_chunks(text: str) -> Iterator[str]:
    for i in range(0, len(text), _CHUNK_CHARS):
        yield text[i:i + _CHUNK_CHARS]


def file_chunks(fh: BinaryIO, max_bytes: int = MAX_LOG_BYTES) -> Iterator[str]:
    """Decoded text (UTF-8, bad bytes replaced) of at most `max_bytes` of a binary stream."""
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    left = max_bytes
    while left > 0:
        data = fh.read(min(1 << 20, left))
        if not data:
            break
        left -= len(data)
        yield dec.decode(data)
    yield dec.decode(b"", final=True)


# --- one line ------------------------------------------------------------------------------

def strip_ansi(line: str) -> str:
    """The line without terminal escape sequences (CSI `ESC [ ... letter`, `ESC ( X`, and the
    caret form `^[[...m`). Linear: each alternative starts with ESC or `^[[` and its repeated
    class excludes both, so a failed attempt never rescans past the next escape."""
    if "\x1b" not in line and "^[" not in line:
        return line
    return _ANSI.sub("", line)


_LEVELS = {"INFO": "", "WARNING": "W", "ERROR": "E", "VERBOSE": "", "DEBUG": "", "FATAL": "E"}
_LOGCAT_LETTERS = "VDIWEF"


# Every regex below is linear: a single character class repeated, or alternatives that are
# fixed strings, matched at one position (no nested or overlapping quantifiers).
_DIGIT_RUN = re.compile(r"[0-9]*")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BIG_EXPONENT = re.compile(r"[eE][-+]?[0-9]{3}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\^\[\[[0-9;?]*[A-Za-z]")
_INTERESTING = re.compile("|".join(re.escape(k) for k in (
    "count=", "Running benchmark for ", "timings in us:", "BENCHMARK RESULTS", "Initialized session in ",
    "footprint", "Benchmarking failed", "Failed to ", "failed to prepare", "Didn't find op ", "Aborted",
    "Segmentation fault", "Graph: [", "Num threads: [", "STARTING!")))


def _digits(s: str, i: int, exactly: int | None = None) -> int:
    """End of the run of ASCII digits starting at i (i itself when there is none)."""
    j = _DIGIT_RUN.match(s, i).end()
    if exactly is not None and j - i > exactly:
        j = i + exactly
    return j


def interesting(s: str) -> bool:
    """False for a line no rule of the parser can use (most noise): one linear regex pass."""
    return _INTERESTING.search(s) is not None or _BIG_EXPONENT.search(s) is not None


def _spaces(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _logcat_threadtime(s: str) -> tuple[str, int] | None:
    """`MM-DD HH:MM:SS.mmm  PID  TID L TAG: ` -> (level letter, end of the prefix)."""
    if len(s) < 6 or _digits(s, 0, 2) != 2 or s[2] != "-" or _digits(s, 3, 2) != 5:
        return None
    i = _spaces(s, 5)
    if i == 5:
        return None
    j = i
    while j < len(s) and s[j] not in " \t":
        j += 1
    if j == i:
        return None
    fields = []
    for _ in range(2):  # pid, tid
        k = _spaces(s, j)
        if k == j:
            return None
        e = _digits(s, k)
        if e == k:
            return None
        fields.append(s[k:e])
        j = e
    k = _spaces(s, j)
    if k == j or k >= len(s) or s[k] not in _LOGCAT_LETTERS or k + 1 >= len(s) or s[k + 1] not in " \t":
        return None
    level = s[k]
    colon = s.find(":", k + 1)
    if colon < 0:
        return level, -1
    end = colon + 1
    if end < len(s) and s[end] == " ":
        end += 1
    return level, end


def _logcat_brief(s: str) -> tuple[str, int] | None:
    """`L/TAG ( PID): ` -> (level letter, end of the prefix)."""
    if len(s) < 2 or s[0] not in _LOGCAT_LETTERS or s[1] != "/":
        return None
    paren = s.find("(", 2)
    colon = s.find(":", 2)
    if paren < 0 or (0 <= colon < paren):
        return s[0], -1
    close = s.find("):", paren)
    if close < 0 or s[paren + 1:close].strip(" \t") == "" or not s[paren + 1:close].strip(" \t").isdigit():
        return s[0], -1
    end = close + 2
    if end < len(s) and s[end] == " ":
        end += 1
    return s[0], end


def _native_prefix(s: str) -> int:
    """`native : file.cc:440 ` -> end of the prefix, or -1."""
    if not s.startswith("native"):
        return -1
    i = _spaces(s, 6)
    if i >= len(s) or s[i] != ":":
        return -1
    i = _spaces(s, i + 1)
    j = i
    while j < len(s) and s[j] not in " \t\n":
        j += 1
    token = s[i:j]
    if j >= len(s) or not token:
        return -1
    name, sep, num = token.rpartition(":")
    if not sep or not name or not num.isdigit() or not num.isascii():
        return -1
    return j + 1


def clean(raw: str) -> tuple[str, str]:
    """(level, text) of one raw line: terminal escapes, logcat / 2018 `native :` prefixes and
    `INFO:`-style levels (with an optional `[file.h:81]`) removed. level: "E" error, "W" warning,
    "" otherwise. Linear in the line."""
    line = strip_ansi(raw)
    level = ""
    lc = _logcat_threadtime(line)
    if lc is not None:
        level = lc[0].replace("F", "E")
        if lc[1] >= 0:
            line = line[lc[1]:]
    else:
        lb = _logcat_brief(line)
        if lb is not None:
            level = lb[0].replace("F", "E")
            if lb[1] >= 0:
                line = line[lb[1]:]
        else:
            end = _native_prefix(line)
            if end >= 0:
                line = line[end:]
    colon = line.find(":", 0, 9)
    if colon > 0 and line[:colon] in _LEVELS:
        level = _LEVELS[line[:colon]] or level
        i = colon + 1
        if i < len(line) and line[i] in " \t\n\r\f\v":
            i += 1
        if i < len(line) and line[i] == "[":
            close = line.find("]", i)
            inner = line[i + 1:close] if close > 0 else ""
            _, sep, num = inner.rpartition(":")
            if close > 0 and sep and num.isdigit() and num.isascii():
                i = close + 1
                if i < len(line) and line[i] in " \t\n\r\f\v":
                    i += 1
        line = line[i:]
    return level, line.rstrip()


# --- numbers -------------------------------------------------------------------------------

def number_at(s: str, i: int) -> int:
    """End of the decimal number (`[-+]digits[.digits][e[-+]digits]`, or `.digits`) starting at
    i, or i when none starts there (one anchored, unambiguous regex match: linear)."""
    m = _NUMBER.match(s, i)
    return m.end() if m else i


def to_number(token: str) -> float:
    """A finite float, or ValueError (NaN, infinities, overflow, not a number)."""
    v = float(token)
    if v - v != 0.0:
        raise ValueError(token)
    return v


def leading_number(s: str) -> tuple[float, int] | None:
    """(value, end) of the finite number at the start of `s` (after spaces), or None."""
    i = _spaces(s, 0)
    j = number_at(s, i)
    if j == i:
        return None
    try:
        return to_number(s[i:j]), j
    except ValueError:
        return None


def out_of_range_number(s: str) -> bool:
    """True when the line holds a number with an exponent of 3+ digits that overflows a float
    (such a line is ignored, not parsed as infinity). One pass over the line."""
    if _BIG_EXPONENT.search(s) is None:
        return False
    i, n = 0, len(s)
    while True:
        e = _find_any(s, "eE", i)
        if e < 0:
            return False
        k = e + 1
        if k < n and s[k] in "+-":
            k += 1
        end = _digits(s, k)
        if end - k >= 3:
            start = e
            while start > 0 and ("0" <= s[start - 1] <= "9" or s[start - 1] == "."):
                start -= 1
            mantissa = s[start:e].lstrip(".")
            if mantissa and mantissa[0] != ".":
                try:
                    if float(mantissa + s[e:end]) == float("inf"):
                        return True
                except ValueError:
                    pass
        i = max(end, e + 1)


def _find_any(s: str, chars: str, i: int) -> int:
    best = -1
    for c in chars:
        j = s.find(c, i)
        if j >= 0 and (best < 0 or j < best):
            best = j
    return best


_KEY_VALUE = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z0-9_]+)=(" + _NUMBER.pattern + ")")


def key_values(rest: str) -> dict[str, float]:
    """`key=number` pairs of a stat line (`first=F curr=C min=m ... p95=X`), finite numbers only.
    Linear: a key can start only where a word starts (the lookbehind), so each word is scanned
    once, and the number is the anchored unambiguous _NUMBER."""
    out: dict[str, float] = {}
    for key, value in _KEY_VALUE.findall(rest):
        v = float(value)
        if v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
            out[key] = v
    return out


def summary_items(body: str) -> dict[str, float]:
    """`Init: I, First inference: F, Warmup (avg): W, Inference (avg): A` -> {"init": I, ...}
    (lowercase names; items without a finite number are left out)."""
    items = {}
    for part in body.split(","):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or not name or not name[0].isascii() or not name[0].isalpha():
            continue
        if any(not (c.isascii() and (c.isalpha() or c in " ()")) for c in name):
            continue
        got = leading_number(value)
        if got is not None:
            items[name.lower()] = got[0]
    return items


def litert_item(s: str) -> tuple[str, float, str | None, int | None] | None:
    """`Inference (avg): 12.3 ms (50 runs)` -> (name lowercased, 12.3, "ms", 50), else None."""
    name, sep, rest = s.partition(":")
    name = name.strip()
    if not sep or not name or not name[0].isascii() or not name[0].isalpha():
        return None
    if any(not (c.isascii() and (c.isalnum() or c in " ()")) for c in name):
        return None
    if not rest[:1].isspace():
        return None
    got = leading_number(rest)
    if got is None:
        return None
    value, end = got
    tail = rest[end:].strip()
    unit = None
    for u in ("MB/s", "ms", "MB"):
        if tail.startswith(u) and (len(tail) == len(u) or not tail[len(u)].isalnum()):
            unit, tail = u, tail[len(u):].strip()
            break
    runs = None
    if tail.startswith("(") and tail.endswith(" runs)"):
        inner = tail[1:-len(" runs)")]
        if inner.isdigit() and inner.isascii() and len(inner) < 10:
            runs = int(inner)
    return name.lower(), value, unit, runs


_FAIL_MARKERS = ("Failed to ", "failed to prepare", "Didn't find op ", "Aborted", "Segmentation fault")


def fail_reason(s: str) -> bool:
    """True when the line says why a run failed (substring tests only: linear)."""
    return any(m in s for m in _FAIL_MARKERS)


def last_line(text: str, window: int = 65536) -> str:
    """The last non-blank line of `text`, looked for in its last `window` characters only."""
    tail = text[-window:]
    for line in reversed(list(iter_lines(text_chunks(tail)))):
        if line.strip():
            return line.strip()[:MAX_LINE_CHARS]
    return ""


def run_number(k: str) -> int | None:
    """The run number of a `<name>_run<k>.txt` name, or None when it cannot be one of ours
    (over MAX_REPEATS, zero, or absurdly long): a file name is not trusted to size a loop."""
    if not k.isascii() or not k.isdigit() or len(k) > len(str(MAX_REPEATS)):
        return None
    v = int(k)
    return v if 1 <= v <= MAX_REPEATS else None
