"""Read a conversion OUTDIR back: report.json's network description + the slim checkpoint's
weights give the same Network the conversion was built from, so tools that need the graph
itself (layer taps) can rebuild it without the original checkpoint."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc_tf.errors import AmcError
from amc_tf.netspec import Network, NetSpec


@dataclass
class OutDir:
    path: Path
    report: dict

    @property
    def tflite(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("tflite", {}).get("path", "model.tflite")

    @property
    def slim_prefix(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("slim_checkpoint", {}).get("prefix", "slim/model.ckpt")

    @property
    def spec(self) -> NetSpec:
        return NetSpec.from_dict(self.report["network"])

    @property
    def source_file(self) -> str | None:
        """The converted checkpoint, if it is still where it was converted from."""
        src = self.report.get("source", {}).get("file")
        return src if src and os.path.isfile(src) else None

    def network(self) -> Network:
        """The Network rebuilt from the slim checkpoint (needs TensorFlow)."""
        import tensorflow as tf

        spec = self.spec
        try:
            reader = tf.train.load_checkpoint(os.fspath(self.slim_prefix))
        except Exception as exc:  # NotFoundError, DataLossError...
            raise AmcError(f"{self.path}: cannot read the slim checkpoint {self.slim_prefix}: {exc}") from None
        weights = {}
        for name in spec.var_shapes():
            if not reader.has_tensor(name):
                raise AmcError(f"{self.path}: slim checkpoint lacks {name}")
            weights[name] = np.asarray(reader.get_tensor(name), np.float32)
        network = Network(spec, weights, {"file": os.fspath(self.path), "frontend": "outdir"})
        try:
            network.validate()
        except ValueError as exc:
            raise AmcError(f"{self.path}: report.json and the slim checkpoint disagree: {exc}") from None
        return network


def is_outdir(path: str | os.PathLike) -> bool:
    return Path(path).is_dir()


def read_outdir(path: str | os.PathLike) -> OutDir:
    path = Path(path)
    report_path = path / "report.json"
    if not report_path.is_file():
        raise AmcError(f"{path}: not a conversion output directory (no report.json)")
    try:
        report = json.loads(report_path.read_text())
        NetSpec.from_dict(report["network"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AmcError(f"{report_path}: unreadable report ({type(exc).__name__}: {exc})") from None
    out = OutDir(path, report)
    if not out.tflite.is_file():
        raise AmcError(f"{path}: no {out.tflite.name}")
    return out
