"""What every command shares: its JSON output, and the no-op decorator older command modules
still wear. Commands import this, never `amc_tf.cli.app` (which imports them)."""

from __future__ import annotations

import json

import click


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def echo(message="", err: bool = False, nl: bool = True) -> None:
    """One line of output (stdout, or stderr with err=True): every control character in it, a
    newline included, is made visible (amc_tf.core.textsafe.safe), so text from files and file
    names can neither forge a line (`\\nerror: ...`) nor send escape sequences to the terminal."""
    from amc_tf.core.textsafe import safe

    click.echo(safe(message), err=err, nl=nl)


def echo_block(text: str, err: bool = False, nl: bool = True) -> None:
    """The tool's own multi-line output (a table, a report): newlines kept, every other control
    character made visible. Untrusted parts (names, errors) are passed through `safe` when the
    block is composed, so a newline inside them cannot start a line."""
    from amc_tf.core.textsafe import safe_lines

    click.echo(safe_lines(text), err=err, nl=nl)


def progress(message: str) -> None:
    """A progress or skip line on stderr, sanitized as `echo`."""
    echo(message, err=True)


def say_skipped(items) -> None:
    """Skipped files, one rule in every command: each named on stderr (even with -q, like a
    warning) as `amc-tf: skipped (unreadable): FILE: WHY`; --json holds them as "skipped_files"."""
    for item in items:
        echo(f"amc-tf: skipped (unreadable): {item['file']}: {item['error']}", err=True)


class ProgressBar:
    """One progress bar on stderr for a whole run: `done/total` tasks with an ETA (from the
    tasks computed so far; cached ones count as done but not towards the rate), redrawn at
    most 4 times a second; `line()` prints a message above it."""

    def __init__(self, enabled: bool, unit: str = "tasks", width: int = 24):
        import time

        self.enabled, self.unit, self.width = enabled, unit, width
        self._t0 = time.monotonic()
        self._last = 0.0
        self._state = (0, 0, 0)
        self._shown = False

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(round(seconds))
        h, rest = divmod(seconds, 3600)
        return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"

    def text(self, done: int, total: int, cached: int, now: float) -> str:
        elapsed = now - self._t0
        frac = done / total if total else 1.0
        filled = int(round(self.width * frac))
        computed = done - cached
        if done >= total:
            eta = "done"
        elif computed > 0:
            eta = "ETA " + self._clock(elapsed / computed * (total - done))
        else:
            eta = "ETA --:--"
        extra = f", {cached} cached" if cached else ""
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {self.unit}{extra}  "
                f"{self._clock(elapsed)} elapsed  {eta}")

    def update(self, done: int, total: int, cached: int = 0, final: bool = False) -> None:
        import time

        self._state = (done, total, cached)
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.25 and not final):
            return
        self._last = now
        click.echo(f"\r{self.text(done, total, cached, now)}\x1b[K", err=True, nl=False)
        self._shown = True

    def line(self, message: str) -> None:
        if not self.enabled:
            return
        from amc_tf.core.textsafe import safe

        click.echo(f"\r\x1b[K{safe(message)}", err=True)
        if self._shown:
            self._last = 0.0
            self.update(*self._state)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.update(*self._state, final=True)
            click.echo("", err=True)
            self._shown = False
