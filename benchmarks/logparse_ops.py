"""The op-profiling tables of a `benchmark_model` log (`--enable_op_profiling`): per-node
timings of the last regular (not initialization) profile, and the summary by node type
(read by benchmarks/logparse.py into `LogResult.ops` and `LogResult.ops_by_type`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_OP_SECTION = re.compile(r"^=+\s*(Run Order|Top by Computation Time|Top by Memory Use|Summary by node type)\s*=+")


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


def parse_op_tables(lines: list[str]) -> tuple[list[OpTiming], dict[str, dict]]:
    """Per-node timings of the last regular (not initialization) profile in the log."""
    ops: list[OpTiming] = []
    by_type: dict[str, dict] = {}
    section = None
    init_profile = False
    header: list[str] | None = None
    cur_ops: list[OpTiming] = []
    cur_types: dict[str, dict] = {}
    for line in lines:
        if "Profiling Info for Benchmark Initialization" in line:
            init_profile = True
            continue
        if "Profiling Info for Regular Benchmark Runs" in line:
            init_profile = False
            continue
        m = _OP_SECTION.match(line.strip())
        if m:
            section = m.group(1)
            header = None
            if section == "Run Order":
                cur_ops = []
            if section == "Summary by node type":
                cur_types = {}
            continue
        if section is None:
            continue
        if not line.strip():
            if header is not None:
                if section == "Run Order" and cur_ops and not init_profile:
                    ops = cur_ops
                if section == "Summary by node type" and cur_types and not init_profile:
                    by_type = cur_types
                section, header = None, None
            continue
        cols = [c.strip() for c in line.split("\t")]
        if header is None:
            if any(c.lower() == "[node type]" for c in cols):
                header = [c.lower() for c in cols]
            continue
        if len(cols) != len(header):
            continue
        row = dict(zip(header, cols))
        try:
            node_type = row["[node type]"]
            avg_ms = finite_number(row["[avg ms]"])
        except (KeyError, ValueError):
            continue
        if section == "Run Order":
            name = row.get("[name]")
            if name:
                name = re.sub(r":\d+$", "", name).strip("[]")
            cur_ops.append(OpTiming(node_type, avg_ms, name))
        elif section == "Summary by node type":
            entry = {"avg_ms": avg_ms}
            if row.get("[count]", "").isdigit():
                entry["count"] = int(row["[count]"])
            cur_types[node_type] = entry
    # a table that runs to the end of the file
    if section == "Run Order" and cur_ops and not init_profile:
        ops = cur_ops
    if section == "Summary by node type" and cur_types and not init_profile:
        by_type = cur_types
    if ops and not by_type:
        for op in ops:
            e = by_type.setdefault(op.node_type, {"avg_ms": 0.0, "count": 0})
            e["avg_ms"] = round(e["avg_ms"] + op.avg_ms, 6)
            e["count"] += 1
    return ops, by_type
