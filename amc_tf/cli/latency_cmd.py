"""`amc-tf latency build|predict`: a per-layer latency lookup table of a target (this machine,
or an Android device over adb) and predictions of any pruned MobileNet's latency from it.

Exit codes: 0 done; 2 bad input, a LUT from another target, nothing written; 3 a benchmark
run failed during `build` (the points measured so far are kept in the partial file).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from amc_tf.cli.output import echo, echo_block, emit_json
from amc_tf.cli.options import FiniteFloat
from amc_tf.core.errors import AmcError, Interrupted, OutputExistsError, RunFailedError
from amc_tf.core.profiles import PROFILE_NAMES
from amc_tf.core.textsafe import safe


class _Bar:
    """A one-line progress bar on stderr (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.t0, self.first_done, self.last_decile, self.open_line = time.monotonic(), None, -1, False

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.quiet:
            return
        if self.first_done is None:  # the first call, before any point: resumed points cost nothing
            self.first_done, self.t0 = done, time.monotonic()
        elapsed = time.monotonic() - self.t0
        fresh = done - self.first_done
        eta = "" if fresh < 3 else f", ~{_mmss(elapsed / fresh * (total - done))} left"
        frac = done / max(total, 1)
        text = f"[{'#' * int(30 * frac):<30}] {done}/{total} {label}{eta}"
        if self.tty:
            click.echo(f"\r{safe(text)[:110]:<110}", nl=done == total, err=True)  # safe already; echo would show \r
            self.open_line = done != total
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            echo(text, err=True)

    def finish(self) -> None:
        if self.open_line:
            echo("", err=True)
            self.open_line = False


def _holds_points(partial: Path) -> bool:
    """Whether the partial file now holds measured points (an interrupted build keeps them)."""
    from amc_tf.core.errors import AmcError
    from amc_tf.core.jsonfile import MAX_PARTIAL_BYTES, load_json

    try:
        data = load_json(partial, MAX_PARTIAL_BYTES)
        return bool(data.get("points")) or any(c.get("rounds_us") for c in data.get("calibration", {}).values())
    except (OSError, ValueError, AttributeError, TypeError, AmcError):
        return False


def _mmss(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


@click.group("latency")
def latency():
    """Per-layer latency lookup table: build it on a target, predict any pruning's latency."""


@latency.command("build")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="LUT file to write (JSON).")
@click.option("--target", type=click.Choice(["local", "adb"]), default="local", show_default=True,
              help="local: this machine; adb: an Android device.")
@click.option("--serial", default=None, metavar="S", help="adb device serial (when several are connected).")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False), default=None,
              help="benchmark_model to time with (Android build for adb; a host build for local, "
                   "instead of the in-process LiteRT interpreter).")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), default=None, help="adb client to use.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Inference threads.")
@click.option("--family", default="v1,v2", show_default=True, help="v1, v2 or v1,v2")
@click.option("--input-size", type=click.IntRange(32, 1024), default=224, show_default=True,
              help="Input height and width of the networks the table is for.")
@click.option("--grid", type=click.Choice(["full", "tiny"]), default="full", show_default=True,
              help="tiny: two points per axis, a smoke test of the target (not accurate).")
@click.option("--no-calibrate", is_flag=True, help="Skip timing whole random networks to fit the scale.")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Time full-integer (int8) layers and networks, for models converted with "
                   "`convert --quantize int8`  [default: fp32]")
@click.option("--no-probe", is_flag=True, help="Do not time the drift probe (predictions then cannot be "
                                               "scaled to the target's speed at predict time).")
@click.option("--force", is_flag=True, help="Replace OUTPUT, or a partial build made with other settings.")
@click.option("--run-timeout", type=FiniteFloat(low=0, low_open=True), default=None, metavar="SECONDS",
              help="stop a benchmark_model run after this long: the build stops, exit 3, the points so far "
                   "kept [default: as bench: 120 s + 2 s per invocation, 200 s]")
@click.option("--json", "as_json", is_flag=True, help="Print the build's summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def build(output, target, serial, benchmark_binary, adb_path, threads, family, input_size, grid, no_calibrate,
          quantize, no_probe, force, run_timeout, as_json, quiet):
    """Time each layer kind of MobileNetV1/V2 alone over a grid of channel counts and write the
    LUT. Resumable: an interrupted build keeps OUTPUT.partial.json and the same command goes
    on from there."""
    from amc_tf.benchmarks.latency_build import build_lut, parse_families
    from amc_tf.benchmarks.latency_timers import make_timer

    families = parse_families(family)
    out = Path(output)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise AmcError(f"directory of {out} does not exist")
    if target == "local" and (serial or adb_path):
        raise AmcError("--serial and --adb are only for --target adb")
    partial = out.with_name(out.name + ".partial.json")
    say = None if quiet else (lambda m: echo(m, err=True))
    timer = make_timer(target, threads, benchmark_binary, serial, adb_path, say, run_timeout)
    bar = _Bar(quiet)
    try:
        lut = build_lut(out, timer, families, input_size, tiny=grid == "tiny", calibrate=not no_calibrate,
                        force=force, progress=bar, note=say, precision=quantize or "fp32", probe=not no_probe)
    except (RunFailedError, KeyboardInterrupt, Interrupted) as exc:  # a run failed/timed out/was lost; a signal
        bar.finish()
        if not _holds_points(partial):
            raise
        hint = f"; the points measured so far are kept in {partial}; run the same command again to resume"
        if isinstance(exc, RunFailedError):
            raise RunFailedError(f"{exc}{hint}") from None
        # the CLI's interrupt line, with the hint in it (one line), and the signal's exit code
        stop = AmcError(f"interrupted ({getattr(exc, 'signame', 'SIGINT')}){hint}")
        stop.exit_code = getattr(exc, "exit_code", 130)
        raise stop from None
    finally:
        bar.finish()
        timer.close()
    summary = {"output": str(out), "fingerprint": lut.fingerprint, "tables": len(lut.tables),
               "points": lut.meta["points"], "resumed_points": lut.meta["resumed_points"],
               "build_s": lut.meta["build_s"], "overhead_us": lut.overhead_us, "scale": lut.scale,
               "calibration": lut.meta.get("calibration", []), "precision": lut.precision,
               "probe_us": lut.probe_us, "conditions": lut.conditions}
    if as_json:
        emit_json(summary)
        return
    fp = lut.fingerprint
    echo(f"wrote {out}: {summary['points']} points in {len(lut.tables)} tables, "
               f"built in {_mmss(summary['build_s'])} ({summary['resumed_points']} points resumed)")
    echo(f"target: {fp['target']} {fp.get('device') or fp.get('cpu')}, {fp['runtime']}, "
         f"{fp['threads']} thread(s), {fp['delegate']}, {lut.precision}")
    echo(_conditions_line(lut))
    for row in summary["calibration"]:
        echo(f"calibration {row['model']}: measured {row['measured_us'] / 1000:.3f} ms, "
                   f"sum of layers {row['uncalibrated_us'] / 1000:.3f} ms")
    if lut.scale:
        echo("scale: " + ", ".join(f"{k} {v:.3f}" for k, v in lut.scale.items()))


def _conditions_line(lut) -> str:
    cond = lut.conditions
    probe = f"probe {lut.probe_us:.1f} us" if lut.probe_us else "no probe"
    parts = [probe]
    loads = [c["loadavg"][0] for c in (cond.get("start", {}), cond.get("end", {})) if c.get("loadavg")]
    if loads:
        parts.append("load average " + " -> ".join(f"{x:.2f}" for x in loads))
    mhz = (cond.get("start") or {}).get("cpu_mhz")
    if mhz:
        parts.append(f"CPU {mhz:.0f} MHz")
    return "conditions: " + ", ".join(parts)


def _spec_of(model: str | None, profile: str | None, input_size: int | None, default_size: int):
    from amc_tf.core.outdir import is_outdir, read_outdir
    from amc_tf.core.profiles import profile_spec

    if (model is None) == (profile is None):
        raise AmcError("give a MODEL (checkpoint or convert OUTDIR) or --profile NAME, not both" if model
                       else "give a MODEL (checkpoint or convert OUTDIR) or --profile NAME")
    if profile:
        return profile_spec(profile).with_changes(input_size=input_size or default_size), f"--profile {profile}", None
    if os.path.isdir(model):
        if not is_outdir(model):
            raise AmcError(f"{model} is a directory but not a conversion OUTDIR (no report.json)")
        if input_size is not None:
            raise AmcError("--input-size applies to a checkpoint or --profile; an OUTDIR records its own")
        out = read_outdir(model)
        return out.spec, model, out.quantization_mode
    from amc_tf.converters.frontends import load

    network, _ = load(model, input_size=input_size or default_size)
    return network.spec, model, None


# An OUTDIR's quantization mode -> the table precision that times its kernels (fp16 weights are
# expanded to float32 at load time, so an fp16 model runs fp32 kernels; dynamic-range models run
# hybrid kernels no table times).
MODE_PRECISION = {"fp32": "fp32", "fp16": "fp32", "int8": "int8"}


def _check_precision(mode: str | None, label: str, lut, lut_path: str) -> None:
    if mode is None:  # a checkpoint or a profile: predicted at the table's precision
        return
    want = MODE_PRECISION.get(mode)
    if want is None:
        raise AmcError(f"{label} is a {mode} model; latency tables time fp32 or int8 kernels only")
    if want != lut.precision:
        how = "latency build --quantize int8" if want == "int8" else "latency build (without --quantize)"
        article = "an" if mode[0] in "aefio" else "a"
        raise AmcError(f"{label} is {article} {mode} model but {lut_path} is an {lut.precision} table; "
                       f"use a table built with `amc-tf {how}`")


def _format(result: dict, spec, label: str) -> str:
    lines = [f"{safe(label)}: {spec.family} {'/'.join(map(str, spec.channels()))}, input {spec.input_size}, "
             f"{result['precision']}",
             f"{'layer':<40} {'op':<12} {'output':>13} {'MMACs':>8} {'ms':>8} {'share':>6}"]
    for layer in result["layers"]:
        h, w, c = layer["shape"][1]
        lines.append(f"{layer['name'].split('/', 1)[-1]:<40} {layer['op']:<12} {f'{h}x{w}x{c}':>13} "
                     f"{layer['macs'] / 1e6:>8.2f} {layer['predicted_ms']:>8.3f} {100 * layer['share']:>5.1f}%")
    macs = sum(layer["macs"] for layer in result["layers"])
    lines.append(f"predicted: {result['predicted_ms']:.3f} ms ({macs / 1e6:.1f}M MACs)")
    probe = result["probe"]
    if probe.get("now_us"):
        lines.append(f"probe: {probe['now_us']:.1f} us now, {probe['build_us']:.1f} us at build: "
                     f"scaled by {probe['factor']:.3f}")
    else:
        lines.append(f"probe: not run ({probe['skipped']}): the table's speed at build time")
    return "\n".join(lines) + "\n"


def _check_plot(plot: str, force: bool) -> None:
    """Refuse a --plot target before any work: a .png file name whose directory exists; an
    existing one only with --force, and never something other than a regular file."""
    import stat

    if not plot.strip():
        raise AmcError("--plot wants a file name ending in .png, got an empty one")
    p = Path(plot)
    if p.suffix.lower() != ".png":
        raise AmcError(f"--plot {plot}: the file name must end in .png (the plot is a PNG)")
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise AmcError(f"cannot write {plot}: {exc.strerror}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise AmcError(f"{plot} exists and is not a regular file; refusing to replace it, even with --force")
        if not force:
            raise OutputExistsError(f"{plot} exists; pass --force to replace it")
    if not p.parent.is_dir():
        raise AmcError(f"directory of {plot} does not exist")


@latency.command("predict")
@click.argument("model", required=False, type=click.Path())
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None, help="An AMC profile instead of MODEL.")
@click.option("--lut", "lut_path", required=True, type=click.Path(dir_okay=False), help="LUT from `latency build`.")
@click.option("--input-size", type=click.IntRange(32, 1024), default=None,
              help="Input size of a checkpoint or profile  [default: the LUT's]")
@click.option("--target", type=click.Choice(["local", "adb"]), default="local", show_default=True,
              help="The target the prediction is for; the LUT must have been built on it.")
@click.option("--serial", default=None, metavar="S", help="adb: the device to check the LUT against.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False), default=None,
              help="The benchmark_model the LUT was built with (checks the runtime too).")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), default=None, help="adb client to use.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads the LUT was built with (checked against its fingerprint).")
@click.option("--ignore-fingerprint", is_flag=True, help="Use a LUT built on another target anyway.")
@click.option("--no-probe", is_flag=True, help="Do not time the drift probe (~1 s on the target): predict "
                                               "the target's speed at build time.")
@click.option("--json", "as_json", is_flag=True, help="Print {predicted_ms, layers: [...], precision, probe} as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: per-layer predicted time beside MACs.")
@click.option("--force", is_flag=True, help="Replace an existing --plot file.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but errors (no library notes while "
                                                  "reading MODEL).")
def predict(model, profile, lut_path, input_size, target, serial, benchmark_binary, adb_path, threads,
            ignore_fingerprint, no_probe, as_json, plot, force, quiet):
    """Predict the latency of MODEL (a checkpoint or a convert OUTDIR) or of --profile NAME,
    layer by layer, from a LUT built on the same target."""
    from amc_tf.benchmarks.latency_lut import load_lut

    if plot is not None:
        _check_plot(plot, force)
    lut = load_lut(lut_path)
    if not ignore_fingerprint:
        from amc_tf.benchmarks.latency_timers import current_fingerprint

        why = lut.fingerprint_mismatch(current_fingerprint(target, threads, benchmark_binary, serial, adb_path))
        if why:
            raise AmcError(f"{lut_path} was built on another target ({why}); rebuild it here, "
                           "or pass --ignore-fingerprint")
    from amc_tf.core.quiet import silenced

    with silenced(force=quiet):
        spec, label, mode = _spec_of(model, profile, input_size, lut.input_size)
    _check_precision(mode, label, lut, lut_path)
    lut.predict_layers(spec)  # a network the table does not cover is refused before the probe runs
    probe = _probe(lut, no_probe, target, threads, benchmark_binary, serial, adb_path)
    result = lut.predict_layers(spec, probe.get("now_us"))
    result["precision"], result["probe"] = lut.precision, probe
    if plot is not None:
        from amc_tf.benchmarks.latency_plot import write_plot

        write_plot(result, plot, f"{label} ({spec.family})", overwrite=force)
    if as_json:
        emit_json(result)
    else:
        echo_block(_format(result, spec, label), nl=False)


def _probe(lut, no_probe: bool, target, threads, benchmark_binary, serial, adb_path) -> dict:
    """The probe on the target now: {"now_us", "build_us", "factor"}, or {"skipped": why}."""
    if no_probe:
        return {"skipped": "--no-probe"}
    if not lut.probe_us:
        return {"skipped": "the table has no probe figure"}
    if target == "adb" and not benchmark_binary:
        raise AmcError("the probe runs benchmark_model on the device: pass --benchmark-binary, or --no-probe")
    from amc_tf.benchmarks.latency_probe import probe_us
    from amc_tf.benchmarks.latency_timers import make_timer

    timer = make_timer(target, threads, benchmark_binary, serial, adb_path)
    try:
        now = probe_us(timer, lut.precision)
    finally:
        timer.close()
    return {"now_us": now, "build_us": lut.probe_us, "factor": round(lut.speed(now), 4)}


COMMANDS = [latency]
