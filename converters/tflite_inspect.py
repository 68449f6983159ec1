"""Reading back what a .tflite holds, from a LiteRT interpreter: io types and scales, how
the weighted ops' filters are quantized, tensor dtypes, and how much of the work runs in
int8 kernels (report.json's `quantization` section; the int8 recipe's final check)."""

from __future__ import annotations

import numpy as np

# Ops that carry weights: their filter tensors are what the modes quantize.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _quant(details: dict) -> dict:
    q = details.get("quantization_parameters", {})
    scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    return {"scales": scales, "zero_points": zeros, "axis": int(q.get("quantized_dimension", 0))}


def io_details(interp) -> dict:
    """{"input": {...}, "output": {...}}: dtype, shape, and scale/zero point when quantized."""
    out = {}
    for role, details in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        q = _quant(details)
        entry = {"dtype": np.dtype(details["dtype"]).name, "shape": [int(d) for d in details["shape"]]}
        if q["scales"].size:
            entry["scale"] = float(q["scales"][0])
            entry["zero_point"] = int(q["zero_points"][0])
        out[role] = entry
    return out


def weight_quantization(interp) -> dict:
    """For each weighted op type: how many ops, their filters' dtype(s), and how many
    filters carry one scale per output channel ("per_channel") vs one scale ("per_tensor")."""
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    summary: dict[str, dict] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        filt = tensors[int(op["inputs"][1])]
        q = _quant(filt)
        row = summary.setdefault(op["op_name"], {"ops": 0, "filter_dtypes": [], "per_channel": 0, "per_tensor": 0})
        row["ops"] += 1
        dtype = np.dtype(filt["dtype"]).name
        if dtype not in row["filter_dtypes"]:
            row["filter_dtypes"].append(dtype)
        if q["scales"].size > 1:
            row["per_channel"] += 1
        elif q["scales"].size == 1:
            row["per_tensor"] += 1
    return dict(sorted(summary.items()))


def tensor_dtypes(interp) -> dict[str, int]:
    """Count of tensors by dtype (a full-integer model holds float32 only at float io)."""
    hist: dict[str, int] = {}
    for t in interp.get_tensor_details():
        name = np.dtype(t["dtype"]).name
        hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items()))


def _macs(op: dict, tensors: dict) -> int:
    """Multiply-accumulates of one CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (batch 1)."""
    filt = [int(d) for d in tensors[int(op["inputs"][1])]["shape"]]
    out = [int(d) for d in tensors[int(op["outputs"][0])]["shape"]]
    positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
    if op["op_name"] == "CONV_2D":  # filter [cout, kh, kw, cin]
        return positions * int(np.prod(filt))
    if op["op_name"] == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, channels]
        return positions * int(np.prod(filt))
    return int(np.prod(out[:-1])) * int(np.prod(filt))  # FULLY_CONNECTED: [cout, cin]


def int8_mac_share(interp) -> dict:
    """How much of the work runs in integer kernels: MACs of the weighted ops whose filter
    and input are both int8, against all weighted ops' MACs; the others listed by output
    tensor name with their filter and input dtypes."""
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    total = integer = 0
    others = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        macs = _macs(op, tensors)
        total += macs
        filt = np.dtype(tensors[int(op["inputs"][1])]["dtype"]).name
        inp = np.dtype(tensors[int(op["inputs"][0])]["dtype"]).name
        if filt == "int8" and inp == "int8":
            integer += macs
        else:
            reason = ("float model" if filt == inp == "float32" else
                      "kept wider than int8 by the converter (no int8 range or kernel for it)")
            others.append({"op": op["op_name"], "output": tensors[int(op["outputs"][0])]["name"],
                           "filter": filt, "input": inp, "macs": macs, "reason": reason})
    return {"int8_macs": integer, "total_macs": total, "share": round(integer / total, 6) if total else 0.0,
            "not_int8": others}
