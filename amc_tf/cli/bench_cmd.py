"""`amc-tf bench` (run the Pixel-1 protocol locally or on Android over adb) and
`amc-tf logs parse|summarize` (benchmark_model logs -> the seed's latency table).

Exit codes: 0 all runs fine; 2 bad input / no device (nothing run); 3 some run failed,
held no result or was lost (the logs that exist are kept and summarised).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from amc_tf.cli.output import echo, echo_block, emit_json
from amc_tf.cli.options import FiniteFloat
from amc_tf.core.errors import AmcError, RunFailedError
from amc_tf.core.textsafe import safe


def _progress(msg: str) -> None:
    echo(msg, err=True)


def _protocol(**kw):
    from amc_tf.benchmarks.protocol import Protocol, ProtocolError

    try:
        return Protocol(**kw)
    except ProtocolError as exc:
        raise AmcError(str(exc)) from None


def _model_file(model: str) -> Path:
    """MODEL as a .tflite path: a file, or a conversion OUTDIR (its model.tflite)."""
    p = Path(model)
    if p.is_dir():
        tflite = p / "model.tflite"
        if not tflite.is_file():
            raise AmcError(f"{model} is a folder without model.tflite; give a .tflite file or a conversion OUTDIR")
        return tflite
    return p


def default_name(model: str) -> str:
    """The log name of MODEL: an OUTDIR, or the model.tflite / model_fp32.tflite that
    `convert` writes, is named after its folder (`out/a` -> `a`, `out/a/model_fp32.tflite`
    -> `a_fp32`); any other file by its stem."""
    p = Path(model)
    if p.is_dir():
        return Path(os.path.abspath(p)).name
    folder = Path(os.path.abspath(p)).parent.name
    if p.stem in ("model", "model_fp32") and folder:
        return folder + p.stem[len("model"):]
    return p.stem


def _names(models: tuple[str, ...], name: str | None) -> list[str]:
    """The log names: --name as given (checked, and blamed when unusable), else one derived from
    each model's folder or file name, made safe for a file name and unique (-2, -3 ...) as
    compare does."""
    from amc_tf.benchmarks.runlog import check_name, safe_name

    if name is not None:
        if len(models) != 1:
            raise AmcError("--name needs exactly one MODEL (without it, each model's log name is derived from "
                           "its folder or file name)")
        return [check_name(name)]
    names: list[str] = []
    for model in models:
        base = cand = safe_name(default_name(model))
        k = 1
        while cand in names:
            k += 1
            cand = f"{base}-{k}"
        names.append(cand)
    return names


def _fresh_logdir(root: Path) -> Path:
    """logs/<YYYYmmdd-HHMMSS>[-N]: each bench call without --logdir gets a folder of its own."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    cand, n = root / stamp, 2
    while cand.exists():
        cand, n = root / f"{stamp}-{n}", n + 1
    return cand


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--target", type=click.Choice(["local", "adb"]), default="local", show_default=True,
              help="local: this machine (in-process LiteRT, or --benchmark-binary); adb: Android device(s).")
@click.option("--serial", "serials", multiple=True, metavar="S",
              help="adb device serial; repeat for several devices (they run in parallel).")
@click.option("--benchmark-binary", default=None, metavar="PATH|NAME",
              help="benchmark_model to run (host build for local: a bare name is looked up on PATH, ./bm is a "
                   "path; Android build for adb).")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), default=None,
              help="adb client to use (default: $ADB, then adb on PATH).")
@click.option("--warmup", type=int, default=100, show_default=True, help="warm-up invocations per run (exact)")
@click.option("--runs", type=int, default=200, show_default=True, help="timed invocations per run (exact)")
@click.option("--repeats", type=int, default=3, show_default=True, help="runs; each a fresh interpreter / process")
@click.option("--threads", type=int, default=1, show_default=True, help="inference threads per run")
@click.option("--taskset", default=None, metavar="MASK", help="pin to the CPUs of a hex mask, e.g. f0 (big cores)")
@click.option("--delegate", type=click.Choice(["xnnpack", "none", "gpu", "nnapi"]), default="xnnpack",
              show_default=True, help="gpu and nnapi only with --target adb")
@click.option("--logdir", type=click.Path(file_okay=False), default=None,
              help="where the logs go [default: a new folder logs/<date>-<time> for each call]")
@click.option("--run-timeout", type=FiniteFloat(low=0, low_open=True), default=None, metavar="SECONDS",
              help="stop a run after this long and report it timed out (exit 3) [default: 120 s + 2 s per "
                   "warm-up or timed invocation]")
@click.option("--name", default=None,
              help="log name, for one MODEL (default: derived from the model: an OUTDIR's folder name, a .tflite's "
                   "file stem)")
@click.option("--baseline", default=None, help="add each model's latency ratio to this model (by name)")
@click.option("--cleanup", is_flag=True, help="adb: remove the pushed binary and models afterwards")
@click.option("--force", is_flag=True, help="replace existing logs of the same name")
@click.option("--json", "as_json", is_flag=True, help="emit runs and summary as JSON on stdout")
@click.option("-q", "--quiet", is_flag=True, help="no progress on stderr")
def bench(models, target, serials, benchmark_binary, adb_path, warmup, runs, repeats, threads, taskset,
          delegate, logdir, run_timeout, name, baseline, cleanup, force, as_json, quiet):
    """Benchmark TFLite MODELs with the Pixel-1 protocol (defaults: 1 thread, 100 warm-up +
    200 timed invocations, 3 runs). MODEL is a .tflite or a conversion OUTDIR (its
    model.tflite, logged under the folder's name). Each run leaves LOGDIR/<name>_run<k>.txt
    in benchmark_model's format; the summary is the mean of the runs' averages."""
    from amc_tf.benchmarks.runlog import check_model, claim_logdir, existing_logs

    say = (lambda _msg: None) if quiet else _progress
    protocol = _protocol(warmup=warmup, runs=runs, repeats=repeats, threads=threads, delegate=delegate,
                         taskset=taskset, run_timeout=run_timeout)
    if target == "local":
        if serials:
            raise AmcError("--serial is only for --target adb")
        if adb_path:
            raise AmcError("--adb is only for --target adb")
        if cleanup:
            raise AmcError("--cleanup is only for --target adb")
        if delegate in ("gpu", "nnapi"):
            raise AmcError(f"--delegate {delegate} is only available with --target adb")
    elif not benchmark_binary:
        raise AmcError("--target adb needs --benchmark-binary (an Android build of benchmark_model)")

    paths = [check_model(_model_file(m)) for m in models]
    names = _names(models, name)
    logdir = Path(logdir) if logdir else _fresh_logdir(Path("logs"))
    if baseline and not (baseline in names or baseline.split("@")[0] in names or existing_logs(logdir, baseline)):
        raise AmcError(f"--baseline {baseline!r} is neither one of the models benchmarked now "
                       f"({', '.join(names)}) nor has logs in {logdir}")

    if target == "local":
        from amc_tf.benchmarks.local import bench_local, check_binary
        from amc_tf.benchmarks.protocol import check_taskset

        if hasattr(os, "sched_getaffinity"):  # the CPUs this process may use (a container's cpuset, taskset ...)
            check_taskset(protocol.taskset, sorted(os.sched_getaffinity(0)), "this machine lets amc-tf use")

        binary = check_binary(benchmark_binary) if benchmark_binary else None
        with claim_logdir(logdir, names, force, staged=True):  # old logs replaced only once the runs are done
            say(f"logs in {logdir}/")
            records = [bench_local(p, n, protocol, logdir, binary=binary, progress=say) for p, n in zip(paths, names)]
        log_names = names
        lost: list[str] = []
    else:
        from amc_tf.benchmarks.android import bench_android

        outcome = bench_android(list(zip(names, paths)), protocol, logdir, serials=list(serials),
                                binary=Path(benchmark_binary), adb=adb_path, cleanup=cleanup, force=force,
                                progress=say)
        records, log_names, lost = outcome.records, outcome.log_names, outcome.errors
        say(f"logs in {logdir}/")

    _report(logdir, log_names, records, baseline, as_json, lost)


def _report(logdir: Path, log_names: list[str], records, baseline, as_json, errors: list[str]):
    from amc_tf.benchmarks.summary import summarize_dir, to_json, to_text

    names = list(log_names)
    models = summarize_dir(logdir, baseline=baseline, names=names)
    if as_json:
        emit_json({"logdir": str(logdir), "runs": [r.as_dict() for r in records], "errors": errors,
                   **to_json(models, baseline)})
    else:
        echo_block(to_text(models, baseline), nl=False)
    bad = [m for m in models if m.name in names and not m.complete]
    if bad or errors:
        what = "; ".join(errors + [f"{m.name}: {', '.join(m.problems) or 'no successful run'}" for m in bad])
        raise RunFailedError(f"not every run succeeded ({what}); logs kept in {logdir}")


@click.group("logs")
def logs():
    """Read benchmark_model logs (any vintage) and summarise runs."""


@logs.command("parse")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="emit the parsed fields as JSON")
def parse(file, as_json):
    """Parse one benchmark_model log. Exit 3 when the log holds no result or a failure."""
    from amc_tf.benchmarks.logparse import parse_file

    p = Path(file)
    if not p.is_file():
        raise AmcError(f"log not found: {p}")
    _check_text(p)
    r = parse_file(p)
    if as_json:
        emit_json(r.as_dict())
    else:
        echo_block(_describe(r), nl=False)
    if not r.ok:
        raise RunFailedError(f"{p.name}: {r.error}")


def _check_text(p: Path) -> None:
    """Refuse a file that cannot be a log (binary, or over the size limit) as bad input, before parsing."""
    from amc_tf.benchmarks.logparse import check_log

    check_log(p)


def _describe(r) -> str:
    def us(v):
        return "-" if v is None else f"{v:.1f} us ({v / 1000:.3f} ms)"

    lines = [f"source:            {safe(r.source)}", f"status:            {r.status}" + (f" ({r.format} format)" if r.format else "")]
    if r.error:
        lines.append(f"error:             {safe(r.error)}")
    lines += [
        f"inference avg:     {us(r.inference_avg_us)}",
        f"count:             {'-' if r.count is None else r.count}",
        f"std / min / max:   {us(r.std_us)} / {us(r.min_us)} / {us(r.max_us)}",
        f"warm-up avg:       {us(r.warmup_avg_us)}" + (f" over {r.warmup_count}" if r.warmup_count is not None else ""),
        f"init:              {us(r.init_us)}",
        f"first inference:   {us(r.first_us)}",
    ]
    if r.memory_mb is not None:
        lines.append(f"memory:            {r.memory_mb:g} MB")
    if r.ops_by_type:
        lines.append("ops by type (avg ms):")
        for t, e in sorted(r.ops_by_type.items(), key=lambda kv: -kv[1]["avg_ms"]):
            lines.append(f"  {safe(t):<24} {e['avg_ms']:>10.3f}" + (f"  x{e['count']}" if "count" in e else ""))
    return "\n".join(lines) + "\n"


@logs.command("summarize")
@click.argument("logdir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--csv", "as_csv", is_flag=True, help="print the summary as CSV")
@click.option("--markdown", "as_md", is_flag=True, help="print the summary as a Markdown table")
@click.option("--baseline", default=None, help="add each model's latency ratio to this model")
def summarize(logdir, as_json, as_csv, as_md, baseline):
    """Group LOGDIR/<model>_run<k>.txt by model: per-run averages, mean across runs (the
    headline), std across runs, min/median/max, optional ratio to a baseline.
    Exit 3 when a run failed, holds no result, or is missing. A file that cannot be a
    benchmark_model log (binary, or over 64 MiB) is refused: exit 2 naming it, nothing summarised."""
    from amc_tf.benchmarks.summary import summarize_dir, to_csv, to_json, to_markdown, to_text

    if sum([as_json, as_csv, as_md]) > 1:
        raise AmcError("choose one of --json, --csv, --markdown")
    models = summarize_dir(logdir, baseline=baseline)
    if as_json:
        emit_json(to_json(models, baseline))
    elif as_csv:
        echo_block(to_csv(models), nl=False)
    elif as_md:
        echo_block(to_markdown(models, baseline), nl=False)
    else:
        echo_block(to_text(models, baseline), nl=False)
    bad = [m for m in models if not m.complete]
    if bad:
        raise RunFailedError("incomplete: " + "; ".join(f"{m.name}: {', '.join(m.problems) or 'no run'}" for m in bad))


COMMANDS = [bench, logs]

