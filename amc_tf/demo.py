"""`make demo`: convert seeded random-weight checkpoints of every AMC profile, in both
PyTorch file formats, and print the profile and parity tables.

The weights are random (seeded), NOT the published AMC weights: those live on a file host
this machine cannot reach. The architecture, file formats, key layout and conversion path
are the real ones; put the real files in checkpoints/ and run `amc-tf convert` on them.

Needs torch (installed by `make demo` through the `test` extra) to write the checkpoints.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import click

from amc_tf.core.profiles import PROFILE_NAMES, PUBLISHED_MACS_M, profile_spec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

FORMATS = ("legacy", "zip")  # legacy = PyTorch <= 1.5 stream (the 2018 release), zip = PyTorch >= 1.6


def _not_demo_output(outdir: Path) -> str:
    """'' when OUTDIR holds only what the demo writes, else what is in the way."""
    if outdir.is_symlink() or not outdir.is_dir():
        return "not a directory"
    ours = {"checkpoints"} | {f"{name}-{fmt}" for name in PROFILE_NAMES for fmt in FORMATS}
    foreign = sorted(entry.name for entry in os.scandir(outdir) if entry.name not in ours)
    return ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")


def write_checkpoints(outdir: Path, seed: int, profiles=PROFILE_NAMES) -> list[tuple[str, str, Path]]:
    try:
        from amc_tf.core import torch_models
    except ImportError:
        raise click.ClickException("the demo writes PyTorch checkpoints and needs torch: pip install torch==2.13.0")
    ckdir = outdir / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    made = []
    for name in profiles:
        model = torch_models.randomize(torch_models.build(profile_spec(name), "amc"), seed)
        for fmt in FORMATS:
            path = ckdir / f"mobilenet_{name}_random-seed{seed}_{fmt}.pth.tar"
            torch_models.save(model, path, legacy=(fmt == "legacy"), epoch=0, arch=f"amc-{name}-random")
            made.append((name, fmt, path))
    return made


@click.command()
@click.option("--out", "outdir", default="demo-out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing demo output directory.")
@click.option("--checkpoints-only", "only", multiple=True, type=click.Choice(PROFILE_NAMES), metavar="PROFILE",
              help="Only write the random-weight checkpoints of PROFILE (repeatable), convert nothing.")
def main(outdir: Path, seed: int, force: bool, only: tuple[str, ...]) -> None:
    from amc_tf.core import quiet

    quiet.install()  # TensorFlow's and LiteRT's start-up logs stay out of the tables (AMC_TF_VERBOSE=1 shows them)

    from amc_tf.core.errors import AmcError
    from amc_tf.core.outdir import OutdirClaim

    def replaceable(path: Path) -> None:
        foreign = _not_demo_output(path)
        if foreign:
            raise click.ClickException(f"{outdir} is not a demo output ({foreign}); --force replaces only an "
                                       "earlier demo: remove it yourself or choose another --out")

    # the folder is claimed (made here, or an empty one, or with --force an earlier demo) and locked
    # until the demo ends: a second demo into it fails at once, and with --force only the demo's own
    # entries are deleted, never the folder with whatever else appears in it meanwhile
    claim = OutdirClaim(outdir, force=force, replaceable=replaceable, hint="choose another --out")
    try:
        claim.acquire()
    except AmcError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        for name in claim.before:
            entry = outdir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        _run(outdir, seed, only)
        claim.release(ok=True)
    finally:
        claim.release()


def _run(outdir: Path, seed: int, only: tuple[str, ...]) -> None:
    from amc_tf.core.flops import count

    if only:
        for _, _, path in write_checkpoints(outdir, seed, only):
            click.echo(path)
        return
    from amc_tf.converters.convert import ConvertOptions, convert

    click.echo("amc-tf demo: seeded RANDOM weights in the AMC profiles' exact shapes and key layout "
               "(not the published AMC weights, which cannot be downloaded here)\n", err=True)

    click.echo("Profiles (true counts of each architecture vs the release's MACs column):")
    click.echo(f"  {'profile':<12} {'family':<13} {'MACs':>9} {'release':>8} {'params':>9}")
    for name in PROFILE_NAMES:
        c = count(profile_spec(name))
        click.echo(f"  {name:<12} {profile_spec(name).family:<13} {c['macs'] / 1e6:>8.1f}M {PUBLISHED_MACS_M[name]:>7}M "
                   f"{c['params'] / 1e6:>8.3f}M")

    checkpoints = write_checkpoints(outdir, seed)
    click.echo(f"\nConversions ({len(checkpoints)} checkpoints -> {outdir}/<profile>-<format>/):")
    header = f"  {'profile':<12} {'format':<7} {'tflite MB':>9} {'|tflite-torch|':>15} {'rel':>9} {'|tf-torch|':>11} {'top-1':>6} {'time':>6}"
    click.echo(header)
    failures = 0
    for i, (name, fmt, path) in enumerate(checkpoints, 1):
        click.echo(f"  [{i}/{len(checkpoints)}] converting {path.name}", err=True)
        t = time.perf_counter()
        report = convert(path, outdir / f"{name}-{fmt}", ConvertOptions(profile=name))
        ver = report["verification"]
        ref = ver["pairs"].get("tflite_vs_torch") or ver["pairs"]["tf_vs_tflite"]
        tf_ref = ver["pairs"].get("tf_vs_torch", {}).get("max_abs_diff", float("nan"))
        failures += not ver["passed"]
        click.echo(f"  {name:<12} {fmt:<7} {report['artifacts']['tflite']['bytes'] / 1e6:>9.2f} "
                   f"{ref['max_abs_diff']:>15.2e} {ref['max_abs_diff'] / ver['max_abs_logit']:>9.1e} {tf_ref:>11.2e} "
                   f"{ref['top1_agreement']:>6.0%} {time.perf_counter() - t:>5.1f}s")
    click.echo(f"\nrel = max|diff| / max|logit|; the gate is 1e-4. "
               f"{'All conversions passed.' if not failures else f'{failures} conversion(s) FAILED verification.'}")
    click.echo(f"Outputs in {outdir}/. Next, after `. .venv/bin/activate`:\n"
               f"  amc-tf bench {outdir}/0.5flops-legacy/model.tflite --name 0.5flops\n"
               f"  amc-tf diff {outdir}/0.5flops-legacy")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
