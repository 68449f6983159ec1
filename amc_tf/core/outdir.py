"""Read a conversion OUTDIR back. Every tool that takes an OUTDIR (eval, parity, diff,
compare) finds its files through `OutDir`: the deployable model.tflite, its fp32 twin when
quantized, the SavedModel, the source checkpoint if it is still there and unchanged, and the
Network itself (report.json's network description + the slim checkpoint's weights), so the
graph can be rebuilt without the original checkpoint."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.core.fileutil import sha256_file
from amc_tf.core.netspec import Network, NetSpec


@dataclass
class OutDir:
    path: Path
    report: dict

    @property
    def tflite(self) -> Path:
        """The deployable model.tflite (quantized when the conversion was)."""
        return self.path / self.report.get("artifacts", {}).get("tflite", {}).get("path", "model.tflite")

    @property
    def quantization_mode(self) -> str:
        return self.report.get("quantization", {}).get("mode", "fp32")

    @property
    def tflite_fp32(self) -> Path:
        """The fp32 .tflite: model_fp32.tflite beside a quantized model, else model.tflite itself."""
        fp32 = self.report.get("artifacts", {}).get("tflite_fp32")
        return self.path / fp32["path"] if fp32 else self.tflite

    @property
    def saved_model(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("saved_model", {}).get("path", "saved_model")

    @property
    def slim_prefix(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("slim_checkpoint", {}).get("prefix", "slim/model.ckpt")

    @property
    def spec(self) -> NetSpec:
        return NetSpec.from_dict(self.report["network"])

    @property
    def source_file(self) -> str | None:
        """The converted checkpoint, if it is still where it was converted from. report.json
        records the resolved path; an older report's relative path is tried as typed (from the
        current folder) and from the OUTDIR's parent folder."""
        src = self.report.get("source", {}).get("file")
        if not src:
            return None
        candidates = [src] if os.path.isabs(src) else [src, os.path.join(os.fspath(self.path.parent), src)]
        return next((c for c in candidates if os.path.isfile(c)), None)

    def pytorch_checkpoint(self) -> tuple[str | None, str | None]:
        """(the PyTorch checkpoint this OUTDIR was converted from, None) when it is still at the
        recorded path with the recorded sha256; else (None, why not)."""
        source = self.report.get("source", {})
        if source.get("frontend") != "pytorch":
            return None, f"{source.get('frontend')} input is not a PyTorch checkpoint"
        return self.source_checkpoint()

    def source_checkpoint(self) -> tuple[str | None, str | None]:
        """(the file this OUTDIR was converted from, PyTorch or ONNX, None) when it is still at
        the recorded path with the recorded sha256; else (None, why not)."""
        source = self.report.get("source", {})
        src = self.source_file
        if src is None:
            return None, "the converted checkpoint is no longer at the path report.json records"
        if source.get("sha256") not in (None, sha256_file(src)):
            return None, f"{src} changed since the conversion"
        return src, None

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
    return (Path(path) / "report.json").is_file()


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
    if not out.tflite_fp32.is_file():
        raise AmcError(f"{path}: quantized, but its fp32 model {out.tflite_fp32.name} is missing")
    return out
