"""Latency tables per precision: `latency build --quantize int8` times full-integer layers (the
stem quantizes a float input, the head dequantizes its output, as in a whole int8 network),
the table records its precision, and `latency predict` refuses a model of another precision
with one line (or predicts it from a table of its own precision)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amc_tf.core.profiles import profile_spec
from amc_tf.benchmarks.latency_lut import load_lut
from test_latency_lut import synthetic_lut

AMC_TF = Path(sys.executable).with_name("amc-tf")


def _run(*args):
    return subprocess.run([str(AMC_TF), *map(str, args)], capture_output=True, text=True, timeout=300)


def _interp(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    return interp


@pytest.mark.parametrize("kind, res, cin, cout, io", [
    ("conv3x3_s2", 32, 3, 16, ("float32", "int8")),   # the stem quantizes the network's float input
    ("depthwise_s2", 16, 24, 0, ("int8", "int8")),
    ("pointwise", 8, 24, 40, ("int8", "int8")),
    ("add", 8, 24, 0, ("int8", "int8")),
    ("head", 4, 40, 10, ("int8", "float32")),         # the head dequantizes the network's output
])
def test_int8_layer_models_are_full_integer(kind, res, cin, cout, io):
    from amc_tf.converters.tflite_inspect import int8_mac_share
    from amc_tf.benchmarks.latency_timers import layer_tflite

    interp = _interp(layer_tflite(kind, res, cin, cout, precision="int8"))
    assert np.dtype(interp.get_input_details()[0]["dtype"]).name == io[0]
    assert np.dtype(interp.get_output_details()[0]["dtype"]).name == io[1]
    share = int8_mac_share(interp)
    assert share["not_int8"] == [] and (share["total_macs"] > 0) == (kind != "add")
    fp32 = _interp(layer_tflite(kind, res, cin, cout))
    assert np.dtype(fp32.get_input_details()[0]["dtype"]).name == "float32"


def test_int8_whole_network_is_full_integer_with_float_io():
    from amc_tf.converters.tflite_inspect import int8_mac_share
    from amc_tf.benchmarks.latency_timers import network_tflite

    spec = profile_spec("0.5time").with_changes(input_size=32)
    interp = _interp(network_tflite(spec, precision="int8"))
    assert int8_mac_share(interp)["share"] == 1.0
    assert interp.get_input_details()[0]["dtype"] == np.float32


@pytest.fixture(scope="module")
def int8_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "lut8.json"
    proc = _run("latency", "build", "-o", out, "--quantize", "int8", "--grid", "tiny", "--family", "v1",
                "--input-size", "64", "--no-calibrate", "--no-probe", "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_int8_build_records_its_precision(int8_table):
    out, summary = int8_table
    lut = load_lut(out)
    assert lut.precision == "int8" == summary["precision"]
    pw = lut.tables["pointwise@2"]  # V1 at 64: the last blocks run at 2x2
    assert pw.us[-1][-1] > pw.us[0][0]
    proc = _run("latency", "predict", "--profile", "0.5time", "--lut", out, "--input-size", "64", "--no-probe")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith("input 64, int8")


def _outdir(root: Path, mode: str, spec) -> Path:
    """A conversion OUTDIR as convert writes it, of a model quantized with `mode`."""
    out = root / f"out-{mode}"
    out.mkdir()
    report = {"network": spec.to_dict(), "quantization": {"mode": mode},
              "artifacts": {"tflite": {"path": "model.tflite"}}}
    (out / "model.tflite").write_bytes(b"")
    if mode != "fp32":
        report["artifacts"]["tflite_fp32"] = {"path": "model_fp32.tflite"}
        (out / "model_fp32.tflite").write_bytes(b"")
    (out / "report.json").write_text(json.dumps(report))
    return out


@pytest.mark.parametrize("mode, table, ok", [
    ("int8", "fp32", False), ("int8", "int8", True), ("fp32", "int8", False), ("fp32", "fp32", True),
    ("fp16", "fp32", True), ("dynamic", "fp32", False),
])
def test_predict_matches_the_models_precision(tmp_path, mode, table, ok):
    spec = profile_spec("0.5flops")
    lut = synthetic_lut()
    lut.precision = table
    path = tmp_path / f"lut-{table}.json"
    lut.save(path)
    proc = _run("latency", "predict", _outdir(tmp_path, mode, spec), "--lut", path, "--json")
    if ok:
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        assert got["precision"] == table and got["predicted_ms"] == pytest.approx(lut.predict(spec), rel=1e-3)
    else:
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"a {mode} model" in lines[0].replace("an ", "a ")
