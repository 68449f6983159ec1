"""Pick the frontend for an input file and return (Network, original state dict or None).

The state dict (PyTorch layout) is returned beside the Network so the self-check can run
PyTorch on the checkpoint's own tensors.
"""

from __future__ import annotations

import os

from amc_tf.errors import CheckpointError
from amc_tf.netspec import Network


def load(path: str | os.PathLike, *, activation: str | None = None, bn_eps: float = 1e-5,
         input_size: int = 224) -> tuple[Network, dict | None]:
    from amc_tf.checkpoint import load_state_dict
    from converters.pytorch_frontend import infer_network

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    sd = load_state_dict(path)
    network = infer_network(sd, activation=activation, bn_eps=bn_eps, input_size=input_size,
                            source={"file": path, "frontend": "pytorch", "tensors": len(sd)})
    return network, sd
