"""Build a latency LUT: the grid, the timing loop (resumable), the calibration.

The grid covers every pruning of the standard MobileNetV1/V2 (width 1.0) at the given input
size: for each table (layer kind x input resolution, see `latency_lut.layer_plan`) its axes
run from 1 channel to 1.25x the widest the standard network has there, on a geometric-ish
ladder; past that the LUT extrapolates linearly. Every point is written to
`<output>.partial.json` (atomically, at least every few seconds and on interruption), and a
build finds it and goes on from there. At the end a few random whole networks (not the AMC
profiles, not the evaluation's prunings) are timed to fit one scale per family (see
`latency_lut`), and the LUT replaces the partial file.

Points are the lower quintile of a layer's invocations (its shape, undisturbed); the
calibration networks are timed as a user times a model (the mean of ~100 invocations after
30 warm-up ones), so the fitted scale maps the sum of the layers to what a user measures.
With the probe (`latency_probe`, on by default) each calibration round is preceded by a
probe run and its models' times are normalized by it, so load that comes and goes during
the build does not end up in the scale; the table records the build's probe figure (the
median of its runs) and the conditions (load average, CPU clock, time) at start and end.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from amc_tf.core.errors import AmcError, OutputExistsError
from amc_tf.core.netspec import V1, V2, NetSpec, make_blocks
from amc_tf.core.profiles import profile_spec
from amc_tf.benchmarks.latency_lut import (ALIGN_PERIOD, ALIGNED_AXIS, FORMAT, PRECISIONS, LatencyLut,
                                           layer_plan, table_name)
from amc_tf.benchmarks.runlog import atomic_write
from amc_tf.benchmarks.latency_assemble import _align_ratios, assemble  # noqa: F401  (the build's last step)

HEADROOM = 1.25
# Past one alignment period (64) every ladder value is a multiple of it (see latency_lut.align_factor);
# below it the ladders are dense, since vector tiles make small widths a staircase: every count for
# depthwise convs (one axis, cheap), both ends of each run of 8 for a 1x1 conv's output channels.
_BIG = (128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
LADDER_CIN = (1, 8, 16, 32, 64) + _BIG
LADDER_COUT = (1,) + tuple(c for k in range(8, 64, 8) for c in (k, k + 1)) + (64,) + _BIG
LADDER_1D = tuple(range(1, 65)) + (128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 2048)
CLASSES = (1, 16, 128, 512, 1000, 1001)
STANDARD = {V1: "1.0", V2: "v2-1.0"}
FAMILY_ALIASES = {"v1": V1, "v2": V2, V1: V1, V2: V2}
CALIBRATION_SEEDS = (101, 102, 103, 104)
CAL_ROUNDS = 5


def parse_families(text: str) -> list[str]:
    out = []
    for part in text.split(","):
        key = part.strip().lower()
        if key not in FAMILY_ALIASES:
            raise AmcError(f"--family wants v1, v2 or both (v1,v2), got {part.strip()!r}")
        if FAMILY_ALIASES[key] not in out:
            out.append(FAMILY_ALIASES[key])
    return out


def _axis(top: int, ladder, tiny: bool) -> list[int]:
    top = max(1, math.ceil(top * HEADROOM))
    if top > ALIGN_PERIOD:
        top = -(-top // ALIGN_PERIOD) * ALIGN_PERIOD
    if tiny:
        return sorted({1, top})
    if ladder is None:  # every channel count
        return list(range(1, top + 1))
    return [v for v in ladder if v < top] + [top]


def grid_plan(families: list[str], input_size: int, tiny: bool = False) -> dict[str, dict]:
    """{table name: {kind, res, cin: axis, cout: axis}} covering the families at this input size."""
    widest: dict[str, list] = {}
    for fam in families:
        spec = profile_spec(STANDARD[fam]).with_changes(input_size=input_size)
        for p in layer_plan(spec):
            kind, res = p["table"].rsplit("@", 1)
            cur = widest.setdefault(p["table"], [kind, int(res), 0, 0])
            cur[2], cur[3] = max(cur[2], p["cin"]), max(cur[3], p["cout"])
            if p["residual"]:
                add = widest.setdefault(table_name("add", p["out_size"]), ["add", p["out_size"], 0, 0])
                add[2] = max(add[2], p["cout"])
    plan = {}
    for name, (kind, res, cin, cout) in sorted(widest.items()):
        if kind == "pointwise":
            axes = (_axis(cin, LADDER_CIN, tiny), _axis(cout, LADDER_COUT, tiny))
        elif kind == "head":
            axes = (_axis(cin, LADDER_CIN, tiny), [1, 1001] if tiny else list(CLASSES))
        elif kind.startswith("conv"):
            axes = ([3], _axis(cout, None, tiny))
        else:  # depthwise, add: one axis
            axes = (_axis(cin, LADDER_1D if kind.startswith("depthwise") else LADDER_CIN, tiny), [0])
        plan[name] = {"kind": kind, "res": res, "cin": axes[0], "cout": axes[1]}
    return plan


def align_probe(t: dict) -> tuple[int, int]:
    """(fixed cin, first swept count) of a table's alignment probe: mid-range on both axes."""
    axis = t["cout"] if ALIGNED_AXIS[t["kind"]] == "cout" else t["cin"]
    base = ALIGN_PERIOD * max(1, round(axis[-1] / (2 * ALIGN_PERIOD)))
    cin = min(t["cin"], key=lambda c: abs(c - t["cin"][-1] / 2)) if ALIGNED_AXIS[t["kind"]] == "cout" else 0
    return cin, base


def plan_points(plan: dict, tiny: bool = False) -> list[tuple[str, str, int, int, int]]:
    """Every point to time: (key, kind, res, cin, cout): the empty model, every table's grid,
    then (full grid only) each aligned table's probe: every count over one alignment period."""
    pts = [("null", "null", 1, 1, 1)]
    for name, t in plan.items():
        for cin in t["cin"]:
            for cout in t["cout"]:
                pts.append((f"{name}:{cin}x{cout}", t["kind"], t["res"], cin, cout))
    for name, t in plan.items():
        aligned = t["kind"] in ALIGNED_AXIS and (t["cout"] if ALIGNED_AXIS[t["kind"]] == "cout" else t["cin"])
        if tiny or not aligned or aligned[-1] < 2 * ALIGN_PERIOD:
            continue  # no layer there is wide enough for the correction to apply
        cin, base = align_probe(t)
        for r in range(ALIGN_PERIOD + 1):
            c = base + r
            pts.append((f"align:{name}:{r}", t["kind"], t["res"], cin or c, c))
    return pts


def point_label(key: str, kind: str, res: int, cin: int, cout: int) -> str:
    """A grid point as the progress bar names it: `pointwise 56x56 64->128 ch`, `depthwise s1
    56x56 14 ch` (one axis), `empty model (timer overhead)`."""
    if key == "null":
        return "empty model (timer overhead)"
    what = kind.replace("_", " ")
    channels = f"{cin}->{cout} ch" if cout else f"{cin} ch"
    return f"{what} {res}x{res} {channels}" + (" (alignment probe)" if key.startswith("align:") else "")


def calibration_specs(families: list[str], input_size: int) -> list[NetSpec]:
    """Random prunings (each layer 35-100 % of the standard width) with fixed seeds."""
    out = []
    for fam in families:
        std = profile_spec(STANDARD[fam])
        for seed in CALIBRATION_SEEDS:
            out.append(random_pruning(std, seed).with_changes(input_size=input_size))
    return out


def random_pruning(std: NetSpec, seed: int, low: float = 0.35) -> NetSpec:
    """Each layer of a standard net kept at a random 35-100 % of its width (V2 stages share a width)."""
    rng = np.random.default_rng(seed)

    def keep(c):
        return max(1, int(round(c * rng.uniform(low, 1.0))))

    stem = keep(std.stem_ch)
    if std.family == V1:
        widths = [(None, keep(b.out_ch)) for b in std.blocks]
        return std.with_changes(stem_ch=stem, blocks=make_blocks(V1, widths, stem))
    widths, stage_out = [], {}
    for b in std.blocks:
        out = stage_out.setdefault(b.out_ch, keep(b.out_ch))
        widths.append((None if b.expand_ch is None else keep(b.expand_ch), out))
    return std.with_changes(stem_ch=stem, blocks=make_blocks(V2, widths, stem), last_ch=keep(std.last_ch))


class _Partial:
    """The resumable state: settings + measured points, written atomically."""

    def __init__(self, path: Path, header: dict):
        self.path, self.header = path, header
        self.points: dict[str, float] = {}
        self.calibration: dict[str, dict] = {}
        self.probes: dict[str, float] = {}  # "start", "round0".. "roundN", "end": the probe's figures
        self.conditions: dict[str, dict] = {}
        self._saved = self._started = time.monotonic()
        self.elapsed_before = 0.0  # build time spent by the runs this one resumes

    def elapsed(self) -> float:
        """The whole build's time so far, interrupted runs included."""
        return self.elapsed_before + time.monotonic() - self._started

    def load(self, force: bool) -> int:
        if not self.path.exists():
            return 0
        from amc_tf.core.jsonfile import MAX_PARTIAL_BYTES, load_json

        try:
            old = load_json(self.path, MAX_PARTIAL_BYTES)  # bounded: no FIFO, no huge file, no NaN
            why = _partial_problem(old)
        except AmcError as exc:
            why = f"unreadable ({exc})"
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, OverflowError) as exc:
            why = f"unreadable ({getattr(exc, 'strerror', None) or exc})"
        if why:
            if not force:
                raise AmcError(f"{self.path} is not a usable partial build ({why}); delete it, or pass --force "
                               "to start over")
            return 0
        if old.get("header") != self.header:
            if not force:
                raise AmcError(f"{self.path} holds a partial build with other settings (target, grid or size); "
                               "remove it, or pass --force to start over")
            return 0
        self.points = {k: float(v) for k, v in old["points"].items()}
        self.calibration = {k: {"spec": v["spec"], "rounds_us": [float(x) for x in v["rounds_us"]]}
                            for k, v in old.get("calibration", {}).items()}
        self.probes = {k: float(v) for k, v in old.get("probes", {}).items()}
        self.conditions = dict(old.get("conditions", {}))
        self.elapsed_before = float(old["elapsed_s"]) if _is_time(old.get("elapsed_s")) else 0.0
        return len(self.points)

    def measured(self) -> int:
        """Points and calibration rounds held (what an interrupted build keeps)."""
        return len(self.points) + sum(len(c["rounds_us"]) for c in self.calibration.values())

    def save(self, every_s: float = 0.0) -> None:
        if time.monotonic() - self._saved < every_s:
            return
        atomic_write(self.path, json.dumps({"format": FORMAT + "-partial", "header": self.header,
                                            "points": self.points, "calibration": self.calibration,
                                            "probes": self.probes, "conditions": self.conditions,
                                            "elapsed_s": round(self.elapsed(), 1)}))
        self._saved = time.monotonic()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _is_time(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _partial_problem(old) -> str | None:
    """What is wrong with a partial file's structure (None: usable)."""
    if not isinstance(old, dict):
        return f"a JSON {type(old).__name__}, not an object"
    if not isinstance(old.get("header"), dict):
        return "no header object"
    points, cal = old.get("points"), old.get("calibration", {})
    if not isinstance(points, dict) or not all(_is_time(v) for v in points.values()):
        return "points must map names to finite times"
    if not isinstance(cal, dict):
        return "calibration must be an object"
    probes = old.get("probes", {})
    if not isinstance(probes, dict) or not all(_is_time(v) for v in probes.values()):
        return "probes must map names to finite times"
    if not isinstance(old.get("conditions", {}), dict):
        return "conditions must be an object"
    for key, c in cal.items():
        if (not isinstance(c, dict) or not isinstance(c.get("spec"), dict) or not isinstance(c.get("rounds_us"), list)
                or not all(_is_time(v) for v in c["rounds_us"])):
            return f"calibration {key} must hold a spec and finite round times"
        try:
            NetSpec.from_dict(c["spec"])
        except Exception as exc:  # noqa: BLE001 - any failure means the spec is not one we wrote
            return f"calibration {key}: bad spec ({exc})"
    return None


CAL_SECONDS = 0.3  # per calibration model and round, after 30 warm-up invocations (~100 invocations of V1-1.0)


def _time_whole(timer, path: Path) -> float:
    """A whole model's mean invocation (us), as a user's timer measures it."""
    if hasattr(timer, "time_mean"):
        return timer.time_mean(path, CAL_SECONDS)
    return timer.time_model(path)  # benchmark_model: its average


def build_lut(out: Path, timer, families: list[str], input_size: int = 224, tiny: bool = False,
              calibrate: bool = True, force: bool = False, progress=None, save_every_s: float = 2.0,
              note=None, precision: str = "fp32", probe: bool = True) -> LatencyLut:
    """Time every grid point (resuming from `<out>.partial.json`), calibrate, write `out`.

    `precision` int8 times full-integer layers and networks; `probe` times the drift probe
    at the start, before each calibration round and at the end (see the module docstring).
    `progress(done, total, label)` is called after each point; it may raise (e.g.
    KeyboardInterrupt): the partial file is saved first."""
    if precision not in PRECISIONS:
        raise AmcError(f"--quantize: a table is fp32 or int8, got {precision!r}")
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    from amc_tf.core.fileutil import hold_name

    try:  # one build per output (and its partial file) at a time
        held = hold_name(out.parent, out.name, "lut")
    except BlockingIOError:
        raise OutputExistsError(f"another amc-tf latency build is writing {out}; wait for it to finish or "
                                "choose another -o") from None
    except OSError:
        held = None
    try:
        return _build_lut(out, timer, families, input_size, tiny, calibrate, force, progress, save_every_s, note,
                          precision, probe)
    finally:
        if held is not None:
            held.close()


def _build_lut(out: Path, timer, families: list[str], input_size: int, tiny: bool, calibrate: bool, force: bool,
               progress, save_every_s: float, note, precision: str, probe: bool) -> LatencyLut:
    from amc_tf.benchmarks.latency_probe import conditions, probe_us

    fingerprint = timer.fingerprint()
    plan = grid_plan(families, input_size, tiny)
    points = plan_points(plan, tiny)
    cal_specs = calibration_specs(families, input_size) if calibrate else []
    header = {"fingerprint": fingerprint, "input_size": input_size, "families": families, "tiny": tiny,
              "calibrate": calibrate, "plan": plan, "precision": precision, "probe": probe}
    partial = _Partial(out.with_name(out.name + ".partial.json"), header)
    resumed = partial.load(force)
    if resumed and note:
        note(f"resuming from {partial.path} ({resumed} points measured before)")
    total = len(points) + CAL_ROUNDS * len(cal_specs)

    def run_probe(key: str) -> None:
        if probe and key not in partial.probes:
            partial.probes[key] = probe_us(timer, precision)
            partial.save(0.0)
    partial.conditions.setdefault("start", conditions())
    say = progress or (lambda *_a: None)
    import shutil

    from amc_tf.converters.staging import make_staging_dir, remove_stale

    remove_stale(out)  # scratch dirs of builds killed by SIGKILL (their process is gone)
    try:
        tmp = make_staging_dir(out)  # beside the output, named after this process (pid + start time)
    except OSError as exc:
        raise AmcError(f"cannot write in {out.parent or '.'}: {exc.strerror or exc}") from None
    try:
        try:
            say(partial.measured(), total, "starting TensorFlow and the timer")  # the bar from the start
            from amc_tf.benchmarks.latency_timers import layer_tflite, network_tflite

            done = 0
            run_probe("start")
            for key, kind, res, cin, cout in points:
                if key not in partial.points:
                    path = Path(tmp) / "layer.tflite"
                    path.write_bytes(layer_tflite(kind, res, cin, cout, precision=precision))
                    partial.points[key] = round(timer.time_model(path), 3)
                    partial.save(save_every_s)
                    # resumed points are not reported: the ETA counts measured ones
                    say(done + 1, total, point_label(key, kind, res, cin, cout))
                done += 1
            for rnd in range(CAL_ROUNDS if cal_specs else 0):  # round-robin: a burst of load spoils a round
                for i, spec in enumerate(cal_specs):  # convert first, so the probe is next to the timings
                    path = Path(tmp) / f"net{i}.tflite"
                    if not path.exists() and len(partial.calibration.get(f"{spec.family}#{i}", {}).get(
                            "rounds_us", [])) <= rnd:
                        path.write_bytes(network_tflite(spec, seed=i, precision=precision))
                run_probe(f"round{rnd}")
                for i, spec in enumerate(cal_specs):
                    key = f"{spec.family}#{i}"
                    entry = partial.calibration.setdefault(key, {"spec": spec.to_dict(), "rounds_us": []})
                    if len(entry["rounds_us"]) <= rnd:
                        path = Path(tmp) / f"net{i}.tflite"
                        entry["rounds_us"].append(round(_time_whole(timer, path), 2))
                        partial.save(0.0)
                        say(done + 1, total, f"calibration {key} ({rnd + 1}/{CAL_ROUNDS})")
                    done += 1
            run_probe("end")
        finally:
            if partial.measured():  # nothing measured: leave nothing behind
                partial.save(0.0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    partial.conditions["end"] = conditions()
    lut = assemble(partial.points, partial.calibration, plan, fingerprint, input_size, families,
                   partial.probes if probe else None)
    lut.precision = precision
    lut.conditions = dict(partial.conditions)
    if probe:
        lut.conditions["probe_runs_us"] = dict(partial.probes)
    lut.meta.update({"build_s": round(partial.elapsed(), 1), "resumed_points": resumed,
                     "points": len(points), "tiny": tiny, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        lut.save(out, overwrite=force)
    except FileExistsError:
        raise OutputExistsError(f"{out} was created by another process while the LUT was built; it was left as "
                                f"it is (the measured points are in {partial.path}): pass --force to replace it") from None
    partial.path.unlink(missing_ok=True)
    return lut
