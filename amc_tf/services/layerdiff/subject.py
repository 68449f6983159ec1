"""What `amc-tf diff` compares: a checkpoint or a conversion OUTDIR, opened as a `Subject`
that can run in up to three runtimes (PyTorch, TF, TFLite), and the choice of reference.

* a checkpoint: PyTorch on its own tensors, the TF graph built from it, and the .tflite the
  converter would write (built in memory, the same bytes `convert` writes);
* an OUTDIR: its own model.tflite (whatever it holds: fp32, fp16, int8), the TF graph rebuilt
  from its slim checkpoint and report.json, and PyTorch when the converted checkpoint is still
  where report.json says and unchanged;
* `against` another OUTDIR (or a .tflite file): the two .tflite models layer by layer, e.g. an
  int8 model against its fp32 twin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.services.layerdiff.metrics import Taps, compare
from amc_tf.core.netspec import Network

RUNTIMES = ("torch", "tf", "tflite")
Progress = Callable[[str], None]


@dataclass
class Subject:
    label: str
    network: Network
    tflite: object = None  # a Path to a .tflite, its bytes, or None (built on demand)
    state_dict: dict | None = None  # PyTorch layout, for the torch runtime
    torch_missing: str | None = None  # why the torch runtime is unavailable
    _model: object = field(default=None, repr=False)
    _op_names: dict | None = field(default=None, repr=False)

    @property
    def model(self):
        if self._model is None:
            from amc_tf.converters.tf_builder import build

            self._model = build(self.network)
        return self._model

    @property
    def op_names(self) -> dict:
        if self._op_names is None:
            from amc_tf.services.layerdiff.taps import tap_op_names

            self._op_names = tap_op_names(self.model)
        return self._op_names

    def runtimes(self) -> list[str]:
        return [r for r in RUNTIMES if r != "torch" or self.torch_missing is None]

    def taps(self, runtime: str, x: np.ndarray, label: str | None = None) -> Taps:
        from amc_tf.services.layerdiff import taps

        label = label or runtime
        if runtime == "torch":
            if self.torch_missing:
                raise AmcError(f"cannot run PyTorch for {self.label}: {self.torch_missing}")
            return taps.torch_taps(self.network, self.state_dict, x, label)
        if runtime == "tf":
            return taps.tf_taps(self.model, x, self.op_names, label)
        if self.tflite is None:
            from amc_tf.converters.exporters import tflite_bytes

            self.tflite = tflite_bytes(self.model)
        return taps.tflite_taps(self.tflite, self.network.spec, self.op_names, x, label)


def _torch_missing() -> str | None:
    from amc_tf.core.torch_reference import torch_available

    return None if torch_available() else "torch is not installed"


def open_checkpoint(path: str, *, activation=None, bn_eps: float = 1e-5, input_size: int = 224) -> Subject:
    from amc_tf.converters.frontends import load

    network, sd = load(path, activation=activation, bn_eps=bn_eps, input_size=input_size)
    missing = _torch_missing()
    if missing is None and network.source.get("frontend") != "pytorch":
        missing = f"{network.source.get('frontend')} input is not a PyTorch checkpoint"
    return Subject(path, network, None, sd, missing)


def open_outdir(path: str) -> Subject:
    from amc_tf.core.outdir import read_outdir

    out = read_outdir(path)
    network = out.network()
    subject = Subject(path, network, out.tflite)
    subject.torch_missing = _torch_missing()
    src = None
    if subject.torch_missing is None:
        src, subject.torch_missing = out.pytorch_checkpoint()
    if subject.torch_missing is None:
        from amc_tf.converters.frontends import load

        spec = network.spec
        ckpt_network, sd = load(src, activation=spec.activation, bn_eps=spec.bn_eps, input_size=spec.input_size)
        if ckpt_network.spec != spec:
            subject.torch_missing = f"{src} no longer describes the converted network"
        else:
            network.source["layer_keys"] = ckpt_network.source["layer_keys"]
            subject.state_dict = sd
    return subject


def open_subject(path: str, **checkpoint_options) -> Subject:
    if not os.path.exists(path):
        raise AmcError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        return open_outdir(path)
    return open_checkpoint(path, **checkpoint_options)


def _check_same_network(a: Subject, b: Subject) -> None:
    sa, sb = a.network.spec, b.network.spec
    la = [(x.scope, x.cin, x.cout, x.stride) for x in sa.layers()]
    lb = [(x.scope, x.cin, x.cout, x.stride) for x in sb.layers()]
    if la != lb or sa.input_size != sb.input_size:
        diff = next(((x, y) for x, y in zip(la, lb) if x != y), None)
        what = (f"{diff[0][0]} is {diff[0][1]}->{diff[0][2]} in one, {diff[1][1]}->{diff[1][2]} in the other"
                if diff else f"input sizes {sa.input_size} and {sb.input_size}" if sa.input_size != sb.input_size
                else f"{len(la)} and {len(lb)} layers")
        raise AmcError(f"{a.label} and {b.label} are different networks: {what}")


def _short_label(path: str, other: str) -> str:
    a, b = Path(path).name or path, Path(other).name or other
    return f"tflite:{a if a != b else path}"


def run_diff(subject: Subject, against: str | None, x: np.ndarray, tolerance: float,
             progress: Progress = lambda msg: None) -> dict:
    """Compare the subject's runtimes (or its .tflite with another conversion's) layer by layer."""
    spec = subject.network.spec
    if against is None or against in RUNTIMES:
        reference = against or ("torch" if subject.torch_missing is None else "tf")
        runtimes = subject.runtimes()
        if reference not in runtimes:
            raise AmcError(f"cannot use torch as the reference for {subject.label}: {subject.torch_missing}")
        progress(f"running {reference} (reference)")
        ref_taps = subject.taps(reference, x)
        pairs = []
        for runtime in runtimes:
            if runtime != reference:
                progress(f"running {runtime}")
                pairs.append((ref_taps, subject.taps(runtime, x)))
        skipped = {"torch": subject.torch_missing} if subject.torch_missing else {}
    else:
        other = _open_against(against, subject)
        _check_same_network(subject, other)
        progress(f"running {against} (reference)")
        ref_taps = other.taps("tflite", x, _short_label(against, subject.label))
        progress(f"running {subject.label}")
        pairs = [(ref_taps, subject.taps("tflite", x, _short_label(subject.label, against)))]
        skipped = {}
    comparisons = [compare(spec, ref, cand, tolerance) for ref, cand in pairs]
    return {
        "subject": subject.label,
        "network": {"family": spec.family, "channels": spec.channels(), "input_size": spec.input_size},
        "reference": ref_taps.runtime,
        "inputs": len(x),
        "tolerance": tolerance,
        "skipped": skipped,
        "not_compared": dict(skipped),  # a pass without one of the runtimes says so (also in the result line)
        "comparisons": comparisons,
        "passed": all(c["first_over"] is None for c in comparisons),
    }


def _open_against(against: str, subject: Subject) -> Subject:
    if not os.path.exists(against):
        raise AmcError(f"--against {against}: not torch, tf, tflite, a conversion OUTDIR or a .tflite file")
    if os.path.isdir(against):
        return open_outdir(against)
    if not against.endswith(".tflite"):
        raise AmcError(f"--against {against}: a file to compare with must be a .tflite")
    # a bare .tflite of the same network: it takes the subject's description (checked by the tensor map)
    return Subject(against, subject.network, Path(against), None, "a bare .tflite has no PyTorch source",
                   subject._model, subject._op_names)


def random_inputs(spec, n: int, seed: int = 0) -> np.ndarray:
    """Normalised-image-like inputs: standard normal NHWC float32 (the self-check's kind)."""
    s = spec.input_size
    return np.random.default_rng(seed).standard_normal((n, s, s, spec.in_ch)).astype(np.float32)
