"""Per-layer outputs from each runtime, keyed by the network description's tap points.

* TF: `SlimMobileNet.forward(x, taps=...)`, the builder's own per-layer outputs.
* PyTorch: `amc_tf.core.torch_reference.forward(..., taps=...)` on the checkpoint's own tensors.
* TFLite: the LiteRT interpreter with every intermediate tensor preserved. A layer's tensor
  is found through the TF graph, not by guessing: tracing the builder's forward pass gives,
  for each tap point, the name of the graph op that produces it (e.g.
  `MobilenetV2/expanded_conv_2/add`); the TFLite converter names each op's output tensor
  after the TF ops fused into it, joined by ';', so the layer's tensor is the op output whose
  name holds that op name. The logits are the model's output. int8 tensors are dequantized
  with their scale and zero point.
"""

from __future__ import annotations

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.services.layerdiff.metrics import Taps, pool_key, tap_points
from amc_tf.core.netspec import Network, NetSpec
from amc_tf.core.tflite_io import dequantize, quantize


def tap_op_names(model) -> dict[str, str]:
    """{tap point: name of the TF op producing it} from a trace of the (frozen) forward pass,
    the graph the TFLite converter is given."""
    import tensorflow as tf

    taps: dict = {}
    fn = tf.function(lambda x: model.forward(x, taps=taps, frozen=True), autograph=False)
    fn.get_concrete_function(model.input_spec(1))
    return {key: t.name.split(":")[0] for key, t in taps.items()}


def tf_taps(model, x: np.ndarray, op_names: dict[str, str], label: str = "tf") -> Taps:
    import tensorflow as tf

    taps: dict = {}
    model.forward(tf.constant(x, tf.float32), taps=taps)
    return Taps(label, {k: v.numpy() for k, v in taps.items()}, dict(op_names))


def torch_names(network: Network) -> dict[str, str]:
    """The PyTorch module behind each tap point (its conv's module path in the state dict)."""
    keys = network.source.get("layer_keys", {})
    names = {scope: k["weight"].rsplit(".", 1)[0] for scope, k in keys.items()}
    names[pool_key(network.spec)] = "mean over H,W"
    return names


def torch_taps(network: Network, state_dict: dict, x: np.ndarray, label: str = "torch") -> Taps:
    from amc_tf.core.torch_reference import forward

    taps: dict = {}
    forward(network.spec, state_dict, network.source["layer_keys"], x, taps=taps)
    return Taps(label, taps, torch_names(network))


def tflite_tensor_map(interp, spec: NetSpec, op_names: dict[str, str]) -> dict[str, dict]:
    """{tap point: the interpreter's tensor detail} for every tap point."""
    details = {d["index"]: d for d in interp.get_tensor_details()}
    produced = interp.op_outputs()  # op output tensors in execution order
    by_op_name: dict[str, int] = {}
    for index in produced:  # later producers win: a layer's tensor is the last one carrying its op
        for part in details[index]["name"].split(";"):
            by_op_name[part] = index
    logits = spec.layers()[-1].scope
    out: dict[str, dict] = {}
    for point in tap_points(spec):
        if point.key == logits:
            out[point.key] = details[interp.get_output_details()[0]["index"]]
            continue
        index = by_op_name.get(op_names[point.key])
        if index is None:
            raise AmcError(f"the .tflite has no tensor for {point.key} (TF op {op_names[point.key]}): "
                           "was it converted from this network by amc-tf?")
        out[point.key] = details[index]
    return out


def tflite_taps(path_or_bytes, spec: NetSpec, op_names: dict[str, str], x: np.ndarray, label: str = "tflite") -> Taps:
    """Run each sample through a batch-1 .tflite with every tensor preserved, in a LiteRT child
    process (a crafted .tflite may crash LiteRT). Delegates are off: XNNPACK runs the whole graph
    as one node and keeps no intermediates."""
    from amc_tf.core.litert_worker import IsolatedInterpreter
    from amc_tf.core.tflite_io import check_classifier

    with IsolatedInterpreter(path_or_bytes, delegates=False, preserve_all_tensors=True) as interp:
        check_classifier(interp.where, interp.get_input_details(), interp.get_output_details())
        inp = interp.get_input_details()[0]
        if tuple(inp["shape"][1:]) != tuple(x.shape[1:]):
            raise AmcError(f"{interp.where} takes input {list(inp['shape'])}, the inputs are {list(x.shape[1:])}")
        tensors = tflite_tensor_map(interp, spec, op_names)
        keys = list(tensors)
        arrays = interp.run(quantize(x, inp), [int(tensors[k]["index"]) for k in keys])
    collected = {k: np.stack([dequantize(a[i], tensors[k])[0] for i in range(len(x))]) for k, a in zip(keys, arrays)}
    names = {k: f"#{d['index']} {d['name']}" for k, d in tensors.items()}
    return Taps(label, collected, names)
