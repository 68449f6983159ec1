"""`amc-tf compare`: conversion OUTDIRs side by side (size, latency, agreement with fp32)."""

from __future__ import annotations

import click

from amc_tf.cli.output import echo, echo_block, emit_json, say_skipped
from amc_tf.core.errors import AmcError
from amc_tf.core.textsafe import safe


def _say(quiet: bool):
    def say(msg: str) -> None:
        if not quiet:
            echo(f"amc-tf: {msg}", err=True)

    return say


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _table(rows: list[dict], images: dict, protocol: dict | None) -> str:
    rows = [dict(r, name=safe(r["name"]), warnings=[safe(w) for w in r["warnings"]]) for r in rows]
    w = max(5, *(len(r["name"]) for r in rows))
    head = (f"{'model':<{w}} {'mode':<8} {'io':<8} {'MB':>6} {'x fp32':>6} {'ms':>8} {'x first':>7} "
            f"{'top-1 agr':>9} {'top-5 agr':>9} {'max|err|':>9} {'top-1':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        vs = r["vs_fp32"]
        ms = f"{r['latency_ms']:.2f}" if "latency_ms" in r else "-"
        ratio = f"{r['latency_ratio']:.2f}" if "latency_ratio" in r else "-"
        acc = _pct(r["accuracy"]["top1"]) if "accuracy" in r else "-"
        lines.append(f"{r['name']:<{w}} {r['mode']:<8} {r['io']:<8} {r['bytes'] / 1e6:>6.2f} {r['size_ratio']:>6.2f} "
                     f"{ms:>8} {ratio:>7} {_pct(vs['top1_agreement']):>9} {_pct(vs['top5_agreement']):>9} "
                     f"{vs['max_logit_error']:>9.3g} {acc:>6}")
    for r in rows:
        for warning in r["warnings"]:
            lines.append(f"WARNING: {r['name']}: {warning}")
    notes = ([f"{images['excluded_calibration']} left out: calibration images"] if images["excluded_calibration"] else []) \
        + ([f"{images['skipped']} unreadable, skipped"] if images["skipped"] else [])
    lines.append(f"{images['measured']} images from {safe(images['root'])}" + (f" ({'; '.join(notes)})" if notes else ""))
    if protocol:
        lines.append(f"latency: local target, {protocol['threads']} thread(s), {protocol['warmup']} warm-up + "
                     f"{protocol['runs']} timed invocations x {protocol['repeats']} runs, mean of the runs' averages")
    return "\n".join(lines) + "\n"


@click.command("compare")
@click.argument("outdirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=str),
              help="Images to measure agreement (and accuracy, where labelled) on; calibration images are left out.")
@click.option("--limit", type=click.IntRange(1), help="Measure only the first N images.")
@click.option("--warmup", type=int, default=100, show_default=True, help="Warm-up invocations per run (exact).")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed invocations per run (exact).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs; each a fresh interpreter.")
@click.option("--threads", type=int, default=1, show_default=True, help="Inference threads (latency and agreement).")
@click.option("--no-latency", is_flag=True, help="Skip the latency measurement.")
@click.option("--logdir", type=click.Path(file_okay=False, path_type=str),
              help="Keep the benchmark logs here (default: a temporary directory, removed).")
@click.option("--force", is_flag=True, help="Replace existing logs of the same name in --logdir.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def compare(outdirs, images_dir, limit, warmup, runs, repeats, threads, no_latency, logdir, force, as_json, quiet):
    """Compare conversion OUTDIRs (e.g. fp32, fp16, dynamic and int8 of one checkpoint) by
    model.tflite size, latency (Pixel-1 protocol on the local target) and agreement with
    each one's fp32 model on real images (accuracy too, where they are labelled).

    Latency is what this machine measures; int8's speed-up on phones comes from ARM
    dot-product kernels (measure it there: amc-tf bench --target adb).

    \b
    Example:
      amc-tf compare out/fp32 out/fp16 out/int8 --images val_sample/ --repeats 1
    """
    import tempfile
    from pathlib import Path

    from amc_tf.services import compare as cmp

    say = _say(quiet)
    cands = cmp.open_candidates(outdirs)
    protocol = None
    if not no_latency:
        from amc_tf.benchmarks.protocol import Protocol, ProtocolError

        try:
            protocol = Protocol(warmup=warmup, runs=runs, repeats=repeats, threads=threads)
        except ProtocolError as exc:
            raise AmcError(str(exc)) from None
    images = cmp.open_images(images_dir, cands, limit)
    rows = [cmp.size_row(c) for c in cands]
    for row, extra in zip(rows, cmp.measure_agreement(cands, images, say)):
        row.update(extra)
    if protocol is not None:
        from amc_tf.benchmarks.runlog import claim_logdir

        with tempfile.TemporaryDirectory(prefix="amc-tf-compare-") as tmp:
            logs = Path(logdir) if logdir else Path(tmp)
            claim_logdir(logs, [c.name for c in cands], force)
            for row, extra in zip(rows, cmp.measure_latency(cands, protocol, logs, say)):
                row.update(extra)
        for row in rows:
            row["latency_ratio"] = row["latency_ms"] / rows[0]["latency_ms"]
    say_skipped(images.skipped)
    info = {"root": images_dir, "measured": images.measured, "excluded_calibration": images.excluded,
            "skipped": len(images.skipped), "skipped_files": images.skipped}
    if as_json:
        emit_json({"images": info, "protocol": protocol.as_dict() if protocol else None,
                   "target": "local" if protocol else None, "logdir": logdir, "rows": rows})
        return
    echo_block(_table(rows, info, protocol.as_dict() if protocol else None), nl=False)


COMMANDS = [compare]
