"""Helpers for the ONNX tests: torch.onnx.export of the test models, and graph surgery."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper


def torch_export(model, path, size: int, opset: int, **kwargs) -> None:
    """torch 2.13's exporter. Its default (dynamo=True) needs onnxscript, which is not installed
    here; the TorchScript exporter (dynamo=False) is what works offline."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=opset,
                          **kwargs)


def op_types(model: onnx.ModelProto) -> dict[str, int]:
    hist: dict[str, int] = {}
    for node in model.graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return hist


def replace_head(model: onnx.ModelProto, head: list, extra_inits: list = (), opset: int | None = None) -> onnx.ModelProto:
    """A copy of an amc-tf-exported model whose GlobalAveragePool + Flatten are replaced by `head`
    (nodes from the last feature map to the tensor named "features" that the Gemm reads)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for n in out.graph.node if n.op_type not in ("GlobalAveragePool", "Flatten")]
    gemm = nodes.pop()
    del out.graph.node[:]
    out.graph.node.extend(nodes + head + [gemm])
    out.graph.initializer.extend(extra_inits)
    if opset is not None:
        out.opset_import[0].version = opset
        out.ir_version = 8
    return out


def last_feature(model: onnx.ModelProto) -> str:
    return next(n for n in model.graph.node if n.op_type == "GlobalAveragePool").input[0]


def insert_after(model: onnx.ModelProto, tensor: str, node_factory) -> onnx.ModelProto:
    """Insert the node `node_factory(tensor, new_name)` right after `tensor` is produced, and
    rewire `tensor`'s consumers to the new output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    new_name = tensor + "/inserted"
    nodes = []
    for node in out.graph.node:
        for i, name in enumerate(node.input):
            if name == tensor:
                node.input[i] = new_name
        nodes.append(node)
        if tensor in node.output:
            nodes.append(node_factory(tensor, new_name))
    copies = [onnx.NodeProto() for _ in nodes]
    for c, n in zip(copies, nodes):
        c.CopyFrom(n)
    del out.graph.node[:]
    out.graph.node.extend(copies)
    return out


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


__all__ = ["torch_export", "op_types", "replace_head", "last_feature", "insert_after", "const", "helper"]
