"""Write a built SlimMobileNet as a SavedModel, a name-based TF-slim checkpoint and a .tflite."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from amc_tf.core.quiet import silenced
from amc_tf.core.tflite_io import load_interpreter
from amc_tf.converters.tf_builder import SlimMobileNet


def write_saved_model(model: SlimMobileNet, directory: str | os.PathLike) -> None:
    """SavedModel with a `serving_default` signature: input `input` [N,H,W,3] -> `logits`."""
    serve = model.serving_function(batch=None)
    tf.saved_model.save(model, os.fspath(directory), signatures={"serving_default": serve.get_concrete_function()})


def write_slim_checkpoint(model: SlimMobileNet, prefix: str | os.PathLike,
                          bn_eps: float | None = None) -> tuple[list[str], dict | None]:
    """A name-based (TF1-style) checkpoint: variable names and shapes exactly as TF-slim's.

    Readable with `tf.train.load_checkpoint(prefix)` and restorable by a slim graph's Saver.
    With `bn_eps` (e.g. slim's default 1e-3), the BatchNorm statistics are set for that
    epsilon (converters/slim_bn_eps.py); returns the names and that fold's summary (or None).
    """
    from amc_tf.converters.slim_bn_eps import fold_bn_eps

    prefix = os.fspath(prefix)
    names = [v.name.split(":")[0] for v in model.slim_variables]
    values = {n: v.numpy() for n, v in zip(names, model.slim_variables)}
    folded = None
    if bn_eps is not None:
        values, folded = fold_bn_eps(values, model.spec.bn_eps, bn_eps)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(values[n]) for n in names],
    )
    base = os.path.basename(prefix)
    with open(os.path.join(os.path.dirname(prefix), "checkpoint"), "w") as fh:
        fh.write(f'model_checkpoint_path: "{base}"\nall_model_checkpoint_paths: "{base}"\n')
    return names, folded


def tflite_bytes(model: SlimMobileNet) -> bytes:
    """fp32 TFLite flatbuffer with a fixed [1,H,W,3] float32 input and logits output."""
    # Weights traced in as constants, so the converter neither writes a temporary SavedModel
    # nor runs its variable-freezing pass: several times faster, the same flatbuffer ops.
    return tflite_from_concrete(model.serving_function(batch=1, frozen=True).get_concrete_function(),
                                already_frozen=True)


def tflite_from_concrete(concrete, configure=None, already_frozen: bool = False) -> bytes:
    """A TFLite flatbuffer from a concrete function (weights traced in as constants);
    `configure(converter)` may set quantization options before converting. `already_frozen`
    (SlimMobileNet's fp32 graph only, where tests/test_exports.py proves the flatbuffer
    byte-identical) skips the converter's freeze pass."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # it warns that this (the fast) path wants a trackable object
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        if already_frozen:
            _skip_freezing_when_frozen(converter, concrete)
        if configure is not None:
            configure(converter)
        with silenced():  # the converter's C++ `fully_quantize: 0, ...` notice
            return converter.convert()
    finally:
        absl_logger.setLevel(level)


def _skip_freezing_when_frozen(converter, concrete) -> None:
    """The converter first "freezes" its function: it rewrites the whole graph to turn captured
    variables into constants and inline nested functions. Ours has its weights traced in as
    constants already (no resource inputs) and no nested functions, so that rewrite is a copy of
    the graph with nothing changed; it is skipped and the graph handed over as it is (the
    flatbuffer is byte-identical: tests/test_exports.py). Any other graph takes the full path."""
    inputs = list(concrete.inputs)
    if any(t.dtype == tf.resource for t in inputs) or not hasattr(converter, "_freeze_concrete_function"):
        return
    graph_def = concrete.graph.as_graph_def()
    if graph_def.library.function:  # nested functions: the pass also inlines them, so it is needed
        return

    def already_frozen():
        return graph_def, inputs, list(concrete.outputs), concrete

    converter._freeze_concrete_function = already_frozen  # noqa: SLF001 - see the docstring


def write_tflite(model: SlimMobileNet, path: str | os.PathLike) -> int:
    data = tflite_bytes(model)
    Path(path).write_bytes(data)
    return len(data)


def tflite_op_histogram(path_or_bytes) -> dict[str, int]:
    """Count of each op type in a .tflite (delegate nodes excluded)."""
    interp = load_interpreter(path_or_bytes, delegates=False)
    hist: dict[str, int] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        name = op["op_name"]
        if name != "DELEGATE":
            hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items()))


def run_tflite(path_or_bytes, batch: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Run a batch through a batch-1 .tflite, one sample at a time."""
    interp = load_interpreter(path_or_bytes, threads=threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    results = []
    for sample in batch:
        interp.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(results)
