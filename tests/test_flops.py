"""MACs and params of NetSpec, against counts taken from the real PyTorch modules."""

from __future__ import annotations

import pytest
import torch

from amc_tf.core import torch_models
from amc_tf.core.flops import count
from amc_tf.core.profiles import PROFILE_NAMES, profile_spec
from conftest import spec_for


def torch_counts(model, size):
    """MACs by forward hooks on every Conv2d / Linear, params from the module."""
    macs = []

    def conv_hook(mod, inp, out):
        macs.append(out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])

    def linear_hook(mod, inp, out):
        macs.append(mod.in_features * mod.out_features)

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear_hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    params = sum(p.numel() for p in model.parameters())
    return sum(macs), params


@pytest.mark.parametrize("name", list(PROFILE_NAMES) + ["odd-v1", "odd-v2"])
@pytest.mark.parametrize("size", [224, 193])
def test_counts_match_pytorch_hooks(name, size):
    spec = spec_for(name).with_changes(input_size=size)
    model = torch_models.build(spec, "amc").eval()
    want_macs, want_params = torch_counts(model, size)
    got = count(spec)
    assert got["macs"] == want_macs
    assert got["params"] == want_params
    assert sum(r["macs"] for r in got["layers"]) == got["macs"]


@pytest.mark.parametrize("name,macs,params", [
    ("1.0", 568_740_352, 4_231_976),     # slim/README: 569M MACs, 4.24M params (1001 classes)
    ("v2-1.0", 300_774_272, 3_504_872),  # torchvision's MobileNet_V2 num_params: 3,504,872
])
def test_known_totals(name, macs, params):
    got = count(profile_spec(name))
    assert (got["macs"], got["params"]) == (macs, params)
