"""Real PyTorch MobileNets in the state-dict layouts users bring (needs torch).

Used by the demo to write seeded random-weight checkpoints, and by the tests as the
independent reference: these are ordinary `nn.Module`s run by PyTorch's own kernels, not
derived from the TF builder.

Layouts:
* ``amc``: the AMC code's modules. V1: ``conv1``, ``features.N`` (depthwise-separable
  Sequentials), ``classifier.1``; V2: ``features.N`` with ``conv`` Sequentials, ``classifier.1``.
* ``torchvision``: torchvision's MobileNetV2 (Conv-BN-act Sequentials nested inside ``conv``).
* ``community``: a common V1 layout (``model.N``, ``fc``) whose convs carry biases.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from amc_tf.core.netspec import V1, NetSpec

LAYOUTS = ("amc", "torchvision", "community")


def _act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.ReLU6(inplace=True)


def _conv_bn_act(cin, cout, k, stride, act, groups=1, bias=False) -> list[nn.Module]:
    mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias), nn.BatchNorm2d(cout)]
    if act:
        mods.append(_act(act))
    return mods


class _InvertedResidual(nn.Module):
    def __init__(self, block, act, nested: bool):
        super().__init__()
        self.use_res = block.residual
        h = block.hidden_ch
        parts: list[nn.Module] = []
        seq = (lambda mods: [nn.Sequential(*mods)]) if nested else (lambda mods: mods)
        if block.expand_ch is not None:
            parts += seq(_conv_bn_act(block.in_ch, h, 1, 1, act))
        parts += seq(_conv_bn_act(h, h, 3, block.stride, act, groups=h))
        parts += [nn.Conv2d(h, block.out_ch, 1, 1, 0, bias=False), nn.BatchNorm2d(block.out_ch)]
        self.conv = nn.Sequential(*parts)

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV1(nn.Module):
    def __init__(self, spec: NetSpec, layout: str = "amc"):
        super().__init__()
        act, bias = spec.activation, layout == "community"
        stem = nn.Sequential(*_conv_bn_act(spec.in_ch, spec.stem_ch, 3, 2, act, bias=bias))
        blocks = [
            nn.Sequential(*_conv_bn_act(b.in_ch, b.in_ch, 3, b.stride, act, groups=b.in_ch, bias=bias),
                          *_conv_bn_act(b.in_ch, b.out_ch, 1, 1, act, bias=bias))
            for b in spec.blocks
        ]
        self.layout = layout
        if layout == "amc":
            self.conv1 = stem
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(spec.feature_ch, spec.num_classes))
        elif layout == "community":
            self.model = nn.Sequential(stem, *blocks)
            self.fc = nn.Linear(spec.feature_ch, spec.num_classes)
        else:
            raise ValueError(f"MobileNetV1 has no {layout!r} layout")

    def forward(self, x):
        if self.layout == "amc":
            x = self.features(self.conv1(x))
            return self.classifier(x.mean(3).mean(2))
        x = self.model(x)
        return self.fc(x.mean((2, 3)))


class MobileNetV2(nn.Module):
    def __init__(self, spec: NetSpec, layout: str = "amc"):
        super().__init__()
        if layout not in ("amc", "torchvision"):
            raise ValueError(f"MobileNetV2 has no {layout!r} layout")
        act, nested = spec.activation, layout == "torchvision"
        stem = nn.Sequential(*_conv_bn_act(spec.in_ch, spec.stem_ch, 3, 2, act))
        blocks = [_InvertedResidual(b, act, nested) for b in spec.blocks]
        last = nn.Sequential(*_conv_bn_act(spec.blocks[-1].out_ch, spec.last_ch, 1, 1, act))
        self.features = nn.Sequential(stem, *blocks, last)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(spec.last_ch, spec.num_classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.mean((2, 3)))


def build(spec: NetSpec, layout: str = "amc") -> nn.Module:
    return (MobileNetV1 if spec.family == V1 else MobileNetV2)(spec, layout)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights with non-trivial BatchNorm statistics; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, float(np.sqrt(2.0 / fan_in)), generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, float(np.sqrt(1.0 / m.in_features)), generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
    return model.eval()


def logits(model: nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


def save(model: nn.Module, path, *, legacy: bool = False, wrap: bool = True, dataparallel: bool = False, **extra) -> None:
    """torch.save the state dict, as the AMC release did (`{'state_dict': ..., ...}`) or bare."""
    sd = model.state_dict()
    if dataparallel:
        sd = type(sd)((f"module.{k}", v) for k, v in sd.items())
    obj = {"state_dict": sd, **extra} if wrap else sd
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
