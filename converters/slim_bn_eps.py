"""A slim checkpoint whose BatchNorm statistics assume another epsilon.

The converted network normalises with its source's epsilon (PyTorch: 1e-5); TF-slim's
`mobilenet_v1_arg_scope` and `slim.batch_norm` default to 1e-3. slim computes
`gamma * (x - mean) / sqrt(var + eps) + beta`, so a checkpoint restored under another
epsilon than the one its statistics were made for is off by `sqrt((var + eps_slim) /
(var + eps_source))` per channel (rel. error ~1e-3 on real models). This module rewrites the
stored statistics so that slim's epsilon gives the source's output exactly:

* `moving_variance' = var + eps_source - eps_slim` where that is >= 0 (slim then divides by
  `sqrt(var + eps_source)`, as the source did);
* elsewhere (a variance smaller than the epsilons' difference: negative variances are not
  stored), the variance is kept and the difference goes into `gamma' = gamma *
  sqrt((var + eps_slim) / (var + eps_source))`.

Computed in float64, stored as float32. Nothing else in the checkpoint changes, and the
other exports (SavedModel, TFLite) keep the source's epsilon.
"""

from __future__ import annotations

import numpy as np

SUFFIX = "/BatchNorm/moving_variance"


def fold_bn_eps(values: dict[str, np.ndarray], eps_source: float, eps_slim: float) -> tuple[dict[str, np.ndarray], dict]:
    """`values` (slim name -> array) with every BatchNorm's statistics set for `eps_slim`, and a
    summary: {"from", "to", "layers", "variance_channels", "gamma_channels"}."""
    out = dict(values)
    n_var = n_gamma = layers = 0
    for name in values:
        if not name.endswith(SUFFIX):
            continue
        scope = name[: -len("moving_variance")]
        gamma_name = scope + "gamma"
        var = np.asarray(values[name], np.float64)
        target = var + float(eps_source)  # what the source divides by, squared
        new_var = target - float(eps_slim)
        by_var = new_var >= 0
        if not by_var.all() and gamma_name not in values:
            raise ValueError(f"{scope.rstrip('/')} has no gamma to take up the epsilon difference for "
                             f"{int((~by_var).sum())} channel(s) with a variance below {eps_slim - eps_source:g}")
        out[name] = np.where(by_var, new_var, var).astype(np.float32)
        if not by_var.all():
            gamma = np.asarray(values[gamma_name], np.float64)
            out[gamma_name] = np.where(by_var, gamma, gamma * np.sqrt((var + float(eps_slim)) / target)).astype(np.float32)
        layers += 1
        n_var += int(by_var.sum())
        n_gamma += int((~by_var).sum())
    return out, {"from": float(eps_source), "to": float(eps_slim), "layers": layers, "variance_channels": n_var,
                 "gamma_channels": n_gamma}
