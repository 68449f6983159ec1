"""Layer-by-layer comparison of two runtimes' intermediate tensors (numpy only).

Every runtime's tensors are keyed by the network description's tap points: each
`NetSpec.layers()` scope (the layer's output after BatchNorm, activation and, for a
residual V2 block's project conv, the residual add) plus the global average pool
`<Scope>/Logits/AvgPool`, the key `tf_builder` and `torch_reference` both fill. Collecting
the tensors is the runtimes' business (amc_tf/services/layerdiff/taps.py); this module only matches and
measures them.

Figures per layer, over the whole batch:
* max / mean abs error: |candidate - reference|;
* relative error: max abs error / max |reference| (the converter self-check's criterion,
  applied per layer): the figure `tolerance` is compared with;
* cosine: the smallest, over the samples, cosine similarity of the flattened tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from amc_tf.core.netspec import NetSpec


@dataclass(frozen=True)
class TapPoint:
    key: str  # the TF-slim scope of the layer's output
    role: str  # stem | depthwise | pointwise | expand | project | last | pool | logits


def pool_key(spec: NetSpec) -> str:
    return f"{spec.scope}/Logits/AvgPool"


def tap_points(spec: NetSpec) -> tuple[TapPoint, ...]:
    """The rows of a layer diff, in execution order: every layer, and the pooling before the logits."""
    points = []
    for layer in spec.layers():
        if layer.role == "logits":
            points.append(TapPoint(pool_key(spec), "pool"))
        points.append(TapPoint(layer.scope, layer.role))
    return tuple(points)


@dataclass
class Taps:
    """One runtime's per-layer outputs (NHWC, float) and what each is called in that runtime."""

    runtime: str  # "torch", "tf", "tflite" or a label such as "tflite[int8 OUTDIR]"
    tensors: dict[str, np.ndarray]
    names: dict[str, str] = field(default_factory=dict)


def layer_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict:
    if reference.shape != candidate.shape:
        return {"shape": list(candidate.shape), "reference_shape": list(reference.shape), "max_abs": float("inf"),
                "mean_abs": float("inf"), "rel": float("inf"), "cosine": float("nan")}
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    got = candidate.astype(np.float64).reshape(len(candidate), -1)
    diff = np.abs(got - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    if scale > 0:
        rel = max_abs / scale
    else:
        rel = 0.0 if max_abs == 0 else float("inf")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    dots = np.sum(ref * got, axis=1)
    # two all-zero tensors (e.g. a channel set killed by ReLU) agree perfectly
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(got, axis=1) == 0)
    cos = np.where(both_zero, 1.0, dots / np.where(norms > 0, norms, 1.0))
    cos = np.where(~both_zero & (norms == 0), 0.0, cos)
    return {"shape": list(candidate.shape), "max_abs": max_abs, "mean_abs": float(diff.mean()) if diff.size else 0.0,
            "rel": rel, "cosine": float(cos.min())}


def _over(metrics: dict, tolerance: float) -> bool:
    rel = metrics["rel"]
    return not (rel <= tolerance)  # NaN counts as over


def compare(spec: NetSpec, reference: Taps, candidate: Taps, tolerance: float) -> dict:
    """One row per tap point: both runtimes' names, the candidate's shape and the error figures;
    `first_over` is the first layer whose relative error exceeds `tolerance` (None if none)."""
    rows, first_over = [], None
    for i, point in enumerate(tap_points(spec)):
        for taps in (reference, candidate):
            if point.key not in taps.tensors:
                raise KeyError(f"{taps.runtime} produced no tensor for {point.key}")
        m = layer_metrics(reference.tensors[point.key], candidate.tensors[point.key])
        over = _over(m, tolerance)
        if over and first_over is None:
            first_over = point.key
        rows.append({"index": i, "layer": point.key, "role": point.role,
                     "names": {reference.runtime: reference.names.get(point.key, point.key),
                               candidate.runtime: candidate.names.get(point.key, point.key)},
                     **m, "over": over})
    return {"reference": reference.runtime, "candidate": candidate.runtime, "tolerance": tolerance,
            "first_over": first_over, "layers_over": sum(r["over"] for r in rows), "layers": rows}


def _short(name: str, width: int, scope: str) -> str:
    """The first of ';'-joined op names, without the network's scope, cut to `width`; control
    characters (a model file's names are untrusted) made visible (amc_tf.core.textsafe)."""
    from amc_tf.core.textsafe import safe

    name = safe(name.split(";")[0].replace(f"{scope}/", ""))
    return name if len(name) <= width else name[:width - 1] + "…"


def _layer_label(key: str, spec_scope: str) -> str:
    return key[len(spec_scope) + 1:] if key.startswith(spec_scope + "/") else key


def format_table(result: dict, spec: NetSpec) -> str:
    """A fixed-width table of one comparison; the first layer over tolerance is marked '<-- first'."""
    ref, cand = result["reference"], result["candidate"]
    name_cols = [r for r in (ref, cand) if r != "tf"]  # the TF name is the layer's scope
    head = f"{'#':>3} {'layer (TF scope)':<30}"
    for r in name_cols:
        head += f" {r + ' name':<26}"
    head += f" {'shape':<17} {'max|err|':>9} {'mean|err|':>9} {'rel err':>9} {'cosine':>10}"
    lines = [f"{cand} vs {ref} (reference), tolerance {result['tolerance']:.1e} on rel err", head]
    for row in result["layers"]:
        line = f"{row['index']:>3} {_layer_label(row['layer'], spec.scope):<30}"
        for r in name_cols:
            line += f" {_short(row['names'][r], 26, spec.scope):<26}"
        shape = "x".join(str(s) for s in row["shape"][1:]) or "-"
        line += (f" {shape:<17} {row['max_abs']:>9.2e} {row['mean_abs']:>9.2e} {row['rel']:>9.2e}"
                 f" {row['cosine']:>10.7f}")
        if row["layer"] == result["first_over"]:
            line += "  <-- first over tolerance"
        elif row["over"]:
            line += "  *"
        lines.append(line)
    if result["first_over"] is None:
        lines.append(f"all {len(result['layers'])} layers within tolerance")
    else:
        lines.append(f"{result['layers_over']} of {len(result['layers'])} layers over tolerance; "
                     f"first: {result['first_over']}")
    return "\n".join(lines)
