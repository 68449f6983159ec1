"""ONNX out (`convert --export onnx`), ONNX in from the command line, and the one-line errors
(exit 2) for malformed files and graphs the reader does not understand."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx_helpers import helper, insert_after, op_types, torch_export

from amc_tf.core import onnx_reference, torch_models
from amc_tf.cli import main
from amc_tf.converters.convert import ConvertOptions, convert
from amc_tf.converters.frontends import load
from amc_tf.converters.tf_builder import build


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_parity(name, got, ref):
    tol = 1e-4 * np.abs(ref).max()
    diff = np.abs(got - ref).max()
    assert diff <= tol, f"{name}: max|diff| {diff:.3g} > {tol:.3g}"
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1), err_msg=f"{name}: top-1 differs")


EXPORTS = [
    # (profile, layout of the checkpoint, --onnx-layout, input size)
    ("odd-v1", "amc", "nchw", 97),
    ("odd-v2", "torchvision", "nhwc", 113),
    ("v2-0.7flops", "amc", "nchw", 128),
]


@pytest.mark.parametrize("case", EXPORTS, ids=["-".join(map(str, c)) for c in EXPORTS])
def test_export_onnx_matches_pytorch_in_onnxruntime(case, make_checkpoint, tmp_path):
    profile, layout, onnx_layout, size = case
    ckpt, model, spec = make_checkpoint(profile, layout, "zip")
    report = convert(ckpt, tmp_path / "out", ConvertOptions(input_size=size, exports=("onnx",), onnx_layout=onnx_layout))
    path = tmp_path / "out" / "model.onnx"
    art = report["artifacts"]["onnx"]
    assert art["path"] == "model.onnx" and art["bytes"] == path.stat().st_size and art["layout"] == onnx_layout
    assert art["input"] == (["batch", 3, size, size] if onnx_layout == "nchw" else ["batch", size, size, 3])

    ver = report["verification"]
    assert ver["passed"] is True
    assert {"tf_vs_onnx_export", "tflite_vs_onnx_export", "onnx_export_vs_torch"} <= set(ver["pairs"])
    assert ver["pairs"]["onnx_export_vs_torch"]["max_abs_diff"] <= ver["tolerance"]

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = op_types(proto)
    n_convs = len(spec.layers()) - 1
    assert ops["Conv"] == n_convs and "BatchNormalization" not in ops and ops["Gemm"] == 1
    assert ops.get("Transpose", 0) == (1 if onnx_layout == "nhwc" else 0)
    assert ops.get("Clip", 0) == (sum(layer.act == "relu6" for layer in spec.layers()))
    assert ops.get("Relu", 0) == (sum(layer.act == "relu" for layer in spec.layers()))
    assert ops.get("Add", 0) == sum(b.residual for b in spec.blocks)

    x = np.random.default_rng(3).standard_normal((3, size, size, 3)).astype(np.float32)
    ref = torch_models.logits(model, x)
    _assert_parity("onnxruntime", onnx_reference.run(path, x, onnx_layout), ref)

    # and back in: the exported file reads as the same network
    network, _ = load(path)
    assert network.spec.channels() == spec.channels() and network.source["onnx_layout"] == onnx_layout
    _assert_parity("re-read", build(network)(x).numpy(), ref)


@pytest.fixture(scope="module")
def v1_onnx(make_checkpoint, tmp_path_factory):
    """A torch 2.13 export of an oddly pruned V1 at 96x96, and the torch model."""
    _, model, spec = make_checkpoint("odd-v1", "amc", "zip")
    path = tmp_path_factory.mktemp("onnx") / "odd-v1.onnx"
    torch_export(model, path, 96, 17)
    return path, model, spec


def test_cli_converts_onnx_with_onnxruntime_reference(v1_onnx, tmp_path):
    path, model, spec = v1_onnx
    result = run_cli("convert", path, "-o", tmp_path / "o", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"]["frontend"] == "onnx" and report["source"]["opset"] == 17
    assert report["network"]["channels"] == spec.channels() and report["network"]["input_size"] == 96
    assert set(report["verification"]["pairs"]) == {"tf_vs_tflite", "tf_vs_onnxruntime", "tflite_vs_onnxruntime"}
    assert report["verification"]["passed"] is True
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["model.tflite", "report.json", "saved_model", "slim"]

    from amc_tf.converters.exporters import run_tflite

    x = np.random.default_rng(1).standard_normal((2, 96, 96, 3)).astype(np.float32)
    _assert_parity("tflite", run_tflite(tmp_path / "o" / "model.tflite", x), torch_models.logits(model, x))

    result = run_cli("profile", path, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["input_size"] == 96


def _edit(path, fn):
    proto = onnx.load(str(path))
    return fn(proto)


def _maxpool_after_stem(proto):
    stem_out = next(n for n in proto.graph.node if n.op_type == "Relu").output[0]
    return insert_after(proto, stem_out, lambda t, out: helper.make_node(
        "MaxPool", [t], [out], name="extra/MaxPool", kernel_shape=[1, 1]))


def _softmax_on_logits(proto):
    gemm = proto.graph.node[-1]
    proto.graph.node.append(helper.make_node("Softmax", [gemm.output[0]], ["probs"], name="head/Softmax"))
    proto.graph.output[0].name = "probs"
    return proto


def _asymmetric_pads(proto):
    conv = proto.graph.node[0]
    for a in conv.attribute:
        if a.name == "pads":
            a.ints[:] = [0, 0, 1, 1]
    return proto


def _clip_0_4(proto):
    relu = next(n for n in proto.graph.node if n.op_type == "Relu")
    proto.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                                    onnx.numpy_helper.from_array(np.array(4.0, np.float32), "hi")])
    relu.op_type = "Clip"
    relu.input.extend(["lo", "hi"])
    return proto


def _stride_2_in_block_1(proto):
    dw = [n for n in proto.graph.node if n.op_type == "Conv"][1]
    for a in dw.attribute:
        if a.name == "strides":
            a.ints[:] = [2, 2]
    return proto


def _write(content):
    def make(p, v1):
        data = content(v1) if callable(content) else content
        p.write_bytes(data if isinstance(data, bytes) else data.SerializeToString())
    return make


BAD = {
    "garbage-bytes": (_write(b"\xff\xfe this is not protobuf \x00\x01" * 20), r"not a readable ONNX model"),
    "truncated": (_write(lambda v1: v1.read_bytes()[:5000]), r"not a readable ONNX model"),
    "empty-file": (_write(b""), r"holds no graph nodes"),
    "maxpool": (_write(lambda v1: _edit(v1, _maxpool_after_stem)), r"node 'extra/MaxPool' \(MaxPool\) is not understood"),
    "softmax": (_write(lambda v1: _edit(v1, _softmax_on_logits)), r"node 'head/Softmax' \(Softmax\) is not understood"),
    "asymmetric-pads": (_write(lambda v1: _edit(v1, _asymmetric_pads)),
                        r"node '/conv1/conv1.0/Conv' \(Conv\) is not understood: pads \[0, 0, 1, 1\]"),
    "clip-0-4": (_write(lambda v1: _edit(v1, _clip_0_4)), r"\(Clip\) is not understood: Clip\(0.0, 4.0\)"),
    "wrong-stride": (_write(lambda v1: _edit(v1, _stride_2_in_block_1)),
                     r"node '/features/features.0/features.0.0/Conv' \(Conv\) has stride 2; MobilenetV1/Conv2d_1_depthwise"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_onnx_is_one_line_exit_2_and_leaves_nothing(case, v1_onnx, tmp_path):
    make, message = BAD[case]
    path = tmp_path / "in.onnx"
    make(path, v1_onnx[0])
    result = run_cli("convert", path, "-o", tmp_path / "outputs" / "m", "-q")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "outputs").exists()


def test_missing_residual_add_is_named(make_checkpoint, tmp_path):
    _, model, _ = make_checkpoint("odd-v2", "torchvision", "zip")
    path = tmp_path / "v2.onnx"
    torch_export(model, path, 64, 13)
    proto = onnx.load(str(path))
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    order = {n.output[0]: k for k, n in enumerate(proto.graph.node)}
    projection = max(add.input, key=order.get)  # x + conv(x): keep conv(x) (produced last), drop the skip
    for node in proto.graph.node:
        node.input[:] = [projection if i == add.output[0] else i for i in node.input]
    proto.graph.node.remove(add)
    path.write_bytes(proto.SerializeToString())
    result = run_cli("convert", path, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 2
    assert re.search(r"error: MobilenetV2/expanded_conv_\d+/project is a residual block's projection but the graph "
                     r"adds nothing after node '/features/features.\d+/conv/conv.\d+/Conv'", result.stderr), result.stderr


def test_option_errors(v1_onnx, make_checkpoint, tmp_path):
    path = v1_onnx[0]
    result = run_cli("convert", path, "-o", tmp_path / "o", "--input-size", "128", "-q")
    assert result.exit_code == 2 and "input is fixed at 96x96; --input-size 128 contradicts it" in result.stderr
    result = run_cli("convert", path, "-o", tmp_path / "o", "--activation", "relu6", "-q")
    assert result.exit_code == 2 and "--activation relu6 contradicts it" in result.stderr
    ckpt, _, _ = make_checkpoint("odd-v1", "amc", "zip")
    result = run_cli("convert", ckpt, "-o", tmp_path / "o", "--onnx-layout", "nhwc", "-q")
    assert result.exit_code == 2 and "--onnx-layout needs --export onnx" in result.stderr
    assert not (tmp_path / "o").exists()
