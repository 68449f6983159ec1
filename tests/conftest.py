"""Shared fixtures: real PyTorch MobileNets saved as checkpoints, and odd prunings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def odd_spec(family: str, seed: int):
    """A deliberately odd pruning: channel counts that are not multiples of 8."""
    from amc_tf.core.netspec import V1, V2, NetSpec, make_blocks

    rng = np.random.default_rng(seed)
    if family == V1:
        stem = int(rng.integers(5, 40))
        widths = [(None, int(rng.integers(7, 300))) for _ in range(13)]
        return NetSpec(V1, stem, make_blocks(V1, widths, stem), num_classes=37, activation="relu")
    # V2: blocks of one stage share their output width so residuals stay valid
    stem = int(rng.integers(5, 40))
    stage_sizes = (1, 2, 3, 4, 3, 3, 1)
    widths = []
    for stage, n in enumerate(stage_sizes):
        out = int(rng.integers(5, 200))
        for _ in range(n):
            expand = None if stage == 0 else int(rng.integers(9, 500))
            widths.append((expand, out))
    return NetSpec(V2, stem, make_blocks(V2, widths, stem), num_classes=29, activation="relu6",
                   last_ch=int(rng.integers(50, 900)))


def spec_for(name: str):
    from amc_tf.core.profiles import profile_spec

    if name == "odd-v1":
        return odd_spec("mobilenet_v1", 7)
    if name == "odd-v2":
        return odd_spec("mobilenet_v2", 11)
    return profile_spec(name)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """make_checkpoint(profile, layout, fmt, seed=0, **save_kwargs) -> (path, torch model, spec)."""
    from amc_tf.core import torch_models

    root = tmp_path_factory.mktemp("ckpt")
    cache = {}

    def make(profile: str, layout: str = "amc", fmt: str = "zip", seed: int = 0, **save_kwargs):
        key = (profile, layout, fmt, seed, tuple(sorted(save_kwargs.items())))
        if key not in cache:
            spec = spec_for(profile)
            model = torch_models.randomize(torch_models.build(spec, layout), seed)
            path = root / f"{profile}-{layout}-{fmt}-{seed}-{len(cache)}.pth.tar"
            torch_models.save(model, path, legacy=(fmt == "legacy"), **save_kwargs)
            cache[key] = (path, model, spec)
        return cache[key]

    return make
