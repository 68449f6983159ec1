"""`amc-tf eval` (top-1/top-5 of one backend on a dataset) and `amc-tf parity` (PyTorch,
TF and TFLite on the same preprocessed images, gated by thresholds)."""

from __future__ import annotations

import click

from amc_tf.cli.options import NON_NEGATIVE, Aliased
from amc_tf.cli.output import echo, emit_json, say_skipped
from amc_tf.core.errors import AmcError


PARITY_MAX_N = 10000  # every backend's logits of every image are held in memory; parity needs far fewer


class ParityFailed(AmcError):
    """The backends disagree beyond the thresholds. Exit 1."""

    exit_code = 1


def _progress_line(enabled: bool):
    """A one-line progress display on stderr (redrawn at most 4 times a second)."""
    import time

    last = [0.0, None]  # time and progress last drawn

    def show(p, final: bool = False) -> None:
        now = time.monotonic()
        if not enabled or (now - last[0] < 0.25 and not final):
            return
        if final and last[1] is p:  # already on screen: end the line
            echo("", err=True)
            return
        last[:] = [now, p]
        of = f"/{p.total}" if p.total else ""
        click.echo(f"\r  {p.done}{of} images  {p.images_per_s:7.1f} img/s  top-1 {p.top1:6.2%}  top-5 {p.top5:6.2%}",
                   err=True, nl=final)

    return show


def _set_tf_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised (in-process callers): keep TF's setting
        pass


@click.command("eval")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--images", "data_dir", cls=Aliased, aliases=("--data",), required=True, type=click.Path(path_type=str),
              help="ImageFolder, ImageNet val folder, flat <wnid>_*.JPEG folder or slim TFRecords.")
@click.option("--backend", type=click.Choice(["auto", "torch", "tf", "tflite"]), default="auto", show_default=True,
              help="Runtime to evaluate with; auto: a checkpoint runs in PyTorch, a SavedModel in TF, a .tflite "
                   "or a conversion OUTDIR (its model.tflite) in LiteRT.")
@click.option("--preprocess", "mode", type=click.Choice(["pil", "tf"]), default="pil", show_default=True,
              help="pil: torchvision's eval transform exactly; tf: tf.image (faster, not bit-exact).")
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True,
              help="Images per inference call (torch and tf; LiteRT runs one at a time).")
@click.option("--limit", type=click.IntRange(1), help="Evaluate only the first N images (dataset order).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Inference threads.")
@click.option("--labels-offset", type=int, help="Model class = dataset label - K (default: from the class count).")
@click.option("--input-size", type=click.IntRange(32, 1024), help="Input size of a PyTorch checkpoint (default 224).")
@click.option("--ground-truth", type=click.Path(dir_okay=False, exists=True, path_type=str),
              help="LOC_val_solution.csv or ILSVRC2012_validation_ground_truth.txt (default: found in/above the --images folder).")
@click.option("--save-logits", type=click.Path(dir_okay=False, path_type=str),
              help="Write the logits (.npy, dataset order; NaN rows for skipped images).")
@click.option("--force", is_flag=True, help="Overwrite --save-logits FILE if it exists.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of counting and skipping it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def eval_command(model, data_dir, backend, mode, batch_size, limit, threads, labels_offset, input_size,
                 ground_truth, save_logits, force, strict, as_json, quiet):
    """Top-1 / top-5 of MODEL (a PyTorch checkpoint, a SavedModel, a conversion OUTDIR or a
    .tflite) on an ImageNet-style dataset. An OUTDIR means its model.tflite (the model bench
    and compare time, quantized when the conversion was); --backend tf takes its SavedModel,
    --backend torch the checkpoint it was converted from. The result line names the file.

    \b
    Example:
      amc-tf eval out/0.5flops/model.tflite --images /data/imagenet/val --threads 4
    """
    import os

    from amc_tf.core.data import open_dataset
    from amc_tf.services.evaluate import evaluate, needs_tensorflow, open_model

    from amc_tf.services.evaluate import model_kind

    say = (lambda msg: None) if quiet else (lambda msg: echo(f"amc-tf: {msg}", err=True))
    logits_path = _check_logits_path(save_logits, force) if save_logits else None
    dataset = open_dataset(data_dir, ground_truth)
    if needs_tensorflow(model, backend, mode, dataset):
        say("starting TensorFlow")  # its import takes seconds
        _set_tf_threads(threads)
    runtime = {"torch": "starting PyTorch", "tf": "SavedModel", "tflite": "LiteRT"}[model_kind(model, backend)]
    say(f"loading {model} ({runtime})")
    backend_model = open_model(model, backend, threads=threads, input_size=input_size)
    show = _progress_line(not quiet)
    last = []

    def progress(p):
        last[:] = [p]
        show(p)

    try:
        result, logits = evaluate(backend_model, dataset, mode=mode, batch_size=batch_size, limit=limit,
                                  labels_offset=labels_offset, strict=strict, input_size=input_size,
                                  progress=progress)
    finally:
        backend_model.close()
    if last:
        show(last[0], final=True)
    say_skipped(result["skipped_files"])
    result["argument"] = model  # "model" is the file evaluated (an OUTDIR's model.tflite, ...)
    if logits_path:
        result["logits_file"] = save_logits
    # the figures first: a failure to write the logits must not lose them
    if as_json:
        emit_json(result)
    else:
        evaluated = "" if os.path.abspath(result["model"]) == os.path.abspath(model) else f" ({result['model']})"
        echo(f"{model}{evaluated} [{result['backend']}, {mode} preprocessing] on {data_dir} "
                   f"({result['data']['layout']})")
        echo(f"  top-1 {result['top1']:.2%} ({result['correct_top1']}/{result['evaluated']})  "
                   f"top-5 {result['top5']:.2%} ({result['correct_top5']}/{result['evaluated']})")
        echo(f"  {result['evaluated']} evaluated, {result['skipped']} skipped (unreadable), "
                   f"{result['images_per_s']} images/s")
    if logits_path:
        _write_logits(logits_path, logits, force)


def _check_logits_path(path: str, force: bool):
    """Validate --save-logits before any work: create its folder, refuse an existing file
    without --force, a directory, or a folder that cannot be written."""
    import os
    from pathlib import Path

    from amc_tf.core.errors import OutputExistsError

    p = Path(path)
    if p.is_dir():
        raise AmcError(f"--save-logits {path} is a directory; give a file name such as {p / 'logits.npy'}")
    if p.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to replace it")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AmcError(f"--save-logits {path}: cannot create its folder {p.parent}: {exc.strerror}") from None
    if not os.access(p.parent, os.W_OK):
        raise AmcError(f"--save-logits {path}: folder {p.parent} is not writable")
    import tempfile

    try:  # the real test (root passes os.access, /sys and /proc refuse files): create one, then remove it
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=".amc-tf-logits-", suffix=".npy"):
            pass
    except OSError as exc:
        raise AmcError(f"--save-logits {path}: cannot create a file in {p.parent}: {exc.strerror or exc}") from None
    return p


def _write_logits(path, logits, force: bool = False) -> None:
    from amc_tf.core.errors import OutputExistsError
    from amc_tf.services.evaluate import save_logits as write_logits

    try:
        write_logits(str(path), logits, overwrite=force)
    except FileExistsError:
        raise OutputExistsError(f"--save-logits {path} was created by another process during the evaluation; it "
                                "was left as it is: pass --force to replace it (the figures above are complete)") from None
    except OSError as exc:
        raise AmcError(f"cannot write --save-logits {path}: {exc.strerror or exc} (the figures above are complete)") from None


def _parity_backends(outdir: str, checkpoint: str | None, threads: int, input_size: int | None,
                     missing: str | None = None, say=lambda msg: None):
    """{name: Backend} for everything an OUTDIR holds (+ PyTorch when the checkpoint is known;
    `missing` says why it is not)."""
    import os

    from amc_tf.core import torch_reference
    from amc_tf.services.evaluate import open_model
    from amc_tf.core.outdir import read_outdir

    out = read_outdir(outdir)
    backends, not_compared = {}, {}
    if checkpoint and torch_reference.torch_available():
        say(f"starting PyTorch with {checkpoint}")  # importing torch takes seconds
        backends["torch"] = open_model(checkpoint, "torch", threads=threads, input_size=input_size)
    else:
        not_compared["torch"] = "torch is not installed" if checkpoint else missing
    say(f"loading {out.saved_model} and {out.tflite_fp32.name}")
    backends["tf"] = open_model(os.fspath(out.saved_model), "tf", threads=threads)
    backends["tflite"] = open_model(os.fspath(out.tflite_fp32), "tflite", threads=threads)  # fp32 even when quantized
    wp = os.path.join(outdir, "with_preprocessing")
    if os.path.isdir(wp):
        backends["tflite_uint8"] = open_model(os.path.join(wp, "model.tflite"), "tflite", threads=threads)
        backends["saved_model_uint8"] = open_model(os.path.join(wp, "saved_model"), "tf", threads=threads)
    return backends, not_compared


@click.command()
@click.argument("target", metavar="CHECKPOINT_OR_OUTDIR", type=click.Path(exists=True, path_type=str))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=str),
              help="Images to compare on (any layout eval reads; default: seeded synthetic images).")
@click.option("--limit", "n", cls=Aliased, aliases=("--n",), type=click.IntRange(1, PARITY_MAX_N), default=100,
              show_default=True,
              help=f"Number of images (1..{PARITY_MAX_N}).")
@click.option("--max-diff", type=NON_NEGATIVE, default=1e-3, show_default=True, help="Largest allowed |logit difference|.")
@click.option("--min-top1-agreement", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Smallest allowed share of images on which every pair agrees on the top-1 class (0..1).")
@click.option("--input-size", type=click.IntRange(32, 1024), help="Input size of a PyTorch checkpoint (default 224).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Inference threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def parity(target, images, n, max_diff, min_top1_agreement, input_size, threads, as_json, quiet):
    """Run PyTorch, TF and TFLite (and the uint8-input models of --with-preprocessing) on the
    same preprocessed images and compare every pair; exit 1 below the thresholds.

    CHECKPOINT_OR_OUTDIR: a PyTorch checkpoint (converted into a temporary directory first)
    or a conversion OUTDIR (PyTorch is compared when its source checkpoint still exists).

    \b
    Example:
      amc-tf parity checkpoints/mobilenet_imagenet_0.5flops_70.5.pth.tar --images /data/imagenet/val --limit 500
    """
    import os
    import tempfile

    from amc_tf.services import parity as P
    from amc_tf.core.data import open_dataset
    from amc_tf.services.evaluate import preprocessing_for

    say = (lambda msg: None) if quiet else (lambda msg: echo(f"amc-tf: {msg}", err=True))
    dataset = open_dataset(images) if images else None
    say("starting TensorFlow")  # its import takes seconds
    _set_tf_threads(threads)
    with tempfile.TemporaryDirectory(prefix="amc-tf-parity-") as tmp:
        missing, skipped = None, []
        if os.path.isdir(target):
            from amc_tf.core.outdir import read_outdir

            outdir = target
            checkpoint, missing = read_outdir(target).pytorch_checkpoint()
        else:
            from amc_tf.converters.convert import ConvertOptions, convert

            outdir, checkpoint = os.path.join(tmp, "out"), target
            convert(target, outdir, ConvertOptions(input_size=input_size, verify=False,
                                                   exports=("with_preprocessing",)), progress=say)
        backends, not_compared = _parity_backends(outdir, checkpoint, threads, input_size, missing, say)
        notes = [f"PyTorch not compared: {why}" for why in not_compared.values()]
        prep = preprocessing_for(backends["tf"])
        if dataset is not None:
            count = min(n, len(dataset.files)) if dataset.files else None
            say(f"preparing {count} images" if count is not None else f"preparing up to {n} images")
            crops = P.load_images(dataset, n, prep, "pil", skipped=skipped)
            say_skipped(skipped)
            if not crops:
                named = "; ".join(f"{item['file']}: {item['error']}" for item in skipped[:3])
                more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
                raise AmcError(f"--images {images}: none of the {len(skipped)} images could be read "
                               f"({named}{more})")
            say_skipped(dataset.skipped)  # entries the listing could not follow (symlink loops, ...)
            skipped[:0] = dataset.skipped
            if skipped:
                notes.append(f"{len(skipped)} unreadable image(s) skipped: {', '.join(i['file'] for i in skipped)}")
            raws = P.load_images(dataset, n, prep, "pil", raw=True) if "saved_model_uint8" in backends else []
        else:
            say(f"preparing {n} images")
            raws = P.synthetic_images(n, prep.resize_size)
            notes.append(f"{n} seeded synthetic images (pass --images DIR for real ones)")
            from amc_tf.core.preprocess import pil_crop
            from PIL import Image

            crops = [pil_crop(Image.fromarray(r), prep) for r in raws]
        logits = {}
        for name, backend in backends.items():
            if backend.feed != "raw":
                say(f"running {name}")
                logits[name] = P.run(backend, crops, prep)
        extra = {}
        if "saved_model_uint8" in backends:
            say("running saved_model_uint8 (preprocessing inside) against tf on tf-preprocessed crops")
            tf_crops = P.tf_crops(raws, prep)
            extra["tf[tf-preprocess]_vs_saved_model_uint8"] = (P.run(backends["tf"], tf_crops, prep),
                                                                P.run(backends["saved_model_uint8"], raws, prep))
        pairs = P.compare_all(logits, extra)
    failures = P.gate(pairs, max_diff, min_top1_agreement)
    result = {"target": target, "images": images or "synthetic", "n": len(crops), "preprocessing": prep.to_dict(),
              "backends": list(backends), "pairs": pairs, "thresholds": {"max_diff": max_diff,
              "min_top1_agreement": min_top1_agreement}, "notes": notes, "passed": not failures, "failures": failures,
              "not_compared": not_compared, "skipped": len(skipped), "skipped_files": skipped}
    if as_json:
        emit_json(result)
    else:
        echo(f"parity of {target} on {result['n']} images ({result['images']}):")
        echo(f"  {'pair':<42} {'max|diff|':>10} {'mean|diff|':>10} {'min cos':>10} {'top-1':>7} {'top-5':>7}")
        for name, fig in pairs.items():
            echo(f"  {name:<42} {fig['max_abs_diff']:>10.2e} {fig['mean_abs_diff']:>10.2e} "
                       f"{fig['min_cosine']:>10.7f} {fig['top1_agreement']:>7.1%} {fig['top5_agreement']:>7.1%}")
        for note in notes:
            echo(f"  note: {note}")
        without = "".join(f" without {name} ({why})" for name, why in not_compared.items())
        echo(f"  {'PASSED' if not failures else 'FAILED'}{without} (max |diff| <= {max_diff:g}, "
                   f"top-1 agreement >= {min_top1_agreement:.0%})")
    if failures:
        raise ParityFailed("; ".join(failures))


COMMANDS = [eval_command, parity]
