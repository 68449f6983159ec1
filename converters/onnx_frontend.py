"""ONNX ModelProto -> Network, through the same inference rules as a PyTorch state dict.

The graph is walked once (converters/onnx_graph.py, which lists the ops it understands).
What the walk collects is written as a PyTorch-layout state dict (conv, BatchNorm, linear,
in execution order) and handed to `pytorch_frontend.infer_network`, so
family, channels, expansion widths and residuals are inferred by exactly one set of rules.
The graph's own facts (strides, activations, residual Adds) are then checked against the
inferred NetSpec.

`torch.onnx.export` in eval mode folds BatchNorm into the convs (conv with bias, no
BatchNormalization node). Such a conv gets the identity BatchNorm gamma=1, beta=bias,
moving_mean=0, moving_variance=1-eps: the fold `gamma / sqrt(var + eps)` is then 1 and the
bias comes out unchanged, and the slim checkpoint holds an ordinary BatchNorm.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from amc_tf.core.errors import ArchitectureError, CheckpointError
from amc_tf.core.netspec import Network
from amc_tf.core.onnx_io import read_model
from amc_tf.core.preprocess import check_input_size
from amc_tf.converters.onnx_graph import Walk, walk_graph


def _state_dict(walk: Walk, bn_eps: float) -> "OrderedDict[str, np.ndarray]":
    """The walk as a PyTorch-layout state dict: conv, BatchNorm (real or identity), linear."""
    sd: OrderedDict[str, np.ndarray] = OrderedDict()
    seen: set[str] = set()
    for i, conv in enumerate(walk.convs):
        key = conv.node if conv.node and conv.node not in seen else f"Conv_{i}"
        seen.add(key)
        sd[f"{key}.weight"] = conv.weight
        bn = conv.bn
        if bn is None:
            c = conv.weight.shape[0]
            bias = conv.bias if conv.bias is not None else np.zeros(c, np.float32)
            bn = {"weight": np.ones(c, np.float32), "bias": bias, "running_mean": np.zeros(c, np.float32),
                  "running_var": np.full(c, 1.0 - bn_eps, np.float32)}
        elif conv.bias is not None:
            sd[f"{key}.bias"] = conv.bias  # infer_network moves it into the BatchNorm's moving_mean
        bn_key = f"{key}/BatchNorm"
        for what, arr in bn.items():
            sd[f"{bn_key}.{what}"] = arr
    name, weight, bias = walk.gemm
    sd[f"{name or 'Gemm'}.weight"] = weight
    if bias is not None:
        sd[f"{name or 'Gemm'}.bias"] = bias
    return sd


def _check_against_spec(walk: Walk, network: Network) -> None:
    """Strides, activations and residual Adds are the graph's facts: they must match the NetSpec."""
    spec = network.spec
    layers = [layer for layer in spec.layers() if layer.role != "logits"]
    for layer, conv in zip(layers, walk.convs):
        if layer.stride != conv.stride:
            raise ArchitectureError(f"node '{conv.node}' (Conv) has stride {conv.stride}; {layer.scope} of a "
                                    f"{spec.family} has stride {layer.stride}: unsupported network")
        if layer.act != conv.act:
            raise ArchitectureError(f"node '{conv.node}' (Conv) is followed by {conv.act or 'no activation'}; "
                                    f"{layer.scope} takes {layer.act or 'none'}: unsupported network")
    expected = {}
    for idx, layer in enumerate(layers):
        if layer.role == "project" and spec.blocks[layer.block].residual:
            first = min(i for i, lay in enumerate(layers) if lay.block == layer.block)
            expected[idx] = first - 1
    found = {conv: skip for skip, conv, _ in walk.adds}
    for skip, conv, node in walk.adds:
        if expected.get(conv) != skip:
            raise ArchitectureError(f"node '{node}' (Add) adds the output of conv #{skip} to that of "
                                    f"'{walk.convs[conv].node}'; the {spec.family} has no such residual")
    for conv, skip in expected.items():
        if conv not in found:
            raise ArchitectureError(f"{layers[conv].scope} is a residual block's projection but the graph adds "
                                    f"nothing after node '{walk.convs[conv].node}': unsupported network")


def infer_onnx_network(model, *, activation: str | None = None, bn_eps: float = 1e-5,
                       input_size: int | None = None, source: dict | None = None) -> Network:
    """An ONNX ModelProto of a MobileNetV1/V2 (any pruning) -> Network."""
    from amc_tf.converters.pytorch_frontend import infer_network

    walk = walk_graph(model)
    if len(walk.bn_eps) > 1:
        raise ArchitectureError(f"the graph's BatchNormalization nodes use different epsilons {sorted(walk.bn_eps)}")
    eps = walk.bn_eps.pop() if walk.bn_eps else bn_eps
    graph_act = walk.convs[0].act if walk.convs else None
    if activation is not None and graph_act is not None and activation != graph_act:
        raise ArchitectureError(f"the ONNX graph applies {graph_act} after its first conv; "
                                f"--activation {activation} contradicts it")
    h, w = walk.values[walk.input_name].shape[2:] if walk.layout != "nhwc" else _nhwc_hw(walk)
    if h != w:
        raise ArchitectureError(f"the ONNX model's input is {h}x{w}; only square inputs are supported")
    size = input_size or 224
    if h > 0:
        check_input_size(h, "the ONNX model's input")
        if input_size is not None and input_size != h:
            raise ArchitectureError(f"the ONNX model's input is fixed at {h}x{w}; --input-size {input_size} contradicts it")
        size = h
    network = infer_network(_state_dict(walk, eps), activation=graph_act or activation, bn_eps=eps,
                            input_size=size, source=source)
    _check_against_spec(walk, network)
    network.source.pop("layer_keys", None)  # they name the synthetic state dict, not the file
    network.source.update({
        "onnx_layout": walk.layout or "nchw",
        "onnx_input": walk.input_name,
        "folded_bn": any(c.bn is None for c in walk.convs),
    })
    return network


def _nhwc_hw(walk: Walk) -> tuple[int, int]:
    raw = walk.values[walk.input_name].shape  # declared as [N, H, W, C]
    return raw[1], raw[2]


def load_onnx(path: str | os.PathLike, *, activation: str | None = None, bn_eps: float = 1e-5,
              input_size: int | None = None) -> Network:
    model = read_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    producer = f"{model.producer_name} {model.producer_version}".strip() or None
    try:
        return infer_onnx_network(model, activation=activation, bn_eps=bn_eps, input_size=input_size,
                                  source={"file": os.fspath(path), "frontend": "onnx", "opset": opset,
                                          "producer": producer, "nodes": len(model.graph.node)})
    except CheckpointError as exc:
        raise CheckpointError(f"{os.fspath(path)}: {exc}") from None
