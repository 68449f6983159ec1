"""What the exports look like: slim names and shapes, TFLite ops, SavedModel signature, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from amc_tf.converters.convert import ConvertOptions, convert
from amc_tf.core.tflite_io import load_interpreter
from amc_tf.converters.exporters import tflite_op_histogram

BN = ("gamma", "beta", "moving_mean", "moving_variance")


def slim_v1_variables(classes=1000):
    """TF-slim MobilenetV1 1.0 variables in creation order, written from slim's table."""
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    out = [("MobilenetV1/Conv2d_0/weights", [3, 3, 3, 32])] + [(f"MobilenetV1/Conv2d_0/BatchNorm/{v}", [32]) for v in BN]
    for i in range(1, 14):
        cin, cout = widths[i - 1], widths[i]
        out.append((f"MobilenetV1/Conv2d_{i}_depthwise/depthwise_weights", [3, 3, cin, 1]))
        out += [(f"MobilenetV1/Conv2d_{i}_depthwise/BatchNorm/{v}", [cin]) for v in BN]
        out.append((f"MobilenetV1/Conv2d_{i}_pointwise/weights", [1, 1, cin, cout]))
        out += [(f"MobilenetV1/Conv2d_{i}_pointwise/BatchNorm/{v}", [cout]) for v in BN]
    out += [("MobilenetV1/Logits/Conv2d_1c_1x1/weights", [1, 1, 1024, classes]),
            ("MobilenetV1/Logits/Conv2d_1c_1x1/biases", [classes])]
    return out


@pytest.fixture(scope="module")
def converted(make_checkpoint, tmp_path_factory):
    out = {}
    for name, profile, layout in (("v1", "1.0", "amc"), ("v2", "v2-1.0", "torchvision")):
        path, model, spec = make_checkpoint(profile, layout, "zip")
        outdir = tmp_path_factory.mktemp(name) / "out"
        report = convert(path, outdir, ConvertOptions(profile=profile))
        out[name] = (outdir, report, model, spec)
    return out


def test_v1_slim_checkpoint_names_shapes_and_order(converted):
    outdir, report, _, _ = converted["v1"]
    reader = tf.train.load_checkpoint(str(outdir / "slim" / "model.ckpt"))
    got = reader.get_variable_to_shape_map()
    want = slim_v1_variables()
    assert len(want) == 137
    assert got == dict(want)
    assert report["artifacts"]["slim_checkpoint"]["variables"] == 137
    # latest_checkpoint finds it, as slim's eval scripts do
    assert tf.train.latest_checkpoint(str(outdir / "slim")).endswith("model.ckpt")


def test_v2_slim_checkpoint_names_and_shapes(converted):
    outdir, _, _, _ = converted["v2"]
    got = tf.train.load_checkpoint(str(outdir / "slim" / "model.ckpt")).get_variable_to_shape_map()
    assert len(got) == 262
    assert got["MobilenetV2/Conv/weights"] == [3, 3, 3, 32]
    assert "MobilenetV2/expanded_conv/expand/weights" not in got  # first block has no expansion
    assert got["MobilenetV2/expanded_conv/depthwise/depthwise_weights"] == [3, 3, 32, 1]
    assert got["MobilenetV2/expanded_conv/project/weights"] == [1, 1, 32, 16]
    assert got["MobilenetV2/expanded_conv_1/expand/weights"] == [1, 1, 16, 96]
    assert got["MobilenetV2/expanded_conv_16/project/weights"] == [1, 1, 960, 320]
    assert got["MobilenetV2/expanded_conv_16/project/BatchNorm/gamma"] == [320]
    assert got["MobilenetV2/Conv_1/weights"] == [1, 1, 320, 1280]
    assert got["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1280, 1000]
    assert got["MobilenetV2/Logits/Conv2d_1c_1x1/biases"] == [1000]


def test_slim_checkpoint_values_are_the_pytorch_tensors(converted):
    outdir, _, model, _ = converted["v1"]
    reader = tf.train.load_checkpoint(str(outdir / "slim" / "model.ckpt"))
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Conv2d_0/weights"), sd["conv1.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Conv2d_1_depthwise/depthwise_weights"),
                                  sd["features.0.0.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_variance"),
                                  sd["features.12.4.running_var"])
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Logits/Conv2d_1c_1x1/weights")[0, 0],
                                  sd["classifier.1.weight"].T)


@pytest.mark.parametrize("family,expected", [
    ("v1", {"CONV_2D": 15, "DEPTHWISE_CONV_2D": 13, "PAD": 5, "AVERAGE_POOL_2D": 1, "RESHAPE": 1}),
    ("v2", {"CONV_2D": 36, "DEPTHWISE_CONV_2D": 17, "PAD": 5, "ADD": 10, "AVERAGE_POOL_2D": 1, "RESHAPE": 1}),
])
def test_tflite_op_histogram(converted, family, expected):
    outdir, report, _, _ = converted[family]
    hist = tflite_op_histogram(outdir / "model.tflite")
    assert hist == expected  # no TRANSPOSE, one PAD per stride-2 3x3 conv, BN folded away
    assert report["artifacts"]["tflite"]["ops"] == expected


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_tflite_io(converted, family):
    outdir, _, _, spec = converted[family]
    interp = load_interpreter(outdir / "model.tflite")
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    assert list(inp["shape"]) == [1, 224, 224, 3] and inp["dtype"] == np.float32
    assert list(out["shape"]) == [1, spec.num_classes] and out["dtype"] == np.float32


def test_saved_model_signature_has_free_batch(converted):
    outdir, _, model, _ = converted["v2"]
    from amc_tf.core import torch_models

    serve = tf.saved_model.load(str(outdir / "saved_model")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["input"].shape.as_list() == [None, 224, 224, 3]
    x = np.random.default_rng(5).standard_normal((5, 224, 224, 3)).astype(np.float32)
    got = serve(input=tf.constant(x))["logits"].numpy()
    ref = torch_models.logits(model, x)
    assert got.shape == (5, 1000)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_report_json(converted):
    outdir, report, _, _ = converted["v1"]
    on_disk = json.loads((outdir / "report.json").read_text())
    assert on_disk["macs"] == 568_740_352 and on_disk["params"] == 4_231_976
    assert on_disk["network"]["family"] == "mobilenet_v1"
    assert on_disk["network"]["activation"] == "relu"
    assert on_disk["network"]["bn_eps"] == 1e-5
    assert on_disk["network"]["profile"] == "1.0"
    assert on_disk["network"]["num_classes"] == 1000
    assert [b["stride"] for b in on_disk["network"]["blocks"]] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert on_disk["tools"]["tensorflow"].startswith("2.21")
    assert on_disk["tools"]["torch"].startswith("2.13")
    assert len(on_disk["source"]["sha256"]) == 64
    ver = on_disk["verification"]
    assert ver["passed"] and ver["reference"] == "torch"
    for pair in ver["pairs"].values():
        assert pair["max_abs_diff"] <= ver["tolerance"] and pair["top1_agreement"] == 1.0
    assert len(on_disk["layers"]) == 28
    # nothing else is left beside the output
    assert sorted(p.name for p in outdir.parent.iterdir()) == ["out"]
    assert sorted(p.name for p in outdir.iterdir()) == ["model.tflite", "report.json", "saved_model", "slim"]


@pytest.mark.parametrize("profile", ["0.5flops", "v2-0.7flops"])
def test_tflite_skipping_the_freeze_pass_gives_the_converters_own_bytes(profile, tmp_path):
    """The weights are traced in as constants, so the converter's freeze pass is skipped
    (converters/exporters.py): the flatbuffer must be the one the full converter writes."""
    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec
    from amc_tf.converters.exporters import tflite_bytes
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    path = tmp_path / "m.pth"
    torch_models.save(torch_models.randomize(torch_models.build(profile_spec(profile)), 3), path)
    network, _ = load(path, input_size=96)
    model = build(network)
    concrete = model.serving_function(batch=1, frozen=True).get_concrete_function()
    full = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
    ours = tflite_bytes(model)
    assert len(ours) > 1_000_000
    assert ours == full
