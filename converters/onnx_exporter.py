"""A built SlimMobileNet -> an ONNX model (onnx.helper), with the TF builder's folded weights.

The graph is what `torch.onnx.export` writes for the same network in eval mode: Conv with
explicit symmetric pads and BatchNorm folded into weight + bias, Relu or Clip(0, 6),
residual Add, GlobalAveragePool, Flatten, Gemm. Input `input`, output `logits`, batch
dimension free. NCHW input like the PyTorch original by default; layout "nhwc" takes the
TF/TFLite input and starts with one Transpose to NCHW. Node names are the TF-slim scopes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from amc_tf.core.version import __version__
from amc_tf.core.netspec import Layer

OPSET = 13
IR_VERSION = 7  # the IR of opset 13; readable by every onnxruntime since 1.7
LAYOUTS = ("nchw", "nhwc")


def _oihw(layer: Layer, kernel: np.ndarray) -> np.ndarray:
    if layer.depthwise:
        return kernel.transpose(2, 3, 0, 1)  # [kh,kw,C,1] -> [C,1,kh,kw]
    return kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def onnx_model(model, layout: str = "nchw"):
    """ModelProto for a SlimMobileNet (converters.tf_builder)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} not in {LAYOUTS}")
    spec = model.spec
    s = spec.input_size
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        arr = np.asarray(arr, dtype=np.float32)  # (ascontiguousarray would make a scalar 1-D)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.ndim else arr, name))
        return name

    in_shape = ["batch", spec.in_ch, s, s] if layout == "nchw" else ["batch", s, s, spec.in_ch]
    x = "input"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [x], ["input_nchw"], name="ToNCHW", perm=[0, 3, 1, 2]))
        x = "input_nchw"
    if spec.activation == "relu6" or any(layer.act == "relu6" for layer in spec.layers()):
        const("relu6_min", np.array(0.0)), const("relu6_max", np.array(6.0))

    block_input, current_block = None, None
    for layer in spec.layers():
        kernel, bias = model.folded_arrays(layer)
        if layer.role == "logits":
            nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name=f"{spec.scope}/Logits/AvgPool"))
            nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name=f"{spec.scope}/Logits/Flatten", axis=1))
            w = const(f"{layer.scope}/weights", kernel[0, 0].T)  # [1,1,K,N] -> [N,K]
            b = const(f"{layer.scope}/biases", bias)
            nodes.append(helper.make_node("Gemm", ["features", w, b], ["logits"], name=layer.scope, transB=1))
            break
        if layer.block != current_block:
            current_block, block_input = layer.block, x
        p = layer.kernel // 2
        w = const(f"{layer.scope}/weights", _oihw(layer, kernel))
        b = const(f"{layer.scope}/biases", bias)
        y = f"{layer.scope}/Conv2D:0"
        nodes.append(helper.make_node(
            "Conv", [x, w, b], [y], name=f"{layer.scope}/Conv2D", kernel_shape=[layer.kernel] * 2,
            strides=[layer.stride] * 2, pads=[p] * 4, dilations=[1, 1], group=layer.cin if layer.depthwise else 1))
        x = y
        if layer.role == "project" and spec.blocks[layer.block].residual:
            y = f"{layer.scope}/add:0"
            nodes.append(helper.make_node("Add", [x, block_input], [y], name=f"{layer.scope.rsplit('https://gh.zcca.site/', 1)[0]}/add"))
            x = y
        if layer.act == "relu":
            nodes.append(helper.make_node("Relu", [x], [f"{layer.scope}/Relu:0"], name=f"{layer.scope}/Relu"))
            x = f"{layer.scope}/Relu:0"
        elif layer.act == "relu6":
            nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [f"{layer.scope}/Relu6:0"],
                                          name=f"{layer.scope}/Relu6"))
            x = f"{layer.scope}/Relu6:0"

    graph = helper.make_graph(
        nodes, spec.scope, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", spec.num_classes])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="amc-tf",
                              producer_version=__version__, ir_version=IR_VERSION)
    helper.set_model_props(proto, {"amc_tf.network": json.dumps(spec.to_dict()), "amc_tf.layout": layout})
    onnx.checker.check_model(proto)
    return proto


def write_onnx(model, path: str | os.PathLike, layout: str = "nchw") -> dict:
    """Write model.onnx; returns its report entry."""
    proto = onnx_model(model, layout)
    data = proto.SerializeToString()
    Path(path).write_bytes(data)
    hist: dict[str, int] = {}
    for node in proto.graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    s, c = model.spec.input_size, model.spec.in_ch
    return {"path": os.path.basename(os.fspath(path)), "bytes": len(data), "opset": OPSET, "layout": layout,
            "input": ["batch", c, s, s] if layout == "nchw" else ["batch", s, s, c], "dtype": "float32",
            "ops": dict(sorted(hist.items()))}
