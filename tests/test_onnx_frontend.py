"""ONNX input: exports by torch 2.13 of the converter's test matrix (opsets 13 and 17) and
hand-built head/activation variants go through the ONNX frontend, the NetSpec and the TF
builder, and must match PyTorch / onnxruntime (<= 1e-4 x max|logit|, same top-1).

The torch exports use `torch.onnx.export(..., dynamo=False)`: torch 2.13 defaults to the
dynamo exporter, which needs onnxscript (not installed, not needed).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import const, helper, last_feature, op_types, replace_head, torch_export

from amc_tf.core import onnx_reference, torch_models
from amc_tf.converters.exporters import run_tflite, tflite_bytes
from amc_tf.converters.frontends import load
from amc_tf.converters.onnx_exporter import onnx_model
from amc_tf.converters.onnx_frontend import load_onnx
from amc_tf.converters.tf_builder import build

# (profile, layout, input size): every profile of tests/test_convert_parity.py's matrix
PROFILES = [
    ("1.0", "amc", 224),
    ("0.75", "amc", 224),
    ("0.5flops", "community", 224),
    ("0.5time", "amc", 224),
    ("odd-v1", "community", 193),
    ("v2-1.0", "torchvision", 224),
    ("v2-0.7flops", "amc", 224),
    ("odd-v2", "torchvision", 225),
]
CASES = [(p, layout, size, opset) for p, layout, size in PROFILES for opset in (13, 17)]


def _id(case):
    profile, layout, size, opset = case
    return f"{profile}-{layout}-{size}-opset{opset}"


def _assert_parity(name, got, ref):
    tol = 1e-4 * np.abs(ref).max()
    diff = np.abs(got - ref).max()
    assert diff <= tol, f"{name}: max|diff| {diff:.3g} > {tol:.3g}"
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1), err_msg=f"{name}: top-1 differs")


def _batch(size, n=2, seed=5):
    return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_torch_export_converts_and_matches_pytorch(case, make_checkpoint, tmp_path):
    profile, layout, size, opset = case
    _, model, spec = make_checkpoint(profile, layout, "zip")
    path = tmp_path / "model.onnx"
    torch_export(model, path, size, opset)
    ops = op_types(__import__("onnx").load(str(path)))
    assert "BatchNormalization" not in ops and ops["Conv"] == len(spec.layers()) - 1  # BN folded by the exporter

    network, sd = load(path)
    assert sd is None and network.source["frontend"] == "onnx" and network.source["opset"] == opset
    assert network.spec.channels() == spec.channels() and network.spec.family == spec.family
    assert network.spec.activation == spec.activation and network.spec.input_size == size
    assert [b.residual for b in network.spec.blocks] == [b.residual for b in spec.blocks]

    x = _batch(size)
    ref = torch_models.logits(model, x)
    assert np.ptp(ref, axis=1).min() > 0.1
    tf_model = build(network)
    _assert_parity("tf", tf_model(x).numpy(), ref)
    if opset == 13:  # the opset changes only what the reader sees; the TFLite path after it is the same
        _assert_parity("tflite", run_tflite(tflite_bytes(tf_model), x), ref)


def test_unfolded_batchnorm_and_conv_bias(make_checkpoint, tmp_path):
    """do_constant_folding=False keeps BatchNormalization nodes (with their epsilon) after convs
    that also carry a bias (the community layout)."""
    _, model, spec = make_checkpoint("odd-v1", "community", "zip")
    for m in model.modules():
        if hasattr(m, "eps"):
            m.eps = 1e-3
    try:
        path = tmp_path / "bn.onnx"
        torch_export(model, path, 96, 13, do_constant_folding=False)
        assert op_types(__import__("onnx").load(str(path)))["BatchNormalization"] == len(spec.layers()) - 1
        network = load_onnx(path)
        assert network.spec.bn_eps == pytest.approx(1e-3) and network.source["folded_bn"] is False
        x = _batch(96)
        _assert_parity("tf", build(network)(x).numpy(), torch_models.logits(model, x))
    finally:
        for m in model.modules():
            if hasattr(m, "eps"):
                m.eps = 1e-5


@pytest.fixture(scope="module")
def exported(make_checkpoint):
    """amc-tf's own ONNX export (GlobalAveragePool + Flatten + Gemm) of odd V1 and V2 nets at 64x64,
    the base for hand-built variants."""
    out = {}
    for profile, layout in (("odd-v1", "amc"), ("odd-v2", "torchvision")):
        path, model, spec = make_checkpoint(profile, layout, "zip")
        network, _ = load(path, input_size=64)
        out[profile] = (onnx_model(build(network)), model)
    return out


def _head_variants(feat, channels):
    mk = helper.make_node
    return {
        "globalavgpool-flatten": ([mk("GlobalAveragePool", [feat], ["p"]), mk("Flatten", ["p"], ["features"], axis=1)], [], None),
        "reducemean-hw": ([mk("ReduceMean", [feat], ["features"], axes=[2, 3], keepdims=0)], [], None),
        "reducemean-w-then-h": ([mk("ReduceMean", [feat], ["m"], axes=[3], keepdims=0),
                                 mk("ReduceMean", ["m"], ["features"], axes=[-1], keepdims=0)], [], None),
        "reducemean-keepdims-reshape": ([mk("ReduceMean", [feat], ["p"], axes=[2, 3], keepdims=1),
                                         mk("Reshape", ["p", "shape"], ["features"])], [const("shape", np.array([0, -1]))], None),
        "globalavgpool-squeeze": ([mk("GlobalAveragePool", [feat], ["p"]), mk("Squeeze", ["p", "sq_axes"], ["features"])],
                                  [const("sq_axes", np.array([2, 3]))], None),
        # x.view(x.size(0), -1) as the TorchScript exporter writes it
        "globalavgpool-shape-reshape": ([
            mk("GlobalAveragePool", [feat], ["p"]), mk("Shape", ["p"], ["s"]),
            mk("Constant", [], ["zero"], value=helper.make_tensor("z", 7, [], [0])),
            mk("Gather", ["s", "zero"], ["n"], axis=0), mk("Unsqueeze", ["n", "ax0"], ["n1"]),
            mk("Concat", ["n1", "minus1"], ["target"], axis=0), mk("Reshape", ["p", "target"], ["features"])],
            [const("ax0", np.array([0])), const("minus1", np.array([-1]))], None),
        "opset18-reducemean-axes-input": ([mk("ReduceMean", [feat, "axes"], ["features"], keepdims=0)],
                                          [const("axes", np.array([2, 3]))], 18),
    }


HEADS = list(_head_variants("f", 1))


@pytest.mark.parametrize("profile", ["odd-v1", "odd-v2"])
@pytest.mark.parametrize("head", HEADS)
def test_hand_built_heads(head, profile, exported, tmp_path):
    base, model = exported[profile]
    nodes, inits, opset = _head_variants(last_feature(base), None)[head]
    variant = replace_head(base, nodes, inits, opset)
    path = tmp_path / f"{head}.onnx"
    path.write_bytes(variant.SerializeToString())
    x = _batch(64)
    ref = onnx_reference.run(path, x)  # the variant itself, in onnxruntime
    _assert_parity("onnxruntime-vs-torch", ref, torch_models.logits(model, x))
    network = load_onnx(path)
    _assert_parity("tf-vs-onnxruntime", build(network)(x).numpy(), ref)


def _relu6_as(base, style):
    """V2's Clip(0, 6) as Clip with attributes (opset 6-10) or Clip(0, 6) whose bounds are Constant nodes."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(base)
    nodes = []
    for node in out.graph.node:
        if node.op_type == "Clip" and style == "attributes":
            node = helper.make_node("Clip", [node.input[0]], list(node.output), name=node.name, min=0.0, max=6.0)
        elif node.op_type == "Clip" and style == "constant-nodes":
            lo, hi = node.name + "/min", node.name + "/max"
            nodes.append(helper.make_node("Constant", [], [lo], value=helper.make_tensor(lo, 1, [], [0.0])))
            nodes.append(helper.make_node("Constant", [], [hi], value=helper.make_tensor(hi, 1, [], [6.0])))
            node = helper.make_node("Clip", [node.input[0], lo, hi], list(node.output), name=node.name)
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if style == "attributes":
        out.opset_import[0].version = 10
        out.ir_version = 5
        # opset 10 has no Flatten-free change needed; Clip-with-attributes is the only difference
    return out


@pytest.mark.parametrize("style", ["attributes", "constant-nodes"])
def test_relu6_clip_variants(style, exported, tmp_path):
    base, model = exported["odd-v2"]
    variant = _relu6_as(base, style)
    assert op_types(variant)["Clip"] == sum(layer.act == "relu6" for layer in load_onnx_spec(base).layers())
    path = tmp_path / f"{style}.onnx"
    path.write_bytes(variant.SerializeToString())
    x = _batch(64)
    ref = onnx_reference.run(path, x)
    _assert_parity("onnxruntime-vs-torch", ref, torch_models.logits(model, x))
    network = load_onnx(path)
    assert network.spec.activation == "relu6"
    _assert_parity("tf-vs-onnxruntime", build(network)(x).numpy(), ref)


def load_onnx_spec(model):
    from amc_tf.converters.onnx_frontend import infer_onnx_network

    return infer_onnx_network(model).spec


def test_content_sniffing_without_onnx_extension(exported, tmp_path):
    base, _ = exported["odd-v1"]
    path = tmp_path / "model.bin"
    path.write_bytes(base.SerializeToString())
    network, sd = load(path)
    assert sd is None and network.source["frontend"] == "onnx" and network.spec.input_size == 64
