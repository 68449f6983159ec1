"""PyTorch state dict -> Network (NetSpec + TF-slim weights in TF layout).

The architecture is inferred from the tensors' order and shapes, not from module names, so
AMC's layout (`conv1`, `features.N`, `classifier.1`), torchvision's MobileNetV2 layout and
common community layouts all work. Only PyTorch's universal parameter suffixes (`weight`,
`bias`, `running_mean`, `running_var`, `num_batches_tracked`) are read from the keys.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from amc_tf.core.errors import ArchitectureError
from amc_tf.core.netspec import FAMILY_STRIDES, V1, V2, Layer, Network, NetSpec, make_blocks


@dataclass
class _Op:
    """A conv (with the BatchNorm that follows it) or the final linear layer."""

    kind: str  # conv | linear
    key: str  # state-dict key of the weight
    weight: np.ndarray
    bias: np.ndarray | None = None
    bn: dict[str, np.ndarray] | None = None
    bn_key: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1])

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[2]) if self.weight.ndim == 4 else 1

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.cin == 1 and self.kernel == 3

    @property
    def is_pointwise(self) -> bool:
        return self.kind == "conv" and self.kernel == 1

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.weight.shape)
        return f"'{self.key}' ({shape})"


def _group_modules(sd: "OrderedDict[str, np.ndarray]") -> "OrderedDict[str, dict[str, np.ndarray]]":
    modules: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
    for key, arr in sd.items():
        prefix, _, suffix = key.rpartition(".")
        modules.setdefault(prefix, {})[suffix] = arr
    return modules


def _ops_from_state_dict(sd: "OrderedDict[str, np.ndarray]") -> list[_Op]:
    ops: list[_Op] = []
    for prefix, params in _group_modules(sd).items():
        name = lambda suffix: f"{prefix}.{suffix}" if prefix else suffix  # noqa: E731
        if "running_mean" in params and "running_var" in params:
            c = params["running_mean"].shape[0]
            bn = {
                "gamma": params.get("weight", np.ones(c, np.float32)),
                "beta": params.get("bias", np.zeros(c, np.float32)),
                "moving_mean": params["running_mean"],
                "moving_variance": params["running_var"],
            }
            if not ops or ops[-1].kind != "conv" or ops[-1].bn is not None:
                raise ArchitectureError(f"BatchNorm '{prefix}' does not follow a convolution: not a MobileNet")
            if ops[-1].cout != c:
                raise ArchitectureError(
                    f"BatchNorm '{prefix}' has {c} channels but the conv before it, {ops[-1].describe()}, has {ops[-1].cout}"
                )
            ops[-1].bn, ops[-1].bn_key = bn, prefix
            continue
        weight = params.get("weight")
        if weight is None or weight.ndim not in (2, 4):
            shapes = ", ".join(f"{name(k)} {tuple(v.shape)}" for k, v in params.items())
            raise ArchitectureError(f"unexpected parameters {shapes}: not a MobileNetV1/V2")
        unknown = set(params) - {"weight", "bias"}
        if unknown:
            raise ArchitectureError(f"unexpected parameter '{name(sorted(unknown)[0])}' beside a conv/linear weight")
        kind = "conv" if weight.ndim == 4 else "linear"
        ops.append(_Op(kind, name("weight"), weight.astype(np.float32), params.get("bias")))
    return ops


def _describe_net(ops: list[_Op]) -> str:
    convs = [o for o in ops if o.kind == "conv"]
    return f"{len(convs)} convs, {len(ops) - len(convs)} linear layers"


def _match_blocks(body: list[_Op]) -> tuple[list[tuple[int | None, int]], list[list[_Op]], _Op | None]:
    """Group the convs between stem and classifier into blocks: depthwise + pointwise (V1, and
    V2's first block), pointwise + depthwise + pointwise (V2's expanded blocks), and a final
    lone pointwise (V2's last conv). Returns ((expand_ch, out_ch) per block, the blocks' ops,
    the final conv or None)."""
    widths: list[tuple[int | None, int]] = []
    block_ops: list[list[_Op]] = []
    last: _Op | None = None
    i = 0
    while i < len(body):
        op = body[i]
        nxt = body[i + 1] if i + 1 < len(body) else None
        if op.is_depthwise and nxt is not None and nxt.is_pointwise:
            widths.append((None, nxt.cout))
            block_ops.append([op, nxt])
            i += 2
        elif op.is_pointwise and nxt is not None and nxt.is_depthwise and i + 2 < len(body) and body[i + 2].is_pointwise:
            widths.append((op.cout, body[i + 2].cout))
            block_ops.append([op, nxt, body[i + 2]])
            i += 3
        elif op.is_pointwise and nxt is None:
            last = op
            i += 1
        else:
            raise ArchitectureError(
                f"conv {op.describe()} does not fit a depthwise-separable or inverted-residual block: not a MobileNetV1/V2"
            )
    return widths, block_ops, last


def _check_channel_chain(stem: _Op, block_ops: list[list[_Op]], last: _Op | None, fc: _Op) -> None:
    """Every layer must take the channels the one before it gives."""
    prev = stem.cout
    for k, ops_k in enumerate(block_ops):
        first = ops_k[0]
        cin = first.cin if not first.is_depthwise else first.cout
        if cin != prev:
            raise ArchitectureError(f"block {k}: {first.describe()} takes {cin} channels but the previous layer gives {prev}")
        dw = ops_k[-2]
        if len(ops_k) == 3 and first.cout != dw.cout:
            raise ArchitectureError(f"block {k}: expansion {first.describe()} gives {first.cout} channels, "
                                    f"the depthwise after it has {dw.cout}")
        if dw.cout != ops_k[-1].cin:
            raise ArchitectureError(f"block {k}: depthwise {dw.describe()} gives {dw.cout} channels, next conv takes {ops_k[-1].cin}")
        prev = ops_k[-1].cout
    if last is not None:
        if last.cin != prev:
            raise ArchitectureError(f"final conv {last.describe()} takes {last.cin} channels, the last block gives {prev}")
        prev = last.cout
    if fc.weight.shape[1] != prev:
        raise ArchitectureError(f"classifier {fc.describe()} takes {fc.weight.shape[1]} features, the network gives {prev}")


def infer_network(
    sd: "OrderedDict[str, np.ndarray]",
    *,
    activation: str | None = None,
    bn_eps: float = 1e-5,
    input_size: int = 224,
    source: dict | None = None,
) -> Network:
    """Infer family, channels, expansion widths and residuals from a state dict."""
    if not sd:
        raise ArchitectureError("the state dict holds no tensors")
    ops = _ops_from_state_dict(sd)
    if not ops or ops[-1].kind != "linear":
        raise ArchitectureError(f"no final linear classifier found ({_describe_net(ops)}): not a MobileNetV1/V2")
    if sum(o.kind == "linear" for o in ops) != 1:
        raise ArchitectureError(f"expected one linear classifier, found {_describe_net(ops)}: not a MobileNetV1/V2")
    for op in ops[:-1]:
        if op.bn is None:
            raise ArchitectureError(f"conv {op.describe()} has no BatchNorm after it: not a MobileNetV1/V2 state dict")
        if op.kernel not in (1, 3) or op.weight.shape[2] != op.weight.shape[3]:
            raise ArchitectureError(f"conv {op.describe()} has a {op.weight.shape[2]}x{op.weight.shape[3]} kernel: "
                                    "MobileNets use only 3x3 and 1x1 convs")
    stem, body, fc = ops[0], ops[1:-1], ops[-1]
    if stem.kernel != 3 or stem.is_depthwise or stem.cin != 3:
        raise ArchitectureError(f"first conv {stem.describe()} is not a MobileNet stem (3x3 conv from 3 channels)")

    widths, block_ops, last = _match_blocks(body)

    has_expand = any(e is not None for e, _ in widths)
    family = V2 if (has_expand or last is not None) else V1
    n_expected = len(FAMILY_STRIDES[family])
    if len(widths) != n_expected:
        raise ArchitectureError(
            f"found {len(widths)} {'inverted-residual' if family == V2 else 'depthwise-separable'} blocks; "
            f"{'MobileNetV2 has 17' if family == V2 else 'MobileNetV1 has 13'}: unsupported network"
        )
    if family == V2 and last is None:
        raise ArchitectureError("MobileNetV2-like blocks but no final 1x1 conv before the classifier")

    _check_channel_chain(stem, block_ops, last, fc)

    blocks = make_blocks(family, widths, stem.cout)
    spec = NetSpec(
        family=family,
        stem_ch=stem.cout,
        blocks=blocks,
        num_classes=int(fc.weight.shape[0]),
        activation=activation or ("relu" if family == V1 else "relu6"),
        last_ch=last.cout if last is not None else None,
        bn_eps=bn_eps,
        input_size=input_size,
    )
    ordered = [stem] + [o for ops_k in block_ops for o in ops_k] + ([last] if last else []) + [fc]
    weights: dict[str, np.ndarray] = {}
    keys: dict[str, dict] = {}
    for layer, op in zip(spec.layers(), ordered):
        weights.update(_tf_weights(layer, op))
        keys[layer.scope] = {"weight": op.key, "bias": op.key[: -len("weight")] + "bias" if op.bias is not None else None,
                             "bn": op.bn_key}
    net = Network(spec, weights, dict(source or {}, layer_keys=keys))
    net.validate()
    return net


def _tf_weights(layer: Layer, op: _Op) -> dict[str, np.ndarray]:
    w = op.weight
    if layer.role == "logits":
        out = {layer.kernel_var: np.ascontiguousarray(w.T[None, None]),
               f"{layer.scope}/biases": _f32(op.bias if op.bias is not None else np.zeros(w.shape[0]))}
        return out
    if layer.depthwise:
        kernel = w.transpose(2, 3, 0, 1)  # [C,1,kh,kw] -> [kh,kw,C,1]
    else:
        kernel = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    out = {layer.kernel_var: np.ascontiguousarray(kernel, dtype=np.float32)}
    bn = dict(op.bn)
    if op.bias is not None:
        # BN(conv(x) + b) == BN'(conv(x)) with moving_mean' = moving_mean - b: slim has no conv bias.
        bn["moving_mean"] = bn["moving_mean"] - op.bias
    for what, arr in bn.items():
        out[layer.bn_var(what)] = _f32(arr)
    return out


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))
