"""The conversion step for `--quantize`: OUTDIR/model.tflite becomes the quantized model,
the fp32 one stays beside it as OUTDIR/model_fp32.tflite (it passed the usual 1e-4
self-check), and report.json gains a `quantization` section measured against fp32:
max/mean logit error, top-1/top-5 agreement and, where the images have labels, accuracy
of both, on images held out from calibration.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from amc_tf.core import calibration
from amc_tf.core.agreement import accuracy, agreement
from amc_tf.core.data import DataError
from amc_tf.core.netspec import Network
from amc_tf.core.preprocess import Preprocessing
from amc_tf.converters.quantize import QuantizeError, QuantizeRequest

FP32_NAME = "model_fp32.tflite"
QUANTIZED_NAME = "model.tflite"


def check_options(options) -> QuantizeRequest:
    """Refuse a request that cannot be honoured before any work is done."""
    recipe = getattr(options, "int8_recipe", None)
    request = QuantizeRequest(options.quantize, options.io, recipe or "accurate")
    if recipe is not None and request.mode != "int8":
        raise QuantizeError(f"--int8-recipe is only for --quantize int8 ({request.mode} has no recipe)")
    if request.mode == "int8":
        if options.calibration is None:
            raise QuantizeError("--quantize int8 needs --images DIR: real images, preprocessed as evaluation "
                                "does, set the activation ranges (--images synthetic quantizes without them, "
                                "with a warning: accuracy may collapse)")
        if options.calibration_size < 1:
            raise QuantizeError(f"--calibration-size must be >= 1, got {options.calibration_size}")
        if options.calibration != calibration.SYNTHETIC:
            calibration.check_size(options.calibration, options.calibration_size)
    elif options.calibration is not None:
        raise QuantizeError(f"--images is only for --quantize int8 ({request.mode} takes no calibration)")
    return request


def _calibrate(spec, options, prep: Preprocessing, progress) -> tuple[np.ndarray, dict, dict | None, str | None]:
    """(calibration images, report section, held-out {"images", "labels"} or None, manifest text)."""
    if options.calibration == calibration.SYNTHETIC:
        images = calibration.synthetic(options.calibration_size, prep)
        return images, {"source": "synthetic", "images": len(images), "warning": calibration.SYNTHETIC_WARNING}, \
            None, None
    progress(f"reading calibration images from {options.calibration}")
    split = calibration.split(options.calibration, options.calibration_size)
    cal_set = split.subset(split.calibration)
    skipped: list[dict] = list(split.dataset.skipped)  # every unreadable file, named ({"file", "error"})
    failed: list[dict] = []
    images, loaded = calibration.load(cal_set, prep, failed)
    unreadable = [item["file"] for item in failed]
    skipped += failed
    section = {"source": os.path.abspath(options.calibration), "layout": split.dataset.layout,
               "requested": options.calibration_size, "images": len(images),
               "unreadable": len(unreadable), "unreadable_files": unreadable, "seed": calibration.SEED,
               "manifest": calibration.MANIFEST, "skipped_files": skipped}
    held = None
    if split.held_out:
        held_set = split.subset(split.held_out)
        held_images, kept = calibration.load(held_set, prep, skipped)
        labels = None
        try:
            labels_all, _ = held_set.model_labels(spec.num_classes) if held_set.classes else (None, 0)
            labels = None if labels_all is None else labels_all[kept]
        except DataError as exc:  # the folder's classes are not the model's
            section["labels_note"] = str(exc)
        held = {"images": held_images, "labels": labels}
    return images, section, held, split.manifest()


def export_quantized(model, network: Network, tmp: Path, options, timings: dict,
                     progress: Callable[[str], None]) -> tuple[dict, dict]:
    """Write tmp/model.tflite quantized (tmp/model_fp32.tflite exists); returns (the
    artifact entry for model.tflite, report.json's `quantization` section)."""
    from amc_tf.converters.exporters import tflite_op_histogram
    from amc_tf.converters.quantize import quantize
    from amc_tf.converters.tflite_inspect import int8_mac_share, io_details, tensor_dtypes, weight_quantization
    from amc_tf.converters.verification import verification_batch
    from amc_tf.core.tflite_io import TFLiteModel, load_interpreter

    request = check_options(options)
    spec = network.spec
    prep = Preprocessing.for_input_size(spec.input_size)
    section: dict = {"mode": request.mode, "io": request.io, "warnings": []}
    representative, held = None, None
    t = time.perf_counter()
    if request.mode == "int8":
        images, section["calibration"], held, manifest = _calibrate(spec, options, prep, progress)
        if "warning" in section["calibration"]:
            section["warnings"].append(section["calibration"]["warning"])
        if manifest is not None:
            (tmp / calibration.MANIFEST).write_text(manifest)
        section["calibration"]["preprocess"] = calibration.PREPROCESS_MODE
        section["calibration"]["preprocessing"] = prep.to_dict()
        representative = lambda: (images[i:i + 1] for i in range(len(images)))  # noqa: E731
    progress(f"writing model.tflite ({request.mode}" + (f", {request.io} io" if request.mode == "int8" else "") + ")")
    data, recipe = quantize(model, request, representative, progress)
    if recipe:
        section["recipe"] = recipe
    path = tmp / QUANTIZED_NAME
    path.write_bytes(data)
    timings["quantize"] = time.perf_counter() - t

    fp32_bytes = (tmp / FP32_NAME).stat().st_size
    interp = load_interpreter(path, delegates=False)
    io = io_details(interp)
    artifact = {"path": QUANTIZED_NAME, "bytes": len(data), "ops": tflite_op_histogram(path),
                "input": io["input"]["shape"], "dtype": io["input"]["dtype"], "quantization": request.mode,
                "io": io, "weights": weight_quantization(interp), "tensor_dtypes": tensor_dtypes(interp)}
    section["input"], section["output"] = io["input"], io["output"]
    section["bytes"] = len(data)
    section["fp32_bytes"] = fp32_bytes
    section["size_ratio"] = round(len(data) / fp32_bytes, 4)
    if request.mode == "int8":
        section["int8_macs"] = int8_mac_share(interp)

    if not options.verify:
        section["vs_fp32"] = {"skipped": True}
        return artifact, section
    t = time.perf_counter()
    if held is not None:
        x, labels, what = held["images"], held["labels"], f"{len(held['images'])} images held out from calibration"
    else:
        x, labels = verification_batch(network, 8, seed=1), None
        what = "8 x standard normal NHWC, seed 1 (no real images held out from calibration)"
    progress(f"comparing {request.mode} with fp32 on {what}")
    ref = TFLiteModel(tmp / FP32_NAME, isolated=False).predict(x)  # written by us just now
    out = TFLiteModel(path, isolated=False).predict(x)
    vs = {"inputs": what, **agreement(ref, out)}
    if labels is not None:
        vs["accuracy_fp32"] = accuracy(ref, labels)
        vs["accuracy_quantized"] = accuracy(out, labels)
        vs["top1_drop_points"] = round(100 * (vs["accuracy_fp32"]["top1"] - vs["accuracy_quantized"]["top1"]), 3)
    section["vs_fp32"] = vs
    timings["quantize_check"] = time.perf_counter() - t
    return artifact, section
