"""Named AMC channel profiles (facts from the AMC compressed-models release).

`--profile NAME` is a check, not a requirement: the architecture is always inferred from
the checkpoint's tensors, and a profile only asserts that the result has these channels.
"""

from __future__ import annotations

from amc_tf.core.errors import ArchitectureError
from amc_tf.core.netspec import V1, V2, NetSpec, make_blocks

# MobileNetV1: stem width and the pointwise widths of the 13 blocks.
_V1_PROFILES = {
    "1.0": (32, (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)),
    "0.75": (24, (48, 96, 96, 192, 192, 384, 384, 384, 384, 384, 384, 768, 768)),
    "0.5flops": (24, (48, 96, 80, 192, 200, 328, 352, 368, 360, 328, 400, 736, 752)),
    "0.5time": (16, (48, 88, 80, 192, 168, 336, 360, 360, 352, 352, 368, 768, 680)),
}

# MobileNetV2 in the release's flat notation: input, stem, first block's output, then
# (expansion, output) for the other 16 blocks, then the last 1x1 conv.
_V2_STANDARD = [3, 32, 16]
for _t, _c, _n in ((6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)):
    for _ in range(_n):
        _V2_STANDARD += [_V2_STANDARD[-1] * _t, _c]
_V2_STANDARD.append(1280)

_V2_PROFILES = {
    "v2-1.0": tuple(_V2_STANDARD),
    "v2-0.7flops": (3, 24, 16, 72, 24, 104, 24, 104, 32, 136, 32, 136, 32, 136, 64, 272, 64, 272,
                    64, 272, 64, 272, 96, 408, 96, 400, 96, 400, 160, 712, 160, 720, 160, 712, 248, 848),
}

PROFILE_NAMES = tuple(_V1_PROFILES) + tuple(_V2_PROFILES)

# MACs (millions) the release's table gives for each profile, for the README comparison.
PUBLISHED_MACS_M = {"1.0": 569, "0.75": 325, "0.5flops": 285, "0.5time": 272, "v2-1.0": 300, "v2-0.7flops": 210}


def profile_spec(name: str, num_classes: int = 1000, activation: str | None = None) -> NetSpec:
    """The NetSpec of a named profile (V1: ReLU as in AMC's PyTorch code; V2: ReLU6)."""
    if name in _V1_PROFILES:
        stem, widths = _V1_PROFILES[name]
        blocks = make_blocks(V1, [(None, w) for w in widths], stem)
        return NetSpec(V1, stem, blocks, num_classes, activation or "relu")
    if name in _V2_PROFILES:
        chans = _V2_PROFILES[name]
        stem, first_out, rest, last = chans[1], chans[2], chans[3:-1], chans[-1]
        widths = [(None, first_out)] + [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
        blocks = make_blocks(V2, widths, stem)
        return NetSpec(V2, stem, blocks, num_classes, activation or "relu6", last_ch=last)
    raise ArchitectureError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}")


def check_profile(spec: NetSpec, name: str) -> None:
    """Raise ArchitectureError naming the first layer where `spec` contradicts profile `name`."""
    want = profile_spec(name, spec.num_classes, spec.activation)
    if want.family != spec.family:
        raise ArchitectureError(f"--profile {name} is a {want.family}, but the checkpoint holds a {spec.family}")
    for got_l, want_l in zip(spec.layers(), want.layers()):
        if (got_l.cin, got_l.cout) != (want_l.cin, want_l.cout):
            raise ArchitectureError(
                f"--profile {name}: layer {want_l.scope} has {got_l.cin}->{got_l.cout} channels "
                f"in the checkpoint, the profile says {want_l.cin}->{want_l.cout}"
            )
    if len(spec.layers()) != len(want.layers()):
        raise ArchitectureError(f"--profile {name}: the checkpoint has {len(spec.layers())} convs, the profile {len(want.layers())}")
