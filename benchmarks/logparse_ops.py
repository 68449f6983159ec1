"""The op-profiling tables of a `benchmark_model` log (`--enable_op_profiling`): per-node
timings of the last regular (not initialization) profile, and the summary by node type
(read by benchmarks/logparse.py into `LogResult.ops` and `LogResult.ops_by_type`)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class OpTiming:
    node_type: str
    avg_ms: float
    name: str | None = None


def finite_number(s: str) -> float:
    v = float(s)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(s)
    return v


def parse_op_tables(lines) -> tuple[list[OpTiming], dict[str, dict]]:
    """Per-node timings of the last regular (not initialization) profile in the log."""
    tables = OpTables()
    for line in lines:
        tables.feed(line)
    return tables.result()


def _section_title(s: str) -> str | None:
    """`==== Run Order ====` (any number of '=' on both sides, spaces allowed) -> its title."""
    if not s.startswith("="):
        return None
    inner = s.lstrip("=")
    for title in _SECTIONS:
        rest = inner.lstrip(" \t")
        if rest.startswith(title) and rest[len(title):].lstrip(" \t").startswith("="):
            return title
    return None


_SECTIONS = ("Run Order", "Top by Computation Time", "Top by Memory Use", "Summary by node type")


class OpTables:
    """The op-profiling tables, fed one line at a time (a log is never held as a list of lines);
    at most MAX_KEPT rows of a table are kept."""

    def __init__(self):
        from amc_tf.benchmarks.loglines import MAX_KEPT

        self.max_rows = MAX_KEPT
        self.ops: list[OpTiming] = []
        self.by_type: dict[str, dict] = {}
        self.section = None
        self.init_profile = False
        self.header: list[str] | None = None
        self.cur_ops: list[OpTiming] = []
        self.cur_types: dict[str, dict] = {}

    def _close(self) -> None:
        if self.section == "Run Order" and self.cur_ops and not self.init_profile:
            self.ops = self.cur_ops
        if self.section == "Summary by node type" and self.cur_types and not self.init_profile:
            self.by_type = self.cur_types

    def feed(self, line: str) -> None:
        if "Profiling Info for Benchmark Initialization" in line:
            self.init_profile = True
            return
        if "Profiling Info for Regular Benchmark Runs" in line:
            self.init_profile = False
            return
        title = _section_title(line.strip())
        if title:
            self.section = title
            self.header = None
            if title == "Run Order":
                self.cur_ops = []
            if title == "Summary by node type":
                self.cur_types = {}
            return
        if self.section is None:
            return
        if not line.strip():
            if self.header is not None:
                self._close()
                self.section, self.header = None, None
            return
        if self.header is None:
            if "[node type]" in line.lower():
                cols = [c.strip() for c in line.split("\t")]
                if any(c.lower() == "[node type]" for c in cols):
                    self.header = [c.lower() for c in cols]
            return
        if line.count("\t") + 1 != len(self.header):
            return
        row = dict(zip(self.header, (c.strip() for c in line.split("\t"))))
        try:
            node_type = row["[node type]"]
            avg_ms = finite_number(row["[avg ms]"])
        except (KeyError, ValueError):
            return
        if self.section == "Run Order":
            if len(self.cur_ops) >= self.max_rows:
                return
            name = row.get("[name]")
            if name:
                base, sep, num = name.rpartition(":")
                if sep and num.isdigit():
                    name = base
                name = name.strip("[]")
            self.cur_ops.append(OpTiming(node_type, avg_ms, name))
        elif self.section == "Summary by node type":
            if len(self.cur_types) >= self.max_rows and node_type not in self.cur_types:
                return
            entry = {"avg_ms": avg_ms}
            count = row.get("[count]", "")
            if count.isascii() and count.isdigit() and len(count) <= 18:
                entry["count"] = int(count)
            self.cur_types[node_type] = entry

    def result(self) -> tuple[list[OpTiming], dict[str, dict]]:
        self._close()  # a table that runs to the end of the file
        ops, by_type = self.ops, self.by_type
        if ops and not by_type:
            by_type = {}
            for op in ops:
                e = by_type.setdefault(op.node_type, {"avg_ms": 0.0, "count": 0})
                e["avg_ms"] = round(e["avg_ms"] + op.avg_ms, 6)
                e["count"] += 1
        return ops, by_type
