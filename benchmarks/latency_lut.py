"""A per-layer latency lookup table (LUT): predict a pruned MobileNet's latency from timings
of its layers measured alone, without building or running the network.

The LUT holds tables keyed by layer kind and input resolution (`pointwise@56`,
`depthwise_s2@112`, ...), each a grid over (cin, cout) (one axis for depthwise and adds)
of per-invocation times in microseconds (the target's timer decides the statistic; locally
the lower quintile). A layer's time is the bilinear interpolation of its table at its
exact channel counts (linear extrapolation past the grid's ends), times the table's
channel-alignment ratio (`align_factor`). Bilinear is the natural interpolant here: a 1x1
conv costs about a + b*cin + c*cout + d*cin*cout, which it reproduces exactly between grid
points.

A network's prediction is `(overhead + scale * sum(layer times)) * speed`: the overhead is
one invocation's fixed cost (measured on a near-empty model, and subtracted from every
point), the scale is fitted at build time on a few whole models timed as a user times them
(mean per invocation; cache effects, fusions and the load a single layer's best case cannot
show), and `speed` is the probe's now / at-build ratio (`latency_probe`; 1 without it).

Version 2 of the format records the table's precision (fp32 or int8: which kernels were
timed), the probe's figure at build time and the build's conditions (load, CPU clock, time);
a version 1 file still loads, as an fp32 table without a probe. Nothing here imports
TensorFlow; a prediction costs about 0.1-0.3 ms once the LUT is loaded:

    from amc_tf.benchmarks.latency_lut import load_lut
    lut = load_lut("lut.json")
    ms = lut.predict(spec)          # a NetSpec or a Network
"""

from __future__ import annotations

import json
import math
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from amc_tf.core.errors import AmcError
from amc_tf.core.netspec import NetSpec

FORMAT = "amc-tf-latency-lut"
VERSION = 2
READABLE_VERSIONS = (1, 2)
PRECISIONS = ("fp32", "int8")
# Fingerprint fields that must match for a LUT to describe the target a prediction is for.
FINGERPRINT_KEYS = ("target", "cpu", "device", "runtime", "threads", "delegate")


class LutError(AmcError):
    """The LUT file is unreadable, from another target, or does not cover the network."""


def table_name(kind: str, res: int) -> str:
    return f"{kind}@{res}"


def layer_plan(spec: NetSpec) -> list[dict]:
    """Each conv of `spec` (execution order, as `flops.layer_table`) with the table that times it.

    Keys: name, role, op, table, cin, cout, in_size, out_size, macs, residual. A V2 residual
    add is timed with its block's project conv; global pooling with the logits layer.
    """
    plan, size = [], spec.input_size
    for layer in spec.layers():
        if layer.role == "logits":
            macs = layer.cin * layer.cout
            plan.append(dict(name=layer.scope, role="logits", op="avgpool+fc", table=table_name("head", size),
                             cin=layer.cin, cout=layer.cout, in_size=size, out_size=1, macs=macs, residual=False))
            continue
        pad = (layer.kernel - 1) // 2
        out = (size + 2 * pad - layer.kernel) // layer.stride + 1
        residual = layer.role == "project" and spec.blocks[layer.block].residual
        if layer.depthwise:
            op, kind = f"dwconv3x3/s{layer.stride}", f"depthwise_s{layer.stride}"
            macs = 9 * layer.cout * out * out
        elif layer.kernel == 1:
            op, kind = "conv1x1" + ("+add" if residual else ""), "pointwise"
            macs = layer.cin * layer.cout * out * out
        else:
            op, kind = f"conv{layer.kernel}x{layer.kernel}/s{layer.stride}", f"conv{layer.kernel}x{layer.kernel}_s{layer.stride}"
            macs = layer.kernel * layer.kernel * layer.cin * layer.cout * out * out
        plan.append(dict(name=layer.scope, role=layer.role, op=op, table=table_name(kind, size), cin=layer.cin,
                         cout=layer.cout, in_size=size, out_size=out, macs=macs, residual=residual))
        size = out
    return plan


def _segment(axis: list[float], x: float) -> tuple[int, float]:
    """(i, t): x lies at fraction t between axis[i] and axis[i+1] (t outside [0,1] extrapolates)."""
    if len(axis) == 1:
        return 0, 0.0
    i = min(max(bisect_right(axis, x) - 1, 0), len(axis) - 2)
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


ALIGN_PERIOD = 64
# The axis of each table kind whose channel count's alignment changes the kernels' speed.
ALIGNED_AXIS = {"pointwise": "cout", "depthwise_s1": "cin", "depthwise_s2": "cin"}


def align_factor(ratios: list[float] | None, c: int) -> float:
    """Vector kernels process channels in tiles: a count just past a tile boundary can run a
    slower kernel for the whole layer. `ratios[r]` is the measured time of a layer with
    64k + r channels over the straight line between 64k and 64k + 64 (ratios[0] == 1);
    grid points past one period are multiples of it, so they need no correction."""
    if ratios is None or c < ALIGN_PERIOD:
        return 1.0
    return ratios[int(c) % ALIGN_PERIOD]


@dataclass
class Table:
    """Times (us) over a grid: `us[i][j]` at (cin[i], cout[j]); 1-axis tables have cout == [0]."""

    kind: str
    res: int
    cin: list[float]
    cout: list[float]
    us: list[list[float]]
    align: list[float] | None = None  # per-residue ratios on ALIGNED_AXIS[kind], see align_factor

    def __call__(self, cin: float, cout: float = 0.0) -> float:
        i, t = _segment(self.cin, cin)
        j, u = _segment(self.cout, cout)
        row0, row1 = self.us[i], self.us[i + 1] if len(self.cin) > 1 else self.us[i]
        if len(self.cout) == 1:
            v = row0[0] + t * (row1[0] - row0[0])
        else:
            a = row0[j] + u * (row0[j + 1] - row0[j])
            b = row1[j] + u * (row1[j + 1] - row1[j])
            v = a + t * (b - a)
        if self.align is not None:
            v *= align_factor(self.align, cout if ALIGNED_AXIS.get(self.kind) == "cout" else cin)
        if not math.isfinite(v):  # finite grid values can still overflow when interpolated or extrapolated
            raise LutError(f"table {table_name(self.kind, self.res)}: its values give a non-finite latency at "
                           f"cin {cin:g}, cout {cout:g} (they overflow when interpolated); not a usable LUT")
        return v if v > 0.0 else 0.0

    def as_dict(self) -> dict:
        d = {"kind": self.kind, "res": self.res, "cin": self.cin, "cout": self.cout, "us": self.us}
        if self.align is not None:
            d["align"] = self.align
        return d

    @classmethod
    def from_dict(cls, d: dict, name: str = "?") -> "Table":
        if not isinstance(d, dict):
            raise ValueError(f"table {name} is not an object")
        kind, res = d.get("kind"), d.get("res")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"table {name}: kind must be a name")
        if not _is_num(res) or res != int(res) or res < 1:
            raise ValueError(f"table {name}: res must be a positive integer")
        cin, cout = _axis_values(d.get("cin"), name, "cin"), _axis_values(d.get("cout"), name, "cout")
        us = d.get("us")
        if not isinstance(us, list) or len(us) != len(cin) or any(
                not isinstance(row, list) or len(row) != len(cout) for row in us):
            raise ValueError(f"table {name}: us must be a {len(cin)}x{len(cout)} grid matching cin and cout")
        us = [[_finite(v, f"table {name}: us", low=0.0) for v in row] for row in us]
        align = d.get("align")
        if align is not None:
            if not isinstance(align, list) or len(align) != ALIGN_PERIOD or kind not in ALIGNED_AXIS:
                raise ValueError(f"table {name}: alignment ratios need {ALIGN_PERIOD} values and an aligned kind")
            align = [_finite(x, f"table {name}: align", low=0.0, open_low=True) for x in align]
        return cls(kind, int(res), cin, cout, us, align)


def _finite_ms(v: float) -> float:
    """A prediction, or LutError when the LUT's (finite) values add up past a float's range."""
    if not math.isfinite(v):
        raise LutError("the LUT's values add up to a non-finite latency (they overflow); not a usable LUT")
    return v


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v, what: str, low: float | None = None, open_low: bool = False) -> float:
    """v as a float: a JSON number, finite, and >= low (> low when open_low)."""
    if not _is_num(v) or not math.isfinite(v):
        raise ValueError(f"{what} must hold finite numbers, got {json.dumps(v)[:40]}")
    if low is not None and (v <= low if open_low else v < low):
        raise ValueError(f"{what} must be {'>' if open_low else '>='} {low:g}, got {v!r}")
    return float(v)


def _axis_values(axis, name: str, which: str) -> list[float]:
    if not isinstance(axis, list) or not axis:
        raise ValueError(f"table {name}: {which} must be a non-empty list of channel counts")
    vals = [_finite(x, f"table {name}: {which}", low=0.0) for x in axis]
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"table {name}: {which} must increase")
    return vals


@dataclass
class LatencyLut:
    fingerprint: dict
    input_size: int
    families: list[str]
    tables: dict[str, Table]
    overhead_us: float = 0.0
    scale: dict[str, float] = field(default_factory=dict)  # per family, fitted on whole models
    meta: dict = field(default_factory=dict)  # calibration models, timings
    precision: str = "fp32"  # the kernels timed: fp32 or int8 (full-integer)
    probe_us: float | None = None  # the probe's mean invocation (us) at build time; None: no probe
    conditions: dict = field(default_factory=dict)  # the build's: load average, CPU clock, time

    # -- prediction ------------------------------------------------------------------
    def _missing(self, table: str, layer: str) -> LutError:
        return LutError(f"the LUT has no table {table} for {layer} (built for input size {self.input_size}, "
                        f"families {', '.join(self.families)}); rebuild it with --input-size/--family "
                        "matching the network")

    def _lookup(self, p: dict) -> float:
        table = self.tables.get(p["table"])
        if table is None:
            raise self._missing(p["table"], p["name"])
        if table.kind == "head":
            return table(p["cin"], p["cout"])
        us = table(p["cin"], p["cout"]) if len(table.cout) > 1 else table(p["cin"])
        if p["residual"]:
            add = self.tables.get(table_name("add", p["out_size"]))
            if add is None:
                raise self._missing(table_name("add", p["out_size"]), f"the residual add of {p['name']}")
            us += add(p["cout"])
        return us

    def speed(self, probe_now_us: float | None) -> float:
        """The factor a prediction is scaled by: the probe now over the probe at build time
        (1.0 without either figure)."""
        if not probe_now_us or not self.probe_us:
            return 1.0
        return probe_now_us / self.probe_us

    def predict(self, network, probe_now_us: float | None = None) -> float:
        """Predicted whole-model latency in ms of a NetSpec (or a Network: its spec); with
        `probe_now_us` (latency_probe.probe_us on the target now) scaled to the target's speed now."""
        spec = getattr(network, "spec", network)
        total = 0.0
        for p in layer_plan(spec):
            total += self._lookup(p)
        return _finite_ms((self.overhead_us + self.scale.get(spec.family, 1.0) * total) * self.speed(probe_now_us) / 1000.0)

    def predict_layers(self, network, probe_now_us: float | None = None) -> dict:
        """{"predicted_ms", "layers": [{name, op, shape, macs, predicted_ms, share}]}; the
        invocation overhead is spread over the layers in proportion, so the layers sum to the total."""
        spec = getattr(network, "spec", network)
        plan = layer_plan(spec)
        raw = [self._lookup(p) for p in plan]
        scale = self.scale.get(spec.family, 1.0)
        total_raw = sum(raw) or 1.0
        total_us = _finite_ms((self.overhead_us + scale * sum(raw)) * self.speed(probe_now_us))
        layers = []
        for p, r in zip(plan, raw):
            share = r / total_raw
            layers.append({
                "name": p["name"], "op": p["op"],
                "shape": [[p["in_size"], p["in_size"], p["cin"]], [p["out_size"], p["out_size"], p["cout"]]],
                "macs": p["macs"], "predicted_ms": round(share * total_us / 1000.0, 6), "share": round(share, 6),
            })
        return {"predicted_ms": round(total_us / 1000.0, 4), "layers": layers}

    # -- fingerprints ----------------------------------------------------------------
    def fingerprint_mismatch(self, current: dict) -> str | None:
        """None when `current` (the target a prediction is for) matches the LUT; else which field differs."""
        for key in FINGERPRINT_KEYS:
            if key == "runtime" and current.get(key) is None:
                continue  # unknown here (adb without the binary): not compared
            if self.fingerprint.get(key) != current.get(key):
                return f"{key} is {self.fingerprint.get(key)!r} in the LUT, {current.get(key)!r} here"
        return None

    # -- files -----------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint, "input_size": self.input_size,
                "families": self.families, "precision": self.precision,
                "probe": None if self.probe_us is None else {"us": self.probe_us, "statistic": "mean"},
                "conditions": self.conditions, "overhead_us": self.overhead_us, "scale": self.scale,
                "meta": self.meta, "tables": {name: t.as_dict() for name, t in sorted(self.tables.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyLut":
        if not isinstance(d, dict):
            raise ValueError(f"not a latency LUT (a JSON {type(d).__name__}, not an object)")
        if d.get("format") != FORMAT:
            raise ValueError(f"not a latency LUT (format {d.get('format')!r})")
        version = d.get("version")
        if not _is_num(version) or version not in READABLE_VERSIONS:
            raise ValueError(f"LUT version {version} is not supported (this amc-tf reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
        for key, typ, what in (("fingerprint", dict, "an object"), ("tables", dict, "an object"),
                               ("families", list, "a list"), ("scale", dict, "an object"), ("meta", dict, "an object")):
            if not isinstance(d.get(key, typ()), typ):
                raise ValueError(f"{key} must be {what}")
        if not d["tables"]:
            raise ValueError("it holds no tables")
        if not all(isinstance(f, str) for f in d["families"]):
            raise ValueError("families must be names")
        size = d.get("input_size")
        if not _is_num(size) or size != int(size) or size < 1:
            raise ValueError("input_size must be a positive integer")
        tables = {str(name): Table.from_dict(t, name) for name, t in d["tables"].items()}
        scale = {str(k): _finite(v, f"scale of {k}", low=0.0, open_low=True) for k, v in d.get("scale", {}).items()}
        precision, probe, conditions = "fp32", None, {}
        if version >= 2:  # version 1: an fp32 table without a probe
            precision = d.get("precision")
            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {json.dumps(precision)[:40]}")
            if d.get("probe") is not None:
                if not isinstance(d["probe"], dict):
                    raise ValueError("probe must be an object or null")
                probe = _finite(d["probe"].get("us"), "probe us", low=0.0, open_low=True)
            conditions = d.get("conditions", {})
            if not isinstance(conditions, dict):
                raise ValueError("conditions must be an object")
        return cls(dict(d["fingerprint"]), int(size), list(d["families"]), tables,
                   _finite(d.get("overhead_us", 0.0), "overhead_us", low=0.0), scale, dict(d.get("meta", {})),
                   precision, probe, dict(conditions))

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> None:
        from amc_tf.benchmarks.runlog import atomic_write

        atomic_write(Path(path), json.dumps(self.as_dict(), indent=1) + "\n", overwrite=overwrite)


def load_lut(path: str | os.PathLike) -> LatencyLut:
    """A LUT file: at most jsonfile.MAX_LUT_BYTES of a regular file, JSON without NaN, Infinity or
    integers of 30+ digits, of jsonfile.LUT_SCHEMA's shape, then every value checked by
    LatencyLut.from_dict. LutError (exit 2) `LUT: <file>: <field>: <what is wrong>`."""
    from amc_tf.core.jsonfile import LUT_SCHEMA, MAX_LUT_BYTES, JsonFileError, load_json

    p = Path(path)
    if not p.exists():
        raise LutError(f"LUT not found: {p}")
    try:
        data = load_json(p, MAX_LUT_BYTES, what=str(p))
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("version") == VERSION:
            from amc_tf.core.jsonfile import validate

            validate(data, LUT_SCHEMA, str(p))
    except JsonFileError as exc:
        raise LutError(f"LUT: {exc}") from None
    try:
        return LatencyLut.from_dict(data)
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
        raise LutError(f"LUT: {p}: {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def predict(network, lut: LatencyLut | str | os.PathLike, probe_now_us: float | None = None) -> float:
    """Predicted latency (ms) of a NetSpec/Network; `lut` a loaded LUT (fast) or a path;
    `probe_now_us` scales it to the target's speed now (see LatencyLut.speed)."""
    if not isinstance(lut, LatencyLut):
        lut = load_lut(lut)
    return lut.predict(network, probe_now_us)
