"""A PyTorch reference forward pass built from a NetSpec (torch is optional).

It reads the checkpoint's *original* tensors (PyTorch layout, located through the keys the
frontend recorded), so comparing it with the TF/TFLite exports checks layouts, padding,
BatchNorm and activations against PyTorch's own kernels.
"""

from __future__ import annotations

import numpy as np

from amc_tf.core.netspec import NetSpec


def torch_version() -> str | None:
    """The importable torch's version, without importing torch (importing costs ~1.5 s)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        if importlib.util.find_spec("torch") is None:
            return None
        return version("torch")
    except (ValueError, PackageNotFoundError):  # ValueError: torch blocked in sys.modules
        return None


def torch_available() -> bool:
    return torch_version() is not None


def forward(spec: NetSpec, state_dict: dict, layer_keys: dict, x_nhwc: np.ndarray, taps: dict | None = None) -> np.ndarray:
    """Logits for an NHWC float batch. With `taps`, also store each layer's output (NHWC)."""
    import torch
    import torch.nn.functional as F

    def t(key):
        return torch.from_numpy(np.ascontiguousarray(state_dict[key], dtype=np.float32))

    acts = {"relu": F.relu, "relu6": F.relu6, None: lambda v: v}
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2), dtype=np.float32))
        block_input, current_block = None, None
        for layer in spec.layers():
            keys = layer_keys[layer.scope]
            if layer.role == "logits":
                x = x.mean(dim=(2, 3))
                if taps is not None:
                    taps[f"{spec.scope}/Logits/AvgPool"] = x[:, None, None, :].numpy()
                bias = t(keys["bias"]) if keys.get("bias") else None
                x = F.linear(x, t(keys["weight"]), bias)
                if taps is not None:
                    taps[layer.scope] = x.numpy()
                break
            if layer.block != current_block:
                current_block, block_input = layer.block, x
            bias = t(keys["bias"]) if keys.get("bias") else None
            groups = layer.cin if layer.depthwise else 1
            x = F.conv2d(x, t(keys["weight"]), bias, stride=layer.stride, padding=layer.kernel // 2, groups=groups)
            bn = keys["bn"]
            gamma = t(f"{bn}.weight") if f"{bn}.weight" in state_dict else None
            beta = t(f"{bn}.bias") if f"{bn}.bias" in state_dict else None
            x = F.batch_norm(x, t(f"{bn}.running_mean"), t(f"{bn}.running_var"), gamma, beta, False, 0.0, spec.bn_eps)
            x = acts[layer.act](x)
            if layer.role == "project" and spec.blocks[layer.block].residual:
                x = x + block_input
            if taps is not None:
                taps[layer.scope] = x.numpy().transpose(0, 2, 3, 1)
        return x.numpy()


def reference_logits(checkpoint: str, spec: NetSpec, layer_keys: dict, x_nhwc: np.ndarray) -> np.ndarray:
    """Load the checkpoint and run `forward` (a picklable entry point for a worker process)."""
    from amc_tf.core.checkpoint import load_state_dict

    return forward(spec, load_state_dict(checkpoint), layer_keys, x_nhwc)
