"""The quantization modes in the exporter layer (`converters/quantize.py`) on a V1 and a V2
pruning: op and tensor types, per-channel int8 weights, io types and scales, logits
against the fp32 .tflite of the same built graph, and the io helpers of `amc_tf.core.tflite_io`."""

from __future__ import annotations

import numpy as np
import pytest

from amc_tf.converters.quantize import QuantizeError, QuantizeRequest

SIZE = 48
PROFILES = ("odd-v1", "odd-v2")


@pytest.fixture(scope="module")
def built(make_checkpoint):
    """{profile: (built model, fp32 tflite bytes, calibration batch, test batch)}."""
    from amc_tf.converters.exporters import tflite_bytes
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    out = {}
    for i, profile in enumerate(PROFILES):
        path, _, _ = make_checkpoint(profile, "amc", "zip")
        model = build(load(path, input_size=SIZE)[0])
        rng = np.random.default_rng(10 + i)
        calib = rng.standard_normal((16, SIZE, SIZE, 3)).astype(np.float32)
        test = rng.standard_normal((6, SIZE, SIZE, 3)).astype(np.float32)
        out[profile] = (model, tflite_bytes(model), calib, test)
    return out


_CACHE: dict = {}


def _quantized(built, profile, mode, io="float32"):
    from amc_tf.converters.quantize import quantized_tflite_bytes

    key = (profile, mode, io)
    if key not in _CACHE:
        model, _, calib, _ = built[profile]
        rep = (lambda: (calib[i:i + 1] for i in range(len(calib)))) if mode == "int8" else None
        _CACHE[key] = quantized_tflite_bytes(model, QuantizeRequest(mode, io), rep)
    return _CACHE[key]


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _interp(path):
    from amc_tf.core.tflite_io import load_interpreter

    return load_interpreter(path, delegates=False)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", ["fp16", "dynamic", "int8"])
def test_mode_types_size_and_logits(built, tmp_path, profile, mode):
    from amc_tf.core.agreement import agreement
    from amc_tf.core.tflite_io import TFLiteModel
    from amc_tf.converters.exporters import tflite_op_histogram
    from amc_tf.converters.tflite_inspect import io_details, tensor_dtypes, weight_quantization

    _, fp32, _, test = built[profile]
    q = _write(tmp_path, "q.tflite", _quantized(built, profile, mode))
    f = _write(tmp_path, "f.tflite", fp32)
    interp = _interp(q)
    weights = weight_quantization(interp)
    dtypes = tensor_dtypes(interp)
    ops = tflite_op_histogram(q)
    n_conv = ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"]
    assert io_details(interp)["input"]["dtype"] == "float32" and io_details(interp)["output"]["dtype"] == "float32"
    ratio = q.stat().st_size / len(fp32)
    if mode == "fp16":
        assert all(w["filter_dtypes"] == ["float32"] for w in weights.values())  # read through DEQUANTIZE
        assert ops["DEQUANTIZE"] >= n_conv and dtypes["float16"] >= n_conv
        assert 0.45 < ratio < 0.55
    elif mode == "dynamic":
        # the larger filters are int8 with one scale per output channel; activations float
        assert sum(w["per_channel"] for w in weights.values()) >= n_conv // 2
        assert sum(w["per_tensor"] for w in weights.values()) == 0
        assert "QUANTIZE" not in ops and dtypes["float32"] > 20
        assert ratio < 0.4
    else:
        # full integer: every conv's filter int8, per output channel; float only at the io ends
        for op, w in weights.items():
            assert w["filter_dtypes"] == ["int8"] and w["per_channel"] == w["ops"], (op, w)
        assert dtypes["float32"] == 2 and ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1
        assert ratio < 0.4
    ref, out = TFLiteModel(f).predict(test), TFLiteModel(q).predict(test)
    fig = agreement(ref, out)
    rel = fig["max_logit_error"] / fig["max_abs_logit"]
    # random weights on noise inputs: 8-bit figures are loose, but a broken scale is far off
    assert rel < {"fp16": 0.01, "dynamic": 0.25, "int8": 0.3}[mode], fig
    assert fig["top5_agreement"] == 1.0, fig
    centred = [a - a.mean(1, keepdims=True) for a in (ref, out)]
    cos = np.sum(centred[0] * centred[1], 1) / np.linalg.norm(centred[0], axis=1) / np.linalg.norm(centred[1], axis=1)
    assert cos.min() > {"fp16": 0.9999, "dynamic": 0.95, "int8": 0.95}[mode], cos


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_int8_integer_io_matches_float_io(built, tmp_path, profile, io):
    """An integer-io model takes the normalised image quantized with its input's scale and
    zero point; fed that way (amc_tf.core.tflite_io) it computes what the float-io model computes."""
    from amc_tf.core.tflite_io import TFLiteModel
    from amc_tf.converters.tflite_inspect import io_details

    _, _, _, test = built[profile]
    qi = _write(tmp_path, "qi.tflite", _quantized(built, profile, "int8", io))
    qf = _write(tmp_path, "qf.tflite", _quantized(built, profile, "int8"))
    details = io_details(_interp(qi))
    for role in ("input", "output"):
        assert details[role]["dtype"] == io
        assert details[role]["scale"] > 0
        lo, hi = (0, 255) if io == "uint8" else (-128, 127)
        assert lo <= details[role]["zero_point"] <= hi
    # uint8 and int8 zero points differ by exactly 128 for the same real range
    if io == "uint8":
        other = io_details(_interp(_write(tmp_path, "qs.tflite", _quantized(built, profile, "int8", "int8"))))
        assert details["input"]["zero_point"] - other["input"]["zero_point"] == 128
        assert details["input"]["scale"] == pytest.approx(other["input"]["scale"])
    a, b = TFLiteModel(qi).predict(test), TFLiteModel(qf).predict(test)
    # the float model's QUANTIZE kernel (float32) and numpy (float64) may round a pixel on a
    # half step to neighbouring codes: a logit may then move by a step or two, no more
    assert np.max(np.abs(a - b)) <= 2.01 * details["output"]["scale"]
    assert np.array_equal(a.argmax(1), b.argmax(1))


def test_quantize_and_dequantize_follow_the_tensor_params():
    from amc_tf.core.tflite_io import dequantize, quantize, quantized_io

    d = {"dtype": np.uint8, "quantization_parameters": {"scales": np.array([0.5]), "zero_points": np.array([10])}}
    q = quantize(np.array([-100.0, -5.0, 0.0, 1.26, 200.0]), d)
    assert q.tolist() == [0, 0, 10, 13, 255]  # clamped at both ends
    assert dequantize(q, d).tolist() == [-5.0, -5.0, 0.0, 1.5, 122.5]
    assert quantized_io(d)
    raw = {"dtype": np.uint8, "quantization_parameters": {"scales": np.array([]), "zero_points": np.array([])},
           "quantization": (0.0, 0)}
    assert not quantized_io(raw)  # raw pixels for a model that normalises inside
    assert quantize(np.array([3.0]), raw).tolist() == [3]


@pytest.mark.parametrize("mode,io,message", [
    ("fp16", "uint8", "--io uint8 needs --quantize int8"),
    ("dynamic", "int8", "--io int8 needs --quantize int8"),
    ("int4", "float32", "--quantize must be one of"),
    ("int8", "float16", "--io must be one of"),
])
def test_request_refusals(mode, io, message):
    with pytest.raises(QuantizeError, match=message):
        QuantizeRequest(mode, io)


def test_int8_without_calibration_batches_is_refused(built):
    from amc_tf.converters.quantize import quantized_tflite_bytes

    with pytest.raises(QuantizeError, match="int8 needs calibration"):
        quantized_tflite_bytes(built["odd-v1"][0], QuantizeRequest("int8"))
