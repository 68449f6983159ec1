"""ONNX -> TFLite conversion time on MobileNetV1-1.0, beside the PyTorch-checkpoint path.

The same random-weight V1-1.0 is saved as a PyTorch checkpoint and exported with
torch.onnx.export (opset 13, dynamo=False). Prints, for each input, the median of --repeats:
reading the file into a Network, reading + building + TFLite bytes (in-process, TensorFlow
already imported), and the whole CLI (`amc-tf convert`, a fresh process writing all three
artifacts, with and without the self-check). Needs torch to write the inputs.

    .venv/bin/python benchmarks/perf/perf_onnx.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

AMC_TF = Path(sys.executable).with_name("amc-tf")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _cli(path: Path, out: Path, *extra: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([str(AMC_TF), "convert", str(path), "-o", str(out), "-q", *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec
    from amc_tf.converters.exporters import tflite_bytes
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    tmp = Path(tempfile.mkdtemp(prefix="amc-perf-onnx-"))
    try:
        model = torch_models.randomize(torch_models.build(profile_spec("1.0")), 0)
        inputs = {"PyTorch .pth.tar": tmp / "v1.pth.tar", "ONNX (opset 13)": tmp / "v1.onnx"}
        torch_models.save(model, inputs["PyTorch .pth.tar"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(inputs["ONNX (opset 13)"]),
                              dynamo=False, opset_version=13)
        import tensorflow  # noqa: F401 - paid once, outside the timings

        load(inputs["PyTorch .pth.tar"])  # warm imports
        print(f"MobileNetV1-1.0 -> TFLite, median of {args.repeats} (machine: {os.cpu_count()} cores)")
        print(f"{'input':<18} {'read':>7} {'read+build+tflite':>18} {'CLI --no-verify':>16} {'CLI + self-check':>17}")
        for label, path in inputs.items():
            read = _median_time(lambda: load(path), args.repeats)
            to_tflite = _median_time(lambda: tflite_bytes(build(load(path)[0])), args.repeats)
            cli_nover = _median_time(lambda: _cli(path, tmp / "out", "--no-verify"), args.repeats)
            cli_full = _median_time(lambda: _cli(path, tmp / "out"), args.repeats)
            print(f"{label:<18} {read:>6.2f}s {to_tflite:>17.2f}s {cli_nover:>15.2f}s {cli_full:>16.2f}s")
        print("for scale: onnx2tf takes about 47 s for the ONNX -> TFLite step on this machine (figure from the issue)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
