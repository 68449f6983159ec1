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
