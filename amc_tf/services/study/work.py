"""The study's tasks, as run inside a worker (an embedded pool process or a Ray worker).

Every task takes plain data (file bytes travel with it, so a worker on another machine needs
no copy of the checkpoints) and returns plain data; each reuses a service: the conversion
pipeline, evaluation, the local or adb benchmark. `run_task` never raises for a failure of
the task itself: it returns {"status": "error", "error": one line}, so Ray retries only
lost workers and nodes, never bad input.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import tempfile
import time

import numpy as np


def node_name() -> str:
    """The machine (embedded) or the Ray node (its id, after the host name) doing the work."""
    host = socket.gethostname()
    node = os.environ.get("AMC_TF_STUDY_NODE")
    return f"{host}/{node}" if node else host


def init_worker(parent_pid: int | None = None) -> None:
    """Once per worker process: SIGINT ignored, death with the study, TF's start-up logs hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what an interrupt ends
    if parent_pid is not None:
        from amc_tf.core.worker import _die_with_parent

        _die_with_parent(parent_pid)
    from amc_tf.core import quiet

    quiet.install(False)


_tf_ready = False


def _tensorflow_once() -> None:
    """TensorFlow imported at a worker's first conversion (an evaluation of a .tflite needs none),
    then kept: one thread, as every worker gets one CPU."""
    global _tf_ready
    if _tf_ready:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    _tf_ready = True


def run_task(task: dict, blob: bytes | None = None) -> dict:
    """Run one task; {"status": "ok", "result", "node", "seconds"} or {"status": "error", "error", ...}."""
    t0 = time.perf_counter()
    try:
        fn = {"convert": _convert, "eval": _eval, "latency": _latency}[task["kind"]]
        out = {"status": "ok", "result": fn(task, blob)}
    except Exception as exc:  # noqa: BLE001 - the task failed: say why in one line, the study goes on
        from amc_tf.core.errors import AmcError

        why = str(exc) if isinstance(exc, AmcError) else f"{type(exc).__name__}: {exc}"
        out = {"status": "error", "error": " ".join(why.split()) or type(exc).__name__,
               # bad input fails the same way every time: the study caches it (by content) like a result
               "cacheable": isinstance(exc, AmcError) and exc.exit_code == 2}
    out["node"] = node_name()
    out["pid"] = os.getpid()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _tar(folder: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def _convert(task: dict, blob: bytes) -> dict:
    """Convert the checkpoint (its bytes in `blob`) with the task's options; the OUTDIR comes back as a tar."""
    from amc_tf.converters.convert import ConvertOptions, convert
    from amc_tf.core import torch_reference

    _tensorflow_once()
    if torch_reference.torch_available():  # the self-check's reference runs in this worker: one thread, as TF
        import torch

        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="amc-tf-study-") as tmp:
        src = os.path.join(tmp, task["filename"])
        with open(src, "wb") as fh:
            fh.write(blob)
        outdir = os.path.join(tmp, "out")
        try:
            report = convert(src, outdir, ConvertOptions(**task["options"], reference_in_process=True))
        except Exception as exc:  # name the user's file, not the worker's copy of it
            if task.get("origin"):
                exc.args = tuple(a.replace(src, task["origin"]) if isinstance(a, str) else a for a in exc.args)
            raise
        return {"report": report, "tar": _tar(outdir)}


def _eval(task: dict, blob: bytes) -> dict:
    """top-1/top-5 of one image chunk through amc_tf.services.evaluate (the `eval` command's loop),
    with each image's top-1 class (-1: unreadable) for the exact merge and the agreement."""
    from amc_tf.services.evaluate import evaluate, open_model

    with tempfile.TemporaryDirectory(prefix="amc-tf-study-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as fh:
            fh.write(blob)
        model = open_model(path, "tflite", threads=1)
        result, logits = evaluate(model, task["dataset"], mode="pil", batch_size=task.get("batch_size", 50),
                                  labels_offset=task.get("labels_offset"))
    finite = np.isfinite(logits).all(axis=1)
    top1 = np.where(finite, np.nan_to_num(logits, nan=-np.inf).argmax(axis=1), -1)
    return {k: result[k] for k in ("images", "evaluated", "skipped", "skipped_files", "correct_top1", "correct_top5",
                                   "labels_offset", "seconds")} | {"top1_classes": top1.astype(int).tolist()}


def _latency(task: dict, blob: bytes) -> dict:
    """The Pixel-1 protocol on this machine's CPU (`local`) or a phone (`adb`), via the bench services."""
    from pathlib import Path

    from amc_tf.benchmarks.protocol import Protocol
    from amc_tf.benchmarks.summary import summarize_dir

    protocol = Protocol(**task["protocol"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="amc-tf-study-") as tmp:
        model = Path(tmp) / task["filename"]
        model.write_bytes(blob)
        logdir = Path(tmp) / "logs"
        logdir.mkdir()
        name = task["log_name"]
        if task["target"] == "local":
            from amc_tf.benchmarks.local import bench_local

            bench_local(model, name, protocol, logdir)
        else:
            from amc_tf.benchmarks.android import bench_android

            bench_android([(name, model)], protocol, logdir, [task["serial"]], Path(task["binary"]),
                          adb=task.get("adb"))
        (summary,) = summarize_dir(logdir, names=[name])
        logs = {p.name: p.read_text(errors="replace") for p in sorted(logdir.iterdir()) if p.is_file()}
    if not summary.complete:
        from amc_tf.core.errors import RunFailedError

        raise RunFailedError(f"latency: {'; '.join(summary.problems) or 'no run finished'}")
    return {"latency_ms": summary.mean_ms, "std_ms": summary.std_ms, "runs": summary.n_ok, "logs": logs,
            "load_before": load, "serial": task.get("serial")}
