"""`amc-tf study`: many models x precisions converted, evaluated and timed in one run, on an
embedded pool (default) or a Ray cluster; see docs/study.md."""

from __future__ import annotations

import os
import sys

import click

from amc_tf.cli.output import ProgressBar, emit_json
from amc_tf.core.errors import AmcError


class StudyFailed(AmcError):
    """Some records failed (each named on stderr and in study.json); the rest are written. Exit 1."""

    exit_code = 1


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "studydir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="STUDYDIR: study.json, table.md, table.csv, pareto.png, models/NAME/PRECISION/.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=str),
              help="Evaluation images (any layout eval reads, labelled as eval reads them).")
@click.option("--precision", "precisions", default="fp32", show_default=True, metavar="LIST",
              help="Comma-separated: fp32, fp16, dynamic, int8 (int8 calibrated as convert does).")
@click.option("--latency", default="none", show_default=True, metavar="none|local|lut:FILE|adb:SERIAL[,SERIAL...]",
              help="Latency: not measured, the Pixel-1 protocol on this CPU or a phone, or predicted by a LUT.")
@click.option("--limit", type=click.IntRange(1), help="Measure only the first N images (dataset order).")
@click.option("--calibration-images", "calibration", metavar="DIR|synthetic",
              help="int8 calibration images [default: --images; calibration images are never measured].")
@click.option("--calibration-size", type=click.IntRange(1), default=100, show_default=True,
              help="int8: how many calibration images.")
@click.option("--chunk-size", type=click.IntRange(1, 100000), default=250, show_default=True,
              help="Images per evaluation task (a model's evaluation is sharded into chunks across workers).")
@click.option("--input-size", type=click.IntRange(32, 1024), help="Input size of PyTorch checkpoints (default 224).")
@click.option("--benchmark-binary", metavar="PATH", help="adb latency: an Android build of benchmark_model.")
@click.option("--workers", type=click.IntRange(1, 256), help="Embedded worker processes [default: the CPU count].")
@click.option("--ray-address", envvar="RAY_ADDRESS", metavar="HOST:PORT",
              help="Run the tasks on this Ray cluster (also RAY_ADDRESS); needs amc-tf[ray].")
@click.option("--force", is_flag=True, help="Recompute everything (ignore the cache); write into a non-study folder.")
@click.option("--json", "as_json", is_flag=True, help="Print study.json to stdout.")
@click.option("-v", "--verbose", is_flag=True, help="One line per finished stage on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def study(models, studydir, images, precisions, latency, limit, calibration, calibration_size, chunk_size, input_size,
          benchmark_binary, workers, ray_address, force, as_json, verbose, quiet):
    """Convert, evaluate and time many MODELS (checkpoints, ONNX files, folders of them, or a
    .toml list) in each --precision; one table and one trade-off plot.

    Results are cached by content in STUDYDIR: running the same study again recomputes
    nothing, and an interrupted one resumes.

    \b
    Examples:
      amc-tf study checkpoints/ --images /data/imagenet/val --precision fp32,int8 -o study/
      amc-tf study candidates.toml --images val/ --latency lut:pixel1.json -o study/
      amc-tf study checkpoints/ --images /shared/val --ray-address 10.0.0.1:6379 -o study/
    """
    from pathlib import Path

    from amc_tf.services.study import plan as P
    from amc_tf.services.study.cache import claim
    from amc_tf.services.study.discover import StudyInputError, discover
    from amc_tf.services.study.report import write_outputs
    from amc_tf.services.study.run import Progress, Study

    entries = discover(list(models))
    lat = P.Latency.parse(latency)
    if lat.kind == "adb" and not benchmark_binary:
        raise StudyInputError("--latency adb:... needs --benchmark-binary (an Android build of benchmark_model)")
    if lat.kind == "lut" and input_size not in (None, 224):
        pass  # the LUT refuses a network of another size itself, per record
    options = P.StudyOptions(precisions=P.StudyOptions.parse_precisions(precisions), images=images, limit=limit,
                             chunk_size=chunk_size, latency=lat, calibration=calibration,
                             calibration_size=calibration_size, input_size=input_size,
                             benchmark_binary=os.path.abspath(benchmark_binary) if benchmark_binary else None)
    if ray_address:
        from amc_tf.services.study.ray_backend import check_reachable

        check_reachable(ray_address)  # before any work: an unreachable cluster is one line, exit 2

        def make_backend():
            from amc_tf.services.study.ray_backend import RayPool

            return RayPool(ray_address)
    else:
        n = workers or os.cpu_count() or 1

        def make_backend():
            from amc_tf.services.study.pool import LocalPool

            return LocalPool(n)

    out = Path(studydir)
    cache = claim(out, force)
    bar = ProgressBar(not quiet)
    progress = Progress(tick=bar.update, say=(lambda m: bar.line(f"amc-tf: study: {m}")) if verbose else None)
    runner = Study(entries, options, out, cache, make_backend, progress)
    import time

    t0 = time.monotonic()
    try:
        units = runner.run()
    finally:
        bar.close()
    backend = "ray" if ray_address else "embedded"
    result = write_outputs(units, runner, {"study": {
        "models": len(entries), "precisions": list(options.precisions), "images": images, "limit": limit,
        "latency": lat.describe(), "backend": backend, "ray_address": ray_address,
        "workers": None if ray_address else (workers or os.cpu_count()), "chunk_size": chunk_size,
        "tasks": progress.total, "cached_tasks": progress.cached,
        "backend_start_s": runner.backend_start_s, "seconds": round(time.monotonic() - t0, 3)}})
    failed = [r for r in result["records"] if r["status"] != "ok"]
    if as_json:
        emit_json({k: v for k, v in result.items() if k != "pareto_axis"})
    else:
        click.echo((out / "table.md").read_text(), nl=False)
        click.echo(f"{len(result['records']) - len(failed)} of {len(result['records'])} records in {out}/study.json "
                   f"({progress.total} tasks, {progress.cached} from the cache, {result['study']['seconds']:.1f} s)")
    sys.stdout.flush()  # the figures first, then what failed
    for r in failed:
        click.echo(f"amc-tf: study: {r['name']} {r['precision']} failed: {r['error']}", err=True)
    if failed:
        raise StudyFailed(f"{len(failed)} of {len(result['records'])} records failed (see {out}/study.json); "
                          "the others are in the table")


COMMANDS = [study]
