"""The conversion pipeline: checkpoint -> Network -> TF builder -> exports + report.json.

OUTDIR is claimed first (amc_tf/core/outdir.OutdirClaim: created by this run, or an empty one,
or with `force` an earlier conversion; locked until the end). Everything is written into a
staging directory beside it and its entries are renamed into OUTDIR only when complete, so a
failed conversion leaves nothing half-written, a concurrent one into the same OUTDIR fails
with one line, and nothing another process put into OUTDIR is ever deleted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from amc_tf.core.version import __version__
from amc_tf.core.errors import AmcError
from amc_tf.core.flops import count as count_macs
from amc_tf.core.netspec import Network
from amc_tf.core.profiles import check_profile
from amc_tf.core.fileutil import sha256_file, write_file
from amc_tf.core.outdir import OutdirClaim
from amc_tf.converters.staging import check_output_path, check_replaceable, make_staging_dir, remove_stale
from amc_tf.converters.verification import verification_batch


class VerificationFailed(AmcError):
    """The exports were written but disagree with each other beyond the tolerance. Exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class ConvertOptions:
    profile: str | None = None
    activation: str | None = None
    bn_eps: float = 1e-5
    slim_bn_eps: float | None = None  # slim/model.ckpt's BatchNorm statistics set for this epsilon (slim_bn_eps.py)
    input_size: int | None = None  # None: 224, or an ONNX model's fixed input size
    verify: bool = True
    force: bool = False
    verify_batch: int = 2
    rel_tolerance: float = 1e-4  # max abs diff allowed, as a fraction of max |logit|
    exports: tuple[str, ...] = ()  # extra artifacts beside the standard three: "onnx", "with_preprocessing"
    onnx_layout: str = "nchw"  # input layout of the exported model.onnx: nchw | nhwc
    quantize: str | None = None  # fp16 | dynamic | int8: model.tflite quantized, fp32 kept as model_fp32.tflite
    calibration: str | None = None  # int8: an image folder, or "synthetic"
    calibration_size: int = 200
    io: str = "float32"  # input/output type of an int8 model.tflite: float32 | uint8 | int8
    int8_recipe: str | None = None  # accurate (default) | tf: see converters/int8_recipe.py
    reference_in_process: bool = False  # run the self-check's reference here, not in a spawned worker (a
    #                                     long-lived process converting many models imports torch once)


Progress = Callable[[str], None]


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Agreement figures between two logit batches."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1) + 1e-30)
    return {
        "max_abs_diff": float(np.max(np.abs(a64 - b64))),
        "mean_abs_diff": float(np.mean(np.abs(a64 - b64))),
        "min_cosine": float(np.min(cos)),
        "top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
    }


def tool_versions() -> dict:
    import tensorflow as tf

    from amc_tf.core.torch_reference import torch_version

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        litert = None
    return {
        "amc_tf": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "ai_edge_litert": litert,
        "numpy": np.__version__,
        "torch": torch_version(),
        **{name.replace("-", "_"): _dist_version(name) for name in ("onnx", "onnxruntime")},
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def verify(model, network: Network, tflite_path: Path, reference: tuple[str, np.ndarray] | None,
           options: ConvertOptions, runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> dict:
    """Run TF and TFLite (and `runtimes`: {name: NHWC batch -> logits}, e.g. the exported ONNX in
    onnxruntime) on the fixed batch and compare all pairs, with the reference's logits (e.g.
    ("torch", logits)) when given."""
    from amc_tf.converters.exporters import run_tflite

    x = verification_batch(network, options.verify_batch)
    outputs = {"tf": model(x).numpy(), "tflite": run_tflite(tflite_path, x)}
    for name, run in (runtimes or {}).items():
        outputs[name] = run(x)
    reference_name = None
    if reference is not None:
        reference_name, outputs[reference_name] = reference
    base = outputs[reference_name or "tf"]
    max_logit = float(np.max(np.abs(base)))
    tol = options.rel_tolerance * max_logit
    names = list(outputs)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs[f"{a}_vs_{b}"] = compare(outputs[a], outputs[b])
    passed = all(p["max_abs_diff"] <= tol and p["top1_agreement"] == 1.0 for p in pairs.values())
    return {
        "inputs": f"{options.verify_batch} x standard normal NHWC, seed 0",
        "reference": reference_name or "tf",
        "max_abs_logit": max_logit,
        "tolerance": tol,
        "pairs": pairs,
        "passed": passed,
    }


class _DoneReference:
    """The reference's logits computed in this process (ConvertOptions.reference_in_process)."""

    def __init__(self, name: str, fn, *args):
        self.name = name
        self._logits = fn(*args)

    def result(self) -> tuple[str, np.ndarray]:
        return self.name, self._logits

    def cancel(self) -> None:
        pass


class _PendingReference:
    """The reference runtime's logits for the verification batch, computed in a worker process
    (amc_tf.core.worker: it dies with this one, whatever signal ends it) so that importing torch
    (~1.5 s) overlaps with importing TensorFlow and exporting."""

    def __init__(self, name: str, fn, *args):
        from amc_tf.core.worker import Worker

        self.name = name
        self._worker = Worker(fn, *args, name=f"amc-tf-{name}-reference")

    def result(self) -> tuple[str, np.ndarray]:
        return self.name, self._worker.result()

    def cancel(self) -> None:
        self._worker.cancel()


def _start_reference(checkpoint, network: Network, options: ConvertOptions) -> _PendingReference | None:
    from amc_tf.core import torch_reference

    pending = _DoneReference if options.reference_in_process else _PendingReference
    x = verification_batch(network, options.verify_batch)
    if network.source.get("frontend") == "onnx":
        from amc_tf.core import onnx_reference

        return pending("onnxruntime", onnx_reference.reference_logits, os.fspath(checkpoint),
                                 network.source["onnx_layout"], x)
    if network.source.get("frontend") != "pytorch" or not torch_reference.torch_available():
        return None
    return pending("torch", torch_reference.reference_logits, os.fspath(checkpoint), network.spec,
                             network.source["layer_keys"], x)


def convert(checkpoint: str | os.PathLike, outdir: str | os.PathLike, options: ConvertOptions = ConvertOptions(),
            progress: Progress = lambda msg: None, startup_s: float | None = None) -> dict:
    """Convert `checkpoint` into OUTDIR/{model.tflite, saved_model/, slim/, report.json}.

    report.json's `timings_s` accounts for every second: `startup_s` (the CLI passes the
    process's age when the command began: interpreter, amc-tf and click), each stage, and
    `other` (what no stage claims), summing to `total`."""
    t0 = time.perf_counter()
    outdir = Path(outdir)
    check_output_path(checkpoint, outdir)
    if options.quantize:
        from amc_tf.converters.quantized_export import check_options

        check_options(options)
    # OUTDIR is claimed before any work: made here (or an empty one / with --force an earlier conversion
    # taken) and locked, so a second conversion into it fails now instead of replacing this one
    with OutdirClaim(outdir, force=options.force, replaceable=check_replaceable) as claim:
        return _convert_claimed(checkpoint, outdir, claim, options, progress, t0, startup_s)


def _convert_claimed(checkpoint, outdir: Path, claim: OutdirClaim, options: ConvertOptions,
                     progress: Progress, t0: float, startup_s: float | None) -> dict:
    timings: dict[str, float] = {}
    if startup_s is not None:
        timings["startup"] = startup_s

    progress(f"reading {checkpoint}")
    from amc_tf.converters.frontends import load

    network, _ = load(checkpoint, activation=options.activation, bn_eps=options.bn_eps,
                      input_size=options.input_size)
    if options.profile:
        check_profile(network.spec, options.profile)
    timings["read"] = time.perf_counter() - t0

    for stale in remove_stale(outdir):
        progress(f"removed {stale.name}, left by a conversion that was killed")
    tmp = make_staging_dir(outdir)
    reference = None
    try:
        t = time.perf_counter()
        reference = _start_reference(checkpoint, network, options) if options.verify else None
        timings["reference_start"] = time.perf_counter() - t
        # the reference worker imports torch on the other core meanwhile; the import takes seconds
        # (8-27 s on a busy machine): say so
        progress("starting TensorFlow")
        from amc_tf.core.tf_startup import timed_import_tensorflow

        timings["import_tensorflow"] = timed_import_tensorflow()
        report = _export(network, reference, tmp, options, timings, progress)
        t = time.perf_counter()
        # the resolved path: parity and diff find the checkpoint from any folder (its sha256 proves it unchanged)
        report["source"].update({"file": os.path.realpath(checkpoint), "sha256": sha256_file(checkpoint),
                                 "bytes": os.path.getsize(checkpoint)})
        if options.profile:
            report["network"]["profile"] = options.profile
        timings["write"] = time.perf_counter() - t
        report["timings_s"] = _account(timings, time.perf_counter() - t0)
        write_file(tmp / "report.json", json.dumps(report, indent=2) + "\n")
        with _signals_deferred():  # all of it or none of it
            claim.publish(tmp)
    except BaseException:
        with _signals_deferred():  # a second Ctrl-C must not interrupt the cleanup itself
            shutil.rmtree(tmp, ignore_errors=True)
            if reference is not None:
                reference.cancel()
        raise
    verification = report.get("verification", {})
    if verification.get("passed") is False:
        raise VerificationFailed(
            f"exports written to {outdir}, but they disagree beyond tolerance {verification['tolerance']:.3g}: "
            + ", ".join(f"{k} max diff {v['max_abs_diff']:.3g}" for k, v in verification["pairs"].items())
        )
    return report


def _export(network: Network, reference: _PendingReference | None, tmp: Path, options: ConvertOptions,
            timings: dict, progress: Progress) -> dict:
    from amc_tf.converters.exporters import tflite_op_histogram, write_saved_model, write_slim_checkpoint, write_tflite
    from amc_tf.converters.tf_builder import build

    t = time.perf_counter()
    progress("building the TF graph")
    model = build(network)
    timings["build"] = time.perf_counter() - t

    t = time.perf_counter()
    tflite_path = tmp / ("model_fp32.tflite" if options.quantize else "model.tflite")
    progress(f"writing {tflite_path.name}")
    tflite_size = write_tflite(model, tflite_path)
    timings["tflite"] = time.perf_counter() - t

    t = time.perf_counter()
    progress("writing saved_model/")
    write_saved_model(model, tmp / "saved_model")
    timings["saved_model"] = time.perf_counter() - t

    t = time.perf_counter()
    progress("writing slim/model.ckpt" + (f" (BatchNorm statistics for epsilon {options.slim_bn_eps:g})"
                                          if options.slim_bn_eps is not None else ""))
    (tmp / "slim").mkdir()
    names, folded = write_slim_checkpoint(model, tmp / "slim" / "model.ckpt", bn_eps=options.slim_bn_eps)
    timings["slim"] = time.perf_counter() - t

    runtimes, extra_artifacts = _extra_exports(model, tmp, options, timings, progress)

    t = time.perf_counter()
    macs = count_macs(network.spec)
    report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {k: v for k, v in network.source.items() if k != "layer_keys"},
        "network": network.spec.to_dict(),
        "macs": macs["macs"],
        "params": macs["params"],
        "layers": macs["layers"],
        "artifacts": {
            "tflite": {"path": tflite_path.name, "bytes": tflite_size, "ops": tflite_op_histogram(tflite_path),
                       "input": [1, network.spec.input_size, network.spec.input_size, network.spec.in_ch],
                       "dtype": "float32"},
            "saved_model": {"path": "saved_model", "signature": "serving_default", "input": "input", "output": "logits"},
            "slim_checkpoint": {"prefix": "slim/model.ckpt", "variables": len(names),
                                "bn_eps": network.spec.bn_eps if folded is None else folded["to"],
                                **({"bn_eps_folded": folded} if folded is not None else {})},
            **extra_artifacts,
        },
        "tools": tool_versions(),
    }
    timings["report"] = time.perf_counter() - t
    if options.verify:
        progress("verifying " + ", ".join(["TF", "TFLite", *runtimes, *([reference.name] if reference else [])]))
        t = time.perf_counter()
        ref = reference.result() if reference is not None else None
        timings["reference_wait"] = time.perf_counter() - t
        t = time.perf_counter()
        report["verification"] = verify(model, network, tflite_path, ref, options, runtimes)
        if reference is None and network.source.get("frontend") == "pytorch":
            report["verification"]["note"] = "torch is not installed: PyTorch was not compared"
        timings["verify"] = time.perf_counter() - t
    else:
        report["verification"] = {"skipped": True}
    if options.quantize:
        from amc_tf.converters.quantized_export import export_quantized

        report["artifacts"]["tflite_fp32"] = report["artifacts"]["tflite"]
        report["artifacts"]["tflite"], report["quantization"] = export_quantized(model, network, tmp, options,
                                                                                 timings, progress)
    return report


def _account(timings: dict, elapsed: float) -> dict:
    """Rounded stage timings plus `other` (the rest of `elapsed`) and `total`, so that the
    stages add up to the total (`startup`, when known, is part of it)."""
    total = elapsed + timings.get("startup", 0.0)
    out = {k: round(v, 3) for k, v in timings.items() if k != "total"}
    out["other"] = round(max(0.0, total - sum(v for k, v in timings.items() if k != "total")), 3)
    out["total"] = round(total, 3)
    return out


def _extra_exports(model, tmp: Path, options: ConvertOptions, timings: dict, progress: Progress):
    """The optional artifacts (`--export onnx`, `--with-preprocessing`): ({runtime name: NHWC batch ->
    logits} for the self-check, {artifact name: report entry})."""
    runtimes, extra_artifacts = {}, {}
    if "onnx" in options.exports:
        from amc_tf.core import onnx_reference
        from amc_tf.converters.onnx_exporter import write_onnx

        t = time.perf_counter()
        progress("writing model.onnx")
        extra_artifacts["onnx"] = write_onnx(model, tmp / "model.onnx", options.onnx_layout)
        runtimes["onnx_export"] = lambda x: onnx_reference.run(tmp / "model.onnx", x, options.onnx_layout)
        timings["onnx"] = time.perf_counter() - t
    if "with_preprocessing" in options.exports:
        from amc_tf.converters.preprocessing_export import write_all

        t = time.perf_counter()
        progress("writing with_preprocessing/ (uint8 input SavedModel and TFLite)")
        extra_artifacts["with_preprocessing"] = write_all(model, tmp / "with_preprocessing")
        timings["with_preprocessing"] = time.perf_counter() - t
    return runtimes, extra_artifacts


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM until the block ends (they are delivered then)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no pthread_sigmask
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
