"""What every command shares: its JSON output, and the no-op decorator older command modules
still wear. Commands import this, never `amc_tf.cli.app` (which imports them)."""

from __future__ import annotations

import json

import click


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


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
        click.echo(f"\r\x1b[K{message}", err=True)
        if self._shown:
            self._last = 0.0
            self.update(*self._state)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.update(*self._state, final=True)
            click.echo("", err=True)
            self._shown = False
