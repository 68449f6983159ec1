"""One sanitizer for text that came from files or file names before it reaches a terminal.

A file name, a log line, an ONNX node name or a JSON string can hold terminal escape sequences
(ESC [ ... : colours, cursor moves, window titles), other C0/C1 control characters, or a newline
followed by `error: ...`, which would forge a line of the tool's own output. `safe` makes every
such character visible instead:

* `\\n`, `\\r`, `\\t` for newline, carriage return and tab; `\\xHH` for the other C0 characters,
  DEL and the C1 range (U+0080-U+009F); `\\uHHHH` for the Unicode line/paragraph separators and the
  bidirectional overrides (which reorder what a terminal shows);
* `\\xHH` for a byte of a file name that is not UTF-8 (Python carries it as a lone surrogate,
  which could not even be printed).

`safe_lines` does the same but keeps newlines: for the tool's own multi-line output (tables,
reports), whose untrusted parts (names, errors) were each passed through `safe` when composed.
The CLI's output layer (amc_tf/cli/output.py) and its error boundary use these for everything.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNICODE_CONTROLS = frozenset(
    [0x2028, 0x2029, 0x200E, 0x200F, 0x061C] + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)))


def _escape(ch: str) -> str:
    o = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if o < 0x20 or 0x7F <= o <= 0x9F:
        return f"\\x{o:02x}"
    if 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's surrogateescape: an undecodable byte of a file name
        return f"\\x{o - 0xDC00:02x}"
    if 0xD800 <= o <= 0xDFFF:
        return f"\\u{o:04x}"
    return f"\\u{o:04x}"


def _needs_escape(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in _UNICODE_CONTROLS


def safe(text) -> str:
    """`text` (any object: str() of it) with every control character made visible; one line."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable() and s.isascii():  # the common case, C speed
        return s
    return "".join(_escape(c) if _needs_escape(c) else c for c in s)


def safe_lines(text) -> str:
    """As `safe`, but newlines are kept (the tool's own line structure); \\r and every other
    control character are still escaped, so no line can be overwritten or recoloured."""
    s = text if isinstance(text, str) else str(text)
    if "\n" not in s:
        return safe(s)
    return "\n".join(safe(part) for part in s.split("\n"))
