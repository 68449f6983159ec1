"""Multiply-adds and parameter counts of a NetSpec, layer by layer.

MACs count every conv (k*k*Cin/groups*Cout*Hout*Wout) and the classifier (Cin*Cout); BN,
activations, pooling and residual adds are not counted (as in the AMC paper). Params are
PyTorch's trainable parameters: conv and linear weights and biases plus BN weight and bias
(running statistics excluded).
"""

from __future__ import annotations

from amc_tf.core.netspec import NetSpec


def layer_table(spec: NetSpec) -> list[dict]:
    rows = []
    for layer, size in zip(spec.layers(), spec.spatial_sizes()):
        k2 = layer.kernel * layer.kernel
        if layer.role == "logits":
            macs = layer.cin * layer.cout
            params = layer.cin * layer.cout + layer.cout
        elif layer.depthwise:
            macs = k2 * layer.cout * size * size
            params = k2 * layer.cout + 2 * layer.cout
        else:
            macs = k2 * layer.cin * layer.cout * size * size
            params = k2 * layer.cin * layer.cout + 2 * layer.cout
        rows.append({
            "name": layer.scope,
            "role": layer.role,
            "cin": layer.cin,
            "cout": layer.cout,
            "kernel": layer.kernel,
            "stride": layer.stride,
            "out_size": size,
            "macs": macs,
            "params": params,
        })
    return rows


def count(spec: NetSpec) -> dict:
    rows = layer_table(spec)
    return {"macs": sum(r["macs"] for r in rows), "params": sum(r["params"] for r in rows), "layers": rows}
