"""`amc-tf diff`: where do two runtimes' outputs diverge, layer by layer."""

from __future__ import annotations

import os

import click

from amc_tf.cli.options import BN_EPS, NON_NEGATIVE
from amc_tf.cli.output import echo, echo_block, emit_json, say_skipped
from amc_tf.core.errors import AmcError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
CHECKPOINT_DEFAULTS = {"input_size": 224, "bn_eps": 1e-5, "activation": None}  # what --help names
RANDOM_INPUTS = 2  # standard-normal inputs when neither --images nor --random is given


class DiffFailed(AmcError):
    """A layer's error exceeds --tolerance. Exit 1, like every gate."""

    exit_code = 1


def _progress(quiet: bool):
    def report(msg: str) -> None:
        if not quiet:
            echo(f"amc-tf: {msg}", err=True)

    return report


def image_inputs(directory: str, spec, limit: int, skipped: list | None = None):
    """The first `limit` readable images under DIR (sorted paths), preprocessed as the PyTorch
    eval transform does for the network's input size and normalisation. An unreadable image is
    skipped and named in `skipped` ({"file", "error"}), as every command skips them."""
    import numpy as np

    from amc_tf.core.data import describe_failure
    from amc_tf.core.preprocess import Preprocessing, normalize, pil_load_crop

    if not os.path.isdir(directory):
        what = "not a directory" if os.path.exists(directory) else "no such directory"
        raise AmcError(f"--images {directory}: {what}")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(directory) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise AmcError(f"--images {directory}: no images ({', '.join(IMAGE_SUFFIXES)})")
    prep = Preprocessing.for_input_size(spec.input_size, mean=tuple(spec.mean), std=tuple(spec.std))
    batch, failed = [], []
    for path in paths:
        if len(batch) == limit:
            break
        try:
            batch.append(normalize(pil_load_crop(path, prep), prep))
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            failed.append({"file": path, "error": describe_failure(exc)})
    if skipped is not None:
        skipped += failed
    if not batch:
        named = "; ".join(f"{item['file']}: {item['error']}" for item in failed[:3])
        raise AmcError(f"--images {directory}: none of the {len(failed)} images could be read ({named})")
    return np.stack(batch).astype(np.float32)


@click.command()
@click.argument("model", metavar="CHECKPOINT_OR_OUTDIR", type=click.Path(path_type=str))
@click.option("--against", metavar="torch|tf|tflite|OUTDIR_B|FILE.tflite",
              help="The reference: a runtime of the same model (default: torch when available, else tf; "
                   "all other runtimes are compared with it), or another conversion whose .tflite the "
                   "model's .tflite is compared with (e.g. an int8 model against its fp32 twin).")
@click.option("--images", "images", type=click.Path(path_type=str),
              help="Run these images (PyTorch eval preprocessing) instead of random inputs.")
@click.option("--limit", type=click.IntRange(1), default=8, show_default=True, help="At most this many --images.")
@click.option("--random", "random_n", type=click.IntRange(1), default=None,
              help="Run N standard-normal inputs (seed 0)  [default: 2, when --images is not given]")
@click.option("--tolerance", type=NON_NEGATIVE, default=1e-4, show_default=True,
              help="Largest relative error (max|err| / max|reference|) a layer may have; exit 1 beyond it.")
@click.option("--input-size", type=click.IntRange(32, 1024), default=None,
              help="Input height and width, for a CHECKPOINT  [default: 224]")
@click.option("--bn-eps", type=BN_EPS, default=None, help="BatchNorm epsilon of a CHECKPOINT  [default: 1e-5]")
@click.option("--activation", type=click.Choice(["relu", "relu6"]), default=None,
              help="Override a CHECKPOINT's activation (as in convert).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def diff(model, against, images, limit, random_n, tolerance, input_size, bn_eps, activation, as_json, quiet):
    """Compare PyTorch, TF and TFLite (fp32 or quantized) layer by layer and mark the first
    layer whose error exceeds the tolerance. Exit 1 when one does.

    \b
    Examples:
      amc-tf diff checkpoints/mobilenet_0.5flops.pth.tar           # TF and TFLite vs PyTorch
      amc-tf diff out/0.5flops --against tf --images val/ --limit 4
      amc-tf diff out/0.5flops-int8 --against out/0.5flops --tolerance 0.2   # quantization error
    """
    from amc_tf.services.layerdiff.subject import open_subject, random_inputs, run_diff

    if images and random_n:
        raise AmcError("give --images DIR or --random N, not both")
    progress = _progress(quiet)
    given = {"activation": activation, "bn_eps": bn_eps, "input_size": input_size}
    checkpoint_options = {k: CHECKPOINT_DEFAULTS[k] if v is None else v for k, v in given.items()}
    if os.path.isdir(model) and any(v is not None for v in (input_size, bn_eps, activation)):
        raise AmcError("--input-size, --bn-eps and --activation apply to a CHECKPOINT; an OUTDIR records its own")
    progress(f"reading {model}")
    subject = open_subject(model, **checkpoint_options)
    spec = subject.network.spec
    skipped: list[dict] = []
    x = image_inputs(images, spec, limit, skipped) if images else random_inputs(spec, random_n or RANDOM_INPUTS)
    say_skipped(skipped)
    result = run_diff(subject, against, x, tolerance, progress)
    result["inputs"] = {"count": len(x), "source": images or "standard normal, seed 0", "skipped": len(skipped),
                        "skipped_files": skipped}
    if as_json:
        emit_json(result)
    else:
        from amc_tf.services.layerdiff.metrics import format_table

        echo(f"{model}: {spec.family} {'/'.join(map(str, spec.channels()))}, "
                   f"{len(x)} input(s) from {result['inputs']['source']}")
        for runtime, why in result["skipped"].items():
            echo(f"({runtime} not compared: {why})")
        for comparison in result["comparisons"]:
            echo("")
            echo_block(format_table(comparison, spec))
        if result["passed"] and result["not_compared"]:
            echo("passed without " + ", ".join(f"{name} ({why})" for name, why in result["not_compared"].items()))
    if not result["passed"]:
        firsts = ", ".join(f"{c['candidate']} vs {c['reference']} at {c['first_over']}"
                           for c in result["comparisons"] if c["first_over"])
        raise DiffFailed(f"layer error over tolerance {tolerance:g}: {firsts}")


COMMANDS = [diff]
