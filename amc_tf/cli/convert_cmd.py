"""`amc-tf convert` and `amc-tf profile`."""

from __future__ import annotations

import click

from amc_tf.cli.options import BN_EPS, Aliased
from amc_tf.cli.output import echo, emit_json, say_skipped
from amc_tf.core.errors import AmcError
from amc_tf.core.profiles import PROFILE_NAMES


def _progress(quiet: bool):
    def report(msg: str) -> None:
        if not quiet:
            echo(f"amc-tf: {msg}", err=True)

    return report


def _outdir_source(ctx, outdir: str, options: dict) -> str:
    """`convert OUTDIR`: the checkpoint it was converted from (recorded, unchanged), with the
    network settings it recorded for every option not given."""
    from amc_tf.core.outdir import is_outdir, read_outdir

    if not is_outdir(outdir):
        raise AmcError(f"{outdir} is a directory but not a conversion OUTDIR (no report.json); give a PyTorch "
                       "checkpoint, an ONNX file or a conversion OUTDIR")
    out = read_outdir(outdir)
    checkpoint, why = out.source_checkpoint()
    if checkpoint is None:
        raise AmcError(f"{outdir}: cannot convert again: {why}; give the checkpoint itself")
    spec = out.spec
    for name, value in (("activation", spec.activation), ("bn_eps", spec.bn_eps), ("input_size", spec.input_size)):
        if ctx.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT):
            options[name] = value
    return checkpoint


@click.command()
@click.argument("checkpoint", metavar="CHECKPOINT_OR_OUTDIR", type=click.Path(path_type=str))
@click.option("-o", "--output", "outdir", cls=Aliased, aliases=("--out",), required=True, type=click.Path(file_okay=False, path_type=str),
              help="Output directory (model.tflite, saved_model/, slim/, report.json).")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), help="Assert the checkpoint has this AMC profile's channels.")
@click.option("--activation", type=click.Choice(["relu", "relu6"]),
              help="Override the activation (default: ReLU for V1 as in AMC's code, ReLU6 for V2).")
@click.option("--bn-eps", type=BN_EPS, default=1e-5, show_default=True, help="BatchNorm epsilon of the source model.")
@click.option("--slim-bn-eps", type=BN_EPS, default=None, metavar="EPS",
              help="Store slim/model.ckpt's BatchNorm statistics for this epsilon, e.g. 1e-3 (the epsilon "
                   "of slim's mobilenet_v1_arg_scope), so it restores under slim's arg scope: the difference from "
                   "--bn-eps goes into moving_variance (into gamma where the variance is smaller). Other exports "
                   "are unchanged. Without it the checkpoint holds the source's statistics, for --bn-eps.")
@click.option("--input-size", type=click.IntRange(32, 1024),
              help="Input height and width [default: 224, or an ONNX model's fixed input size].")
@click.option("--export", "exports", multiple=True, type=click.Choice(["onnx"]),
              help="Also write OUTDIR/model.onnx (checked with onnxruntime in the self-check).")
@click.option("--onnx-layout", type=click.Choice(["nchw", "nhwc"]),
              help="Input layout of the exported model.onnx [default: nchw, as the PyTorch original].")
@click.option("--with-preprocessing", is_flag=True,
              help="Also write OUTDIR/with_preprocessing/: a SavedModel taking uint8 RGB images of any size and a "
                   "TFLite taking uint8 [1,S,S,3], normalising inside.")
@click.option("--quantize", type=click.Choice(["fp16", "dynamic", "int8"]),
              help="Write model.tflite quantized (fp32 kept as model_fp32.tflite) and measure it against fp32.")
@click.option("--images", "calibration", cls=Aliased, aliases=("--calibration",), metavar="DIR|synthetic",
              help="int8: images to calibrate on, preprocessed as evaluation does ('synthetic': random pixels, warned).")
@click.option("--calibration-size", type=click.IntRange(1), default=200, show_default=True,
              help="int8: calibration images; the rest of DIR (up to 200) measure the result.")
@click.option("--int8-recipe", type=click.Choice(["accurate", "tf"]),
              help="int8: 'accurate' (default): activation ranges from the 0.01th..99.99th percentiles, weights "
                   "rounded to nearest, and bias correction, on the calibration images; 'tf': TF's converter's own "
                   "min/max calibration.")
@click.option("--io", "io_type", type=click.Choice(["float32", "uint8", "int8"]), default="float32", show_default=True,
              help="Input/output type of an int8 model.tflite.")
@click.option("--no-verify", is_flag=True, help="Skip the TF / TFLite / PyTorch (or onnxruntime) self-check.")
@click.option("--force", is_flag=True, help="Replace OUTDIR if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def convert(checkpoint, outdir, profile, activation, bn_eps, slim_bn_eps, input_size, exports, onnx_layout,
            with_preprocessing, quantize, calibration, calibration_size, int8_recipe, io_type, no_verify, force, as_json, quiet):
    """Convert a PyTorch MobileNetV1/V2 checkpoint or its ONNX export (any channel pruning)
    to TFLite, a SavedModel and a TF-slim checkpoint. Given a conversion OUTDIR, convert again
    from the checkpoint it was converted from (with its input size, activation and BatchNorm
    epsilon, unless given), e.g. to write another quantization of it.

    \b
    Examples:
      amc-tf convert checkpoints/mobilenet_imagenet_0.5flops_70.5.pth.tar -o out/0.5flops --profile 0.5flops
      amc-tf convert mobilenet_0.5flops.onnx -o out/0.5flops-onnx
      amc-tf convert CHECKPOINT -o OUTDIR --export onnx --onnx-layout nhwc
      amc-tf convert CHECKPOINT -o OUTDIR --quantize int8 --images calib/ --io uint8
    """
    from amc_tf.converters.convert import ConvertOptions
    from amc_tf.converters.convert import convert as run

    if onnx_layout and "onnx" not in exports:
        raise AmcError("--onnx-layout needs --export onnx")
    import os

    if os.path.isdir(checkpoint):
        network_options = {"activation": activation, "bn_eps": bn_eps, "input_size": input_size}
        checkpoint = _outdir_source(click.get_current_context(), checkpoint, network_options)
        activation, bn_eps, input_size = (network_options[k] for k in ("activation", "bn_eps", "input_size"))
    if with_preprocessing:
        exports = exports + ("with_preprocessing",)
    options = ConvertOptions(profile=profile, activation=activation, bn_eps=bn_eps, slim_bn_eps=slim_bn_eps,
                             input_size=input_size,
                             verify=not no_verify, force=force, exports=tuple(dict.fromkeys(exports)),
                             onnx_layout=onnx_layout or "nchw", quantize=quantize, calibration=calibration,
                             calibration_size=calibration_size, io=io_type, int8_recipe=int8_recipe)
    from amc_tf.core.tf_startup import startup_seconds

    report = run(checkpoint, outdir, options, progress=_progress(quiet), startup_s=startup_seconds())
    say_skipped(report.get("quantization", {}).get("calibration", {}).get("skipped_files", []))
    for warning in report.get("quantization", {}).get("warnings", []):
        echo(f"amc-tf: WARNING: {warning}", err=True)  # even with --quiet
    if as_json:
        emit_json(report)
        return
    spec = report["network"]
    echo(f"{outdir}: {spec['family']} {'/'.join(str(c) for c in spec['channels'])}")
    echo(f"  MACs {report['macs'] / 1e6:.1f}M  params {report['params'] / 1e6:.3f}M  "
               f"tflite {report['artifacts']['tflite']['bytes'] / 1e6:.2f} MB  in {report['timings_s']['total']:.1f}s")
    if "onnx" in report["artifacts"]:
        art = report["artifacts"]["onnx"]
        echo(f"  onnx {art['bytes'] / 1e6:.2f} MB, opset {art['opset']}, {art['layout'].upper()} input")
    if "with_preprocessing" in report["artifacts"]:
        art = report["artifacts"]["with_preprocessing"]
        echo(f"  with_preprocessing/: saved_model (uint8 images, any size), model.tflite (uint8 {art['tflite']['input']})")
    folded = report["artifacts"]["slim_checkpoint"].get("bn_eps_folded")
    if folded:
        echo(f"  slim/model.ckpt: BatchNorm statistics for epsilon {folded['to']:g} (source {folded['from']:g}; "
                   f"{folded['variance_channels']} channels via moving_variance, {folded['gamma_channels']} via gamma)")
    if "quantization" in report:
        from amc_tf.cli.quantize_text import quantization_lines

        for line in quantization_lines(report):
            echo(line)
    ver = report["verification"]
    if ver.get("skipped"):
        echo("  verification skipped (--no-verify)")
    else:
        width = max(len(pair) for pair in ver["pairs"])
        for pair, fig in ver["pairs"].items():
            echo(f"  {pair:<{width}} max|diff| {fig['max_abs_diff']:.2e}  top-1 agreement {fig['top1_agreement']:.0%}")
        echo(f"  verification {'passed' if ver['passed'] else 'FAILED'} (tolerance {ver['tolerance']:.2e})"
                   + (f"; {ver['note']}" if "note" in ver else ""))


@click.command()
@click.argument("checkpoint", metavar="[CHECKPOINT_OR_OUTDIR]", required=False, type=click.Path(path_type=str))
@click.option("--profile", type=click.Choice(PROFILE_NAMES), help="A named AMC profile (alone, or to check CHECKPOINT).")
@click.option("--input-size", type=click.IntRange(32, 1024), help="[default: 224, or an ONNX model's fixed input size]")
@click.option("--json", "as_json", is_flag=True, help='Print {"macs": int, "params": int, "layers": [...]}.')
def profile(checkpoint, profile, input_size, as_json):
    """Per-layer and total multiply-adds and parameters of a checkpoint (PyTorch or ONNX), a
    conversion OUTDIR (the network it records) or a named profile.

    \b
    Examples:
      amc-tf profile --profile 0.5flops
      amc-tf profile checkpoints/mobilenetv2_imagenet_0.7amc_70.854.pth.tar --json
    """
    from amc_tf.core.flops import count
    from amc_tf.core.profiles import check_profile, profile_spec

    if checkpoint is None and profile is None:
        raise AmcError("give a CHECKPOINT or --profile NAME")
    import os

    if checkpoint is not None and os.path.isdir(checkpoint):
        from amc_tf.core.outdir import is_outdir, read_outdir

        if not is_outdir(checkpoint):
            raise AmcError(f"{checkpoint} is a directory but not a conversion OUTDIR (no report.json)")
        if input_size is not None:
            raise AmcError("--input-size applies to a checkpoint or --profile; an OUTDIR records its own")
        spec = read_outdir(checkpoint).spec
        if profile:
            check_profile(spec, profile)
    elif checkpoint is not None:
        from amc_tf.converters.frontends import load

        spec = load(checkpoint, input_size=input_size)[0].spec
        if profile:
            check_profile(spec, profile)
    else:
        spec = profile_spec(profile).with_changes(input_size=input_size or 224)
    result = count(spec)
    if as_json:
        emit_json({"family": spec.family, "input_size": spec.input_size, **result})
        return
    echo(f"{'layer':<42} {'cin':>5} {'cout':>5} {'k':>2} {'s':>2} {'out':>4} {'MACs':>12} {'params':>10}")
    for r in result["layers"]:
        echo(f"{r['name']:<42} {r['cin']:>5} {r['cout']:>5} {r['kernel']:>2} {r['stride']:>2} "
                   f"{r['out_size']:>4} {r['macs']:>12,} {r['params']:>10,}")
    echo(f"{'total':<42} {'':>5} {'':>5} {'':>2} {'':>2} {'':>4} {result['macs']:>12,} {result['params']:>10,}")
    echo(f"{spec.family}: {result['macs'] / 1e6:.1f}M MACs, {result['params'] / 1e6:.3f}M params at {spec.input_size}x{spec.input_size}")


COMMANDS = [convert, profile]
