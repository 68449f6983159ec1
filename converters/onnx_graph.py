"""The ONNX graph walk behind converters/onnx_frontend.py: the graph is walked once, in its
(topological) node order, keeping the network's main path symbolic: which conv a tensor
comes from, whether a BatchNorm, an activation or a residual Add followed, how far the
spatial dims have been pooled. Constants (initializers, Constant nodes and the small
Shape/Gather/Concat chains that `x.view(x.size(0), -1)` exports to) are folded in numpy.
`walk_graph` returns what the walk collected (`Walk`: the convs with their BatchNorms and
activations, the residual Adds, the final Gemm, the input layout).

Understood: Conv (plain or depthwise, symmetric k//2 pads), BatchNormalization, Relu,
Clip(0, 6) / Clip(0, inf), Add (residual), GlobalAveragePool, ReduceMean over H and/or W,
Flatten, Reshape, Squeeze, Gemm, Identity, Dropout, a leading Transpose from NHWC, and
constant folding of Constant, Shape, Gather, Unsqueeze, Concat, Cast; each folded result's size
is checked against the graph's `FoldBudget` (amc_tf/core/onnx_io.py) before it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from amc_tf.core.errors import ArchitectureError
from amc_tf.core.onnx_io import FoldBudget, tensor_array


KNOWN_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "Add", "GlobalAveragePool", "ReduceMean", "Flatten",
             "Reshape", "Squeeze", "Gemm", "Identity", "Dropout", "Transpose", "Constant", "Shape", "Gather",
             "Unsqueeze", "Concat", "Cast")


@dataclass(frozen=True)
class _Feature:
    """A tensor on the main path. `labels` name its dims: N, C, H, W; a dim reduced with
    keepdims becomes "1"; `shape` is concrete with batch 1."""

    labels: tuple[str, ...]
    shape: tuple[int, ...]
    conv: int  # index of the last conv on the path (-1: the graph input)
    stage: str  # input | conv | bn | act | add | logits
    raw_input: bool = False  # the graph input before any layout decision

    @property
    def pooled(self) -> bool:
        return "H" not in self.labels and "W" not in self.labels

    @property
    def channels(self) -> int:
        return self.shape[self.labels.index("C")]


@dataclass
class _Conv:
    node: str
    weight: np.ndarray
    bias: np.ndarray | None
    stride: int
    act: str | None = None
    bn: dict[str, np.ndarray] | None = None
    bn_node: str | None = None


@dataclass
class Walk:
    values: dict = field(default_factory=dict)  # tensor name -> np.ndarray | _Feature
    convs: list[_Conv] = field(default_factory=list)
    adds: list[tuple[int, int, str]] = field(default_factory=list)  # (skip conv, conv, node)
    gemm: tuple[str, np.ndarray, np.ndarray | None] | None = None
    layout: str | None = None
    bn_eps: set = field(default_factory=set)
    input_name: str = ""
    fold: FoldBudget = field(default_factory=FoldBudget)  # what constant folding may build, checked first


class _Unsupported(Exception):
    """Raised by a handler: the node is not understood; carries the reason."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _node_name(node, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _const(walk: Walk, name: str, what: str) -> np.ndarray:
    value = walk.values.get(name)
    if not isinstance(value, np.ndarray):
        raise _Unsupported(f"its {what} '{name}' is not a constant")
    return value


def _optional_const(walk: Walk, node, i: int, what: str) -> np.ndarray | None:
    if len(node.input) <= i or not node.input[i]:
        return None
    return _const(walk, node.input[i], what)


def _feature(walk: Walk, name: str) -> _Feature:
    value = walk.values.get(name)
    if not isinstance(value, _Feature):
        raise _Unsupported(f"its input '{name}' is not on the network's main path")
    return value


def _axes(node, walk: Walk, rank: int, attrs: dict) -> list[int] | None:
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _const(walk, node.input[1], "axes").tolist()
    return None if axes is None else sorted(int(a) % rank for a in axes)


# ----- handlers: each maps a node's inputs to its output value, or raises _Unsupported -----

def _h_constant(node, walk, attrs):
    if "value" in attrs:
        value = tensor_array(attrs["value"], "its value")
        walk.fold.take(value.size, value.itemsize, f"node '{node.name}' (Constant)")
        return value
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            count = len(attrs[key]) if isinstance(attrs[key], (list, tuple)) else 1
            walk.fold.take(count, 8, f"node '{node.name}' (Constant)")
            return np.asarray(attrs[key], np.float32 if "float" in key else np.int64)
    raise _Unsupported(f"it holds {sorted(attrs)}, not a tensor")


def _h_passthrough(node, walk, attrs):
    return walk.values[node.input[0]] if node.input[0] in walk.values else _feature(walk, node.input[0])


def _h_shape(node, walk, attrs):
    value = walk.values.get(node.input[0])
    shape = value.shape if isinstance(value, (_Feature, np.ndarray)) else None
    if shape is None:
        raise _Unsupported(f"the shape of '{node.input[0]}' is unknown")
    return np.asarray(shape, np.int64)[attrs.get("start", 0):attrs.get("end", None)]


def _h_gather(node, walk, attrs):
    data, indices = _const(walk, node.input[0], "data"), _const(walk, node.input[1], "indices")
    axis = attrs.get("axis", 0)
    if data.ndim == 0 or not -data.ndim <= axis < data.ndim:
        raise _Unsupported(f"axis {axis} of a rank-{data.ndim} tensor")
    axis %= data.ndim
    walk.fold.take(_count(data.shape[:axis]) * indices.size * _count(data.shape[axis + 1:]), data.itemsize,
                   f"node '{node.name}' (Gather)")
    return np.take(data, indices, axis=axis)


def _h_unsqueeze(node, walk, attrs):
    data = _const(walk, node.input[0], "data")
    axes = _axes(node, walk, data.ndim + 1, attrs) or []
    for a in axes:
        data = np.expand_dims(data, a)
    return data


def _h_concat(node, walk, attrs):
    parts = [_const(walk, n, "input") for n in node.input]
    if not parts:
        raise _Unsupported("no inputs")
    itemsize = max(8, max(p.itemsize for p in parts))  # an upper bound of the promoted type's
    walk.fold.take(sum(int(p.size) for p in parts), itemsize, f"node '{node.name}' (Concat)")
    return np.concatenate(parts, axis=attrs["axis"])


def _h_cast(node, walk, attrs):
    from onnx import helper

    data, dtype = _const(walk, node.input[0], "input"), np.dtype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    walk.fold.take(data.size, dtype.itemsize, f"node '{node.name}' (Cast)")
    return data.astype(dtype)


def _count(shape) -> int:
    count = 1
    for n in shape:
        count *= int(n)
    return count


def _h_transpose(node, walk, attrs):
    x = _feature(walk, node.input[0])
    perm = list(attrs.get("perm", []))
    if not x.raw_input or perm != [0, 3, 1, 2]:
        raise _Unsupported("only a Transpose(perm=[0,3,1,2]) of the NHWC graph input is understood")
    walk.layout = "nhwc"
    return _Feature(("N", "C", "H", "W"), tuple(x.shape[p] for p in perm), -1, "input")


def _h_conv(node, walk, attrs):
    x = _feature(walk, node.input[0])
    if x.raw_input:
        walk.layout = "nchw"
    if x.labels != ("N", "C", "H", "W") or x.conv != len(walk.convs) - 1:
        raise _Unsupported("it does not continue the network's chain of convs")
    w = _const(walk, node.input[1], "weight").astype(np.float32)
    b = _optional_const(walk, node, 2, "bias")
    if w.ndim != 4:
        raise _Unsupported(f"a {w.ndim}-D weight; only 2-D convolutions are understood")
    k = w.shape[2]
    stride = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") and not (k == 1 and stride == [1, 1]):
        raise _Unsupported(f"auto_pad={attrs['auto_pad']!r}; MobileNets pad explicitly by k//2 on every side")
    if list(attrs.get("dilations", [1, 1])) != [1, 1]:
        raise _Unsupported(f"dilations {list(attrs['dilations'])}")
    if stride[0] != stride[1] or w.shape[2] != w.shape[3]:
        raise _Unsupported(f"strides {stride} with a {w.shape[2]}x{w.shape[3]} kernel; MobileNets use square ones")
    if pads != [k // 2] * 4:
        raise _Unsupported(f"pads {pads}; MobileNets pad a {k}x{k} conv by {k // 2} on every side")
    group, cin = attrs.get("group", 1), x.channels
    if w.shape[1] * group != cin:
        raise _Unsupported(f"its weight {list(w.shape)} (group {group}) takes {w.shape[1] * group} channels, "
                           f"the input has {cin}")
    if group not in (1, cin) or (group == cin and w.shape[0] != cin):
        raise _Unsupported(f"a grouped conv (group {group}) that is neither plain nor depthwise")
    walk.convs.append(_Conv(node.name, w, None if b is None else b.astype(np.float32), stride[0]))
    size = [(s + 2 * (k // 2) - k) // stride[0] + 1 for s in x.shape[2:]]
    return _Feature(x.labels, (x.shape[0], int(w.shape[0]), *size), len(walk.convs) - 1, "conv")


def _h_batchnorm(node, walk, attrs):
    x = _feature(walk, node.input[0])
    if x.stage != "conv" or x.conv != len(walk.convs) - 1:
        raise _Unsupported("it does not directly follow a Conv")
    if attrs.get("training_mode", 0):
        raise _Unsupported("training_mode=1")
    conv = walk.convs[x.conv]
    conv.bn = {what: _const(walk, node.input[i], what).astype(np.float32)
               for i, what in enumerate(("weight", "bias", "running_mean", "running_var"), start=1)}
    conv.bn_node = node.name
    walk.bn_eps.add(float(np.float32(attrs.get("epsilon", 1e-5))))
    return replace(x, stage="bn")


def _activate(walk, node, act: str):
    x = _feature(walk, node.input[0])
    if x.stage not in ("conv", "bn") or x.conv != len(walk.convs) - 1:
        raise _Unsupported("it does not follow a Conv (or its BatchNorm)")
    walk.convs[x.conv].act = act
    return replace(x, stage="act")


def _h_relu(node, walk, attrs):
    return _activate(walk, node, "relu")


def _h_clip(node, walk, attrs):
    lo, hi = attrs.get("min"), attrs.get("max")
    if len(node.input) > 1:
        lo_c, hi_c = _optional_const(walk, node, 1, "min"), _optional_const(walk, node, 2, "max")
        if any(c is not None and c.size != 1 for c in (lo_c, hi_c)):
            raise _Unsupported("its min/max are not scalars")
        lo = None if lo_c is None else float(lo_c.reshape(-1)[0])
        hi = None if hi_c is None else float(hi_c.reshape(-1)[0])
    if lo == 0.0 and hi == 6.0:
        return _activate(walk, node, "relu6")
    if lo == 0.0 and (hi is None or hi >= 3.0e38):
        return _activate(walk, node, "relu")
    raise _Unsupported(f"Clip({lo}, {hi}); only Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU) are understood")


def _h_add(node, walk, attrs):
    a, b = (_feature(walk, n) for n in node.input[:2])
    y, skip = (a, b) if a.conv > b.conv else (b, a)
    if y.stage not in ("conv", "bn") or y.conv != len(walk.convs) - 1 or skip.shape != y.shape or skip.conv >= y.conv:
        raise _Unsupported("it is not a residual Add of a block's input to its projection")
    walk.adds.append((skip.conv, y.conv, node.name))
    return replace(y, stage="add")


def _h_global_pool(node, walk, attrs):
    x = _feature(walk, node.input[0])
    if x.labels != ("N", "C", "H", "W"):
        raise _Unsupported(f"its input has dims {x.labels}")
    return _Feature(("N", "C", "1", "1"), (x.shape[0], x.channels, 1, 1), x.conv, "pool")


def _h_reduce_mean(node, walk, attrs):
    x = _feature(walk, node.input[0])
    axes = _axes(node, walk, len(x.labels), attrs)
    if axes is None or any(x.labels[a] not in ("H", "W") for a in axes):
        raise _Unsupported(f"it averages over axes {axes} of {x.labels}; only H and W are pooled")
    keep = attrs.get("keepdims", 1)
    labels = [("1" if i in axes else lab) for i, lab in enumerate(x.labels) if keep or i not in axes]
    shape = [(1 if i in axes else s) for i, s in enumerate(x.shape) if keep or i not in axes]
    return _Feature(tuple(labels), tuple(shape), x.conv, "pool")


def _to_vector(x: _Feature) -> _Feature:
    return _Feature(("N", "C"), (x.shape[0], x.channels), x.conv, "pool")


def _h_flatten(node, walk, attrs):
    x = _feature(walk, node.input[0])
    if not x.pooled or x.labels[:2] != ("N", "C") or attrs.get("axis", 1) != 1:
        raise _Unsupported("only Flatten(axis=1) of the pooled features is understood")
    return _to_vector(x)


def _h_reshape(node, walk, attrs):
    x = _feature(walk, node.input[0])
    target = _const(walk, node.input[1], "shape").tolist()
    if not x.pooled or x.labels[:2] != ("N", "C") or len(target) != 2 or target[1] not in (x.channels, -1) \
            or target[0] not in (0, 1, -1, x.shape[0]) or target == [-1, -1]:
        raise _Unsupported(f"reshape to {target}; only pooled features to [batch, {x.channels}] are understood")
    return _to_vector(x)


def _h_squeeze(node, walk, attrs):
    x = _feature(walk, node.input[0])
    axes = _axes(node, walk, len(x.labels), attrs)
    ones = [i for i, lab in enumerate(x.labels) if lab == "1"]
    if not x.pooled or x.labels[:2] != ("N", "C") or (axes is not None and axes != ones):
        raise _Unsupported("only squeezing the pooled 1x1 dims is understood")
    return _to_vector(x)


def _h_gemm(node, walk, attrs):
    x = _feature(walk, node.input[0])
    if x.labels != ("N", "C") or attrs.get("transA", 0) or x.conv != len(walk.convs) - 1:
        raise _Unsupported(f"its input has dims {x.labels}; the classifier takes the pooled [batch, channels]")
    b = _const(walk, node.input[1], "weight").astype(np.float32)
    weight = b if attrs.get("transB", 0) else b.T
    c = _optional_const(walk, node, 2, "bias")
    weight = weight * np.float32(attrs.get("alpha", 1.0))
    bias = None if c is None else (c.astype(np.float32) * np.float32(attrs.get("beta", 1.0))).reshape(-1)
    if walk.gemm is not None:
        raise _Unsupported("a second classifier")
    walk.gemm = (node.name, np.ascontiguousarray(weight), bias)
    return _Feature(("N", "K"), (x.shape[0], weight.shape[0]), x.conv, "logits")


_HANDLERS = {
    "Constant": _h_constant, "Identity": _h_passthrough, "Dropout": _h_passthrough, "Shape": _h_shape,
    "Gather": _h_gather, "Unsqueeze": _h_unsqueeze, "Concat": _h_concat, "Cast": _h_cast,
    "Transpose": _h_transpose, "Conv": _h_conv, "BatchNormalization": _h_batchnorm, "Relu": _h_relu,
    "Clip": _h_clip, "Add": _h_add, "GlobalAveragePool": _h_global_pool, "ReduceMean": _h_reduce_mean,
    "Flatten": _h_flatten, "Reshape": _h_reshape, "Squeeze": _h_squeeze, "Gemm": _h_gemm,
}
assert set(_HANDLERS) == set(KNOWN_OPS)


def walk_graph(model) -> Walk:
    graph, walk = model.graph, Walk()
    for init in graph.initializer:
        walk.values[init.name] = tensor_array(init, f"initializer '{init.name[:80]}'")
    inputs = [i for i in graph.input if i.name not in walk.values]
    if len(inputs) != 1:
        raise ArchitectureError(f"unsupported ONNX graph: {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                                "a MobileNet has one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ArchitectureError(f"unsupported ONNX graph: input '{inputs[0].name}' has rank {len(dims)}, not 4")
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    walk.input_name = inputs[0].name
    walk.values[inputs[0].name] = _Feature(("N", "C", "H", "W"), (1,) + shape[1:], -1, "input", raw_input=True)
    for i, node in enumerate(graph.node):
        name = _node_name(node, i)
        handler = _HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handler is None:
            raise ArchitectureError(f"unsupported ONNX graph: node '{name}' ({node.op_type}) is not understood; "
                                    f"the reader knows {', '.join(KNOWN_OPS)}")
        node_for_handler = node if node.name else _named(node, name)
        try:
            value = handler(node_for_handler, walk, _attrs(node))
        except _Unsupported as exc:
            raise ArchitectureError(f"unsupported ONNX graph: node '{name}' ({node.op_type}) is not understood: {exc}") from None
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise ArchitectureError(f"unsupported ONNX graph: node '{name}' ({node.op_type}) is not understood "
                                    f"({type(exc).__name__}: {exc})") from None
        walk.values[node.output[0]] = value if isinstance(value, _Feature) else np.asarray(value)
    outputs = [walk.values.get(o.name) for o in graph.output]
    if len(outputs) != 1 or not isinstance(outputs[0], _Feature) or outputs[0].stage != "logits":
        raise ArchitectureError(f"unsupported ONNX graph: its output{'s' if len(outputs) > 1 else ''} "
                                f"{', '.join(repr(o.name) for o in graph.output)} "
                                "should be the logits of a final Gemm")
    return walk


def _named(node, name: str):
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = name
    return copy
