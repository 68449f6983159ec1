"""Option types shared by the commands: numbers checked for range (and finiteness) by
click while it parses, so a bad value is refused before any work starts."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.ParamType):
    """A finite float in (low, high) or [low, high]: `FiniteFloat(low=0, low_open=True)` is > 0."""

    name = "float"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False,
                 high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def _range(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            v = value
        else:
            try:
                v = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        bad = not math.isfinite(v)
        if self.low is not None:
            bad = bad or (v <= self.low if self.low_open else v < self.low)
        if self.high is not None:
            bad = bad or (v >= self.high if self.high_open else v > self.high)
        if bad:
            self.fail(f"{value} is not a finite number {self._range()}", param, ctx)
        return v


BN_EPS = FiniteFloat(low=0, high=1, low_open=True, high_open=True)
NON_NEGATIVE = FiniteFloat(low=0)


class Aliased(click.Option):
    """An option with old spellings that still parse but are not shown in --help nor in error
    hints: `@click.option("--images", "images", cls=Aliased, aliases=("--data",), ...)`.
    `docs/cli.md`'s vocabulary table lists them (tests/test_cli_vocabulary.py)."""

    def __init__(self, param_decls=None, aliases: tuple[str, ...] = (), **attrs):
        self.aliases = tuple(aliases)
        super().__init__([*(param_decls or ()), *self.aliases], **attrs)

    def _shown(self, names):
        return [n for n in names if n not in self.aliases]

    def get_help_spec(self, ctx) -> str:
        opts, secondary = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = self._shown(opts), self._shown(secondary)
        try:
            return super().get_help_spec(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary

    def get_error_hint(self, ctx) -> str:
        return " / ".join(f"'{n}'" for n in self._shown(self.opts))
