"""The accurate int8 recipe (`converters/int8_recipe.py`) on a small odd V2 pruning: bias
correction against a numpy expectation, the converter honouring the recipe's ranges and
weights exactly, the result being an integer model (op types, dtypes, MAC share), and the
int8 .tflite computing what the fake-quant graph computes."""

from __future__ import annotations

import numpy as np
import pytest

from amc_tf.converters import int8_numerics as qn

SIZE = 32


@pytest.fixture(scope="module")
def v2(make_checkpoint):
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    path, _, _ = make_checkpoint("odd-v2", "amc", "zip")
    model = build(load(path, input_size=SIZE)[0])
    rng = np.random.default_rng(3)
    calib = rng.standard_normal((12, SIZE, SIZE, 3)).astype(np.float32)
    test = rng.standard_normal((4, SIZE, SIZE, 3)).astype(np.float32)
    return model, calib, test


@pytest.fixture(scope="module")
def recipe(v2):
    """(calibrated without bias correction, with it, the int8 .tflite of the latter)."""
    from amc_tf.converters.int8_recipe import RecipeOptions, calibrate, fake_quant_tflite

    model, calib, _ = v2
    plain = calibrate(model, calib, RecipeOptions(bias_correction=False))
    corrected = calibrate(model, calib, RecipeOptions())
    return plain, corrected, fake_quant_tflite(model, corrected)


def _interp(data):
    from amc_tf.core.tflite_io import load_interpreter

    return load_interpreter(data, delegates=False)


def test_bias_correction_is_the_numpy_expectation(v2, recipe):
    """For every 1x1 conv: new bias = bias - mean over calibration positions of
    (fake-quantized fp32 input @ int8 kernel - fp32 input @ fp32 kernel)."""
    import tensorflow as tf

    from amc_tf.converters.int8_recipe import _inputs_of

    model, calib, _ = v2
    plain, corrected, _ = recipe
    taps: dict = {}
    model.forward(tf.constant(calib), taps=taps, frozen=True)
    inputs = _inputs_of(model)
    checked = 0
    for layer in model.spec.layers():
        if layer.kernel != 1 or layer.role == "logits":
            continue
        name = inputs[layer.scope]
        x = (calib if name == "input" else taps[name.removesuffix("/add")].numpy()).reshape(-1, layer.cin)
        kernel, bias = model.folded_arrays(layer)
        np.testing.assert_array_equal(plain.kernels[layer.scope], corrected.kernels[layer.scope])
        wq = plain.kernels[layer.scope].reshape(layer.cin, layer.cout).astype(np.float64)
        xq = qn.fake_quant(x, *plain.ranges[name]).astype(np.float64)
        shift = (xq @ wq - x.astype(np.float64) @ kernel.reshape(layer.cin, layer.cout)).mean(0)
        np.testing.assert_allclose(plain.biases[layer.scope], bias, rtol=0, atol=0)
        np.testing.assert_allclose(corrected.biases[layer.scope], bias - shift, rtol=1e-4,
                                   atol=1e-4 * float(np.abs(bias).max() + np.abs(shift).max()))
        assert np.abs(shift).max() > 0
        checked += 1
    assert checked >= 10


def test_the_int8_model_is_integer_where_the_macs_are(v2, recipe):
    from amc_tf.core.flops import count
    from amc_tf.converters.exporters import tflite_op_histogram
    from amc_tf.converters.tflite_inspect import int8_mac_share, tensor_dtypes, weight_quantization

    model, _, _ = v2
    data = recipe[2]
    ops = tflite_op_histogram(data)
    assert set(ops) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "AVERAGE_POOL_2D", "RESHAPE", "QUANTIZE",
                        "DEQUANTIZE"}, ops
    assert ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1  # the float input and output, nothing inside
    interp = _interp(data)
    assert tensor_dtypes(interp)["float32"] == 2
    for op, row in weight_quantization(interp).items():
        assert row["filter_dtypes"] == ["int8"] and row["per_channel"] == row["ops"], op
    share = int8_mac_share(interp)
    assert share["share"] == 1.0 and share["not_int8"] == []
    assert share["total_macs"] == count(model.spec)["macs"]  # every conv's MACs, counted from the spec


def test_mac_share_of_a_float_model_is_zero_and_names_every_layer(v2):
    from amc_tf.converters.exporters import tflite_bytes
    from amc_tf.converters.tflite_inspect import int8_mac_share

    model, _, _ = v2
    share = int8_mac_share(_interp(tflite_bytes(model)))
    assert share["share"] == 0.0 and share["int8_macs"] == 0
    assert len(share["not_int8"]) == len(model.spec.layers())
    assert {row["filter"] for row in share["not_int8"]} == {"float32"}


def test_the_converter_takes_the_recipes_ranges_and_weights_exactly(v2, recipe):
    model, _, _ = v2
    _, cal, data = recipe
    interp = _interp(data)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001
    quant_in = tensors[int(ops[0]["outputs"][0])]["quantization"]
    assert quant_in[0] == pytest.approx(qn.nudge(*cal.ranges["input"])[2], rel=1e-6)
    weighted = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    layers = model.spec.layers()
    assert len(weighted) == len(layers)
    for op, layer in zip(weighted, layers):
        filt = tensors[int(op["inputs"][1])]
        codes = interp.get_tensor(filt["index"]).astype(np.float64)  # [cout, kh, kw, cin] or [1, kh, kw, c]
        kernel = cal.kernels[layer.scope]
        scale = qn.weight_scales(model.folded_arrays(layer)[0], layer.depthwise)
        ours = kernel / scale.reshape((1, 1, -1, 1) if layer.depthwise else (1, 1, 1, -1))
        ours = np.transpose(ours, (3, 0, 1, 2))  # TF [kh, kw, cin, cout] / [kh, kw, c, 1] -> TFLite layout
        np.testing.assert_allclose(codes, np.round(ours), atol=0, err_msg=layer.scope)
        np.testing.assert_allclose(filt["quantization_parameters"]["scales"], scale, rtol=1e-5)
        out = tensors[int(op["outputs"][0])]["quantization"]
        name = layer.scope
        if layer.role == "project" and model.spec.blocks[layer.block].residual:
            continue  # the add's range is the one that follows; the conv's own output is internal
        assert out[0] == pytest.approx(qn.nudge(*cal.ranges[name])[2], rel=1e-5), name


def test_rounding_by_output_error_only_moves_weights_to_the_other_neighbour(v2):
    from amc_tf.converters.int8_recipe import RecipeOptions, calibrate

    model, calib, _ = v2
    cal = calibrate(model, calib, RecipeOptions(rounding="all", bias_correction=False))
    ratio = cal.report["rounding_error_ratio"]
    assert ratio["layers"] == len(model.spec.layers()) and ratio["worst"] <= 1.0 and ratio["median"] < 1.0
    moved = 0
    for layer in model.spec.layers():
        kernel = model.folded_arrays(layer)[0]
        scale = qn.weight_scales(kernel, layer.depthwise).reshape((1, 1, -1, 1) if layer.depthwise else (1, 1, 1, -1))
        codes = np.round(cal.kernels[layer.scope] / scale)
        assert np.all(np.abs(codes - kernel / scale) < 1 + 1e-4), layer.scope
        moved += int((codes != qn.quantize_nearest(kernel, layer.depthwise)).sum())
    assert moved > 0


def test_bias_correction_on_quantized_inputs_leaves_no_mean_shift_in_the_int8_network(v2):
    """With bias_correction="quantized", the fake-quant network run on the calibration images
    has, at every conv, the fp32 model's per-channel mean pre-activation (each layer was
    corrected on its already corrected int8 inputs); the teacher-forced default does not."""
    import tensorflow as tf

    from amc_tf.converters.int8_recipe import FakeQuantMobileNet, RecipeOptions, _Recorder, _network_of, calibrate

    model, calib, _ = v2
    network = _network_of(model)
    ref = _Recorder(network)
    ref.forward(tf.constant(calib), frozen=True)
    worst = {}
    for mode in (True, "quantized"):
        cal = calibrate(model, calib, RecipeOptions(bias_correction=mode))
        fq = FakeQuantMobileNet(network, cal, record=True)
        fq.forward(tf.constant(calib), frozen=True)
        worst[mode] = max(
            float(np.max(np.abs(fq.pre[s].numpy().reshape(-1, r.shape[-1]).mean(0)
                                - r.numpy().reshape(-1, r.shape[-1]).mean(0))
                         / (np.sqrt((r.numpy() ** 2).reshape(-1, r.shape[-1]).mean(0)) + 1e-6)))
            for s, r in ref.pre.items())
    assert worst["quantized"] < 1e-3
    assert worst[True] > 10 * worst["quantized"]


def test_output_range_minmax_covers_every_calibration_logit_and_changes_nothing_else(v2, recipe):
    import tensorflow as tf

    from amc_tf.converters.int8_recipe import RecipeOptions, calibrate

    model, calib, _ = v2
    _, default, _ = recipe
    cal = calibrate(model, calib, RecipeOptions(output_range="minmax", bias_correction=False))
    logits = model.forward(tf.constant(calib), frozen=True).numpy()
    out = next(layer.scope for layer in model.spec.layers() if layer.role == "logits")
    lo, hi = cal.ranges[out]
    assert lo == pytest.approx(min(float(logits.min()), 0.0), rel=1e-5)
    assert hi == pytest.approx(max(float(logits.max()), 0.0), rel=1e-5)
    assert hi > default.ranges[out][1]  # the percentile clips the largest logits
    assert {k: v for k, v in cal.ranges.items() if k != out} == {k: v for k, v in default.ranges.items() if k != out}
