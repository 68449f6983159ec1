"""NetSpec: the neutral, typed description of a (pruned) MobileNetV1/V2.

Frontends (PyTorch state dicts, ONNX) produce a `Network` = `NetSpec` + weights keyed by
TF-slim variable names, already in TF layout. Everything downstream (TF builder, exporters,
MAC counting, the PyTorch reference, layer-by-layer diffs) reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

V1 = "mobilenet_v1"
V2 = "mobilenet_v2"
FAMILIES = (V1, V2)

# Strides are not visible in the tensors: they are fixed by the family.
V1_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
V2_STRIDES = (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
FAMILY_STRIDES = {V1: V1_STRIDES, V2: V2_STRIDES}
SLIM_SCOPE = {V1: "MobilenetV1", V2: "MobilenetV2"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Block:
    """A depthwise-separable block (V1) or an inverted residual block (V2).

    `expand_ch` is the width of the 1x1 expansion conv, or None when the block has none
    (every V1 block, and V2's first block whose expansion ratio is 1).
    """

    in_ch: int
    out_ch: int
    stride: int
    expand_ch: int | None = None
    residual: bool = False

    @property
    def hidden_ch(self) -> int:
        return self.expand_ch if self.expand_ch is not None else self.in_ch


@dataclass(frozen=True)
class Layer:
    """One conv of the network, in execution order, with its TF-slim scope."""

    scope: str  # e.g. "MobilenetV1/Conv2d_3_pointwise"
    role: str  # stem | depthwise | pointwise | expand | project | last | logits
    cin: int
    cout: int
    kernel: int
    stride: int
    act: str | None  # "relu", "relu6" or None
    block: int | None = None  # index into NetSpec.blocks

    @property
    def depthwise(self) -> bool:
        return self.role == "depthwise"

    @property
    def has_bn(self) -> bool:
        return self.role != "logits"

    @property
    def kernel_var(self) -> str:
        return f"{self.scope}/depthwise_weights" if self.depthwise else f"{self.scope}/weights"

    def bn_var(self, what: str) -> str:
        return f"{self.scope}/BatchNorm/{what}"

    def var_shapes(self) -> dict[str, tuple[int, ...]]:
        """TF-slim variables of this layer and their shapes, in slim's creation order."""
        k = self.kernel
        shape = (k, k, self.cin, 1) if self.depthwise else (k, k, self.cin, self.cout)
        out = {self.kernel_var: shape}
        if self.has_bn:
            for what in BN_VARS:
                out[self.bn_var(what)] = (self.cout,)
        else:
            out[f"{self.scope}/biases"] = (self.cout,)
        return out


BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass(frozen=True)
class NetSpec:
    family: str
    stem_ch: int
    blocks: tuple[Block, ...]
    num_classes: int
    activation: str  # "relu" (AMC's V1) or "relu6"
    last_ch: int | None = None  # V2's final 1x1 conv (Conv_1); None for V1
    bn_eps: float = 1e-5
    input_size: int = 224
    in_ch: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def scope(self) -> str:
        return SLIM_SCOPE[self.family]

    @property
    def feature_ch(self) -> int:
        return self.last_ch if self.last_ch is not None else self.blocks[-1].out_ch

    def with_changes(self, **changes) -> "NetSpec":
        return replace(self, **changes)

    def layers(self) -> tuple[Layer, ...]:
        return tuple(self._iter_layers())

    def _iter_layers(self) -> Iterator[Layer]:
        s, act = self.scope, self.activation
        if self.family == V1:
            yield Layer(f"{s}/Conv2d_0", "stem", self.in_ch, self.stem_ch, 3, 2, act)
            for i, b in enumerate(self.blocks):
                n = i + 1
                yield Layer(f"{s}/Conv2d_{n}_depthwise", "depthwise", b.in_ch, b.in_ch, 3, b.stride, act, i)
                yield Layer(f"{s}/Conv2d_{n}_pointwise", "pointwise", b.in_ch, b.out_ch, 1, 1, act, i)
        else:
            yield Layer(f"{s}/Conv", "stem", self.in_ch, self.stem_ch, 3, 2, act)
            for i, b in enumerate(self.blocks):
                scope = f"{s}/expanded_conv" + (f"_{i}" if i else "")
                if b.expand_ch is not None:
                    yield Layer(f"{scope}/expand", "expand", b.in_ch, b.expand_ch, 1, 1, act, i)
                h = b.hidden_ch
                yield Layer(f"{scope}/depthwise", "depthwise", h, h, 3, b.stride, act, i)
                yield Layer(f"{scope}/project", "project", h, b.out_ch, 1, 1, None, i)
            if self.last_ch is not None:
                yield Layer(f"{s}/Conv_1", "last", self.blocks[-1].out_ch, self.last_ch, 1, 1, act)
        yield Layer(f"{s}/Logits/Conv2d_1c_1x1", "logits", self.feature_ch, self.num_classes, 1, 1, None)

    def var_shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for layer in self.layers():
            out.update(layer.var_shapes())
        return out

    def spatial_sizes(self) -> list[int]:
        """Output height (= width) of each layer for the spec's input size (PyTorch / explicit padding)."""
        size, out = self.input_size, []
        for layer in self.layers():
            if layer.role == "logits":
                out.append(1)
                continue
            pad = (layer.kernel - 1) // 2
            size = (size + 2 * pad - layer.kernel) // layer.stride + 1
            out.append(size)
        return out

    def channels(self) -> list[int]:
        """The flat channel list in the AMC release's notation (input, stem, then per block...)."""
        chans = [self.in_ch, self.stem_ch]
        for b in self.blocks:
            if b.expand_ch is not None:
                chans.append(b.expand_ch)
            chans.append(b.out_ch)
        if self.last_ch is not None:
            chans.append(self.last_ch)
        return chans

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "input_size": self.input_size,
            "stem_ch": self.stem_ch,
            "blocks": [
                {"in": b.in_ch, "expand": b.expand_ch, "out": b.out_ch, "stride": b.stride, "residual": b.residual}
                for b in self.blocks
            ],
            "last_ch": self.last_ch,
            "num_classes": self.num_classes,
            "activation": self.activation,
            "bn_eps": self.bn_eps,
            "channels": self.channels(),
            "preprocessing": {"mean": list(self.mean), "std": list(self.std), "layout": "NHWC", "range": "[0,1]"},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "NetSpec":
        """The inverse of `to_dict` (e.g. the "network" entry of a conversion's report.json)."""
        blocks = tuple(Block(b["in"], b["out"], b["stride"], b["expand"], b["residual"]) for b in d["blocks"])
        pre = d.get("preprocessing", {})
        return cls(d["family"], d["stem_ch"], blocks, d["num_classes"], d["activation"], last_ch=d["last_ch"],
                   bn_eps=d["bn_eps"], input_size=d["input_size"], in_ch=d["channels"][0],
                   mean=tuple(pre.get("mean", IMAGENET_MEAN)), std=tuple(pre.get("std", IMAGENET_STD)))


def make_blocks(family: str, widths: list[tuple[int | None, int]], in_ch: int) -> tuple[Block, ...]:
    """Blocks from (expand_ch, out_ch) pairs with the family's strides and residual rule."""
    strides = FAMILY_STRIDES[family]
    if len(widths) != len(strides):
        raise ValueError(f"{family} has {len(strides)} blocks, got {len(widths)}")
    blocks = []
    for (expand, out), stride in zip(widths, strides):
        residual = family == V2 and stride == 1 and in_ch == out
        blocks.append(Block(in_ch, out, stride, expand, residual))
        in_ch = out
    return tuple(blocks)


@dataclass
class Network:
    """A NetSpec and its weights: {TF-slim variable name: float32 array in TF layout}."""

    spec: NetSpec
    weights: dict[str, np.ndarray]
    source: dict = field(default_factory=dict)  # where it came from: file, format, layout...

    def validate(self) -> None:
        expected = self.spec.var_shapes()
        missing = [k for k in expected if k not in self.weights]
        if missing:
            raise ValueError(f"weights missing for {missing[:3]}")
        for name, shape in expected.items():
            if tuple(self.weights[name].shape) != shape:
                raise ValueError(f"{name}: shape {self.weights[name].shape} != {shape}")
