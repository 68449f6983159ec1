"""The study's scheduler: tasks to a backend (embedded pool or Ray), results to the cache,
figures merged into one record per model x precision.

Order: every conversion first; each conversion's evaluation chunks (and adb latency) as soon
as it is done; local latency last, one task at a time with nothing else of the study
running. A fully cached study starts no backend at all.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amc_tf.core.fileutil import sha256_file
from amc_tf.services.study import plan as P
from amc_tf.services.study.cache import Cache, place_tar, write_files
from amc_tf.services.study.discover import ModelEntry

PROTOCOL_DEFAULT = {}  # the Pixel-1 protocol (benchmarks.protocol.Protocol's defaults)


@dataclass
class Unit:
    """One model x precision: its tasks' results as they arrive."""

    model: ModelEntry
    precision: str
    outdir: Path
    sha256: str | None = None
    key: str | None = None
    conv_options: dict = field(default_factory=dict)
    convert: dict | None = None
    error: str | None = None
    shards: dict = field(default_factory=dict)  # chunk index -> result
    latency: dict | None = None
    nodes: dict = field(default_factory=dict)  # stage -> nodes
    seconds: dict = field(default_factory=dict)
    cached: dict = field(default_factory=dict)  # stage -> count from cache

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.precision}"

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why


class Progress:
    """What the scheduler tells its caller: tasks done of total (cached ones flagged), stage lines."""

    def __init__(self, tick: Callable[[int, int, int], None] | None = None, say: Callable[[str], None] | None = None):
        self._tick, self._say = tick, say
        self.done = self.total = self.cached = 0

    def add(self, n: int) -> None:
        self.total += n
        self.update()

    def finish(self, n: int = 1, cached: bool = False) -> None:
        self.done += n
        self.cached += n if cached else 0
        self.update()

    def drop(self, n: int) -> None:
        self.total -= n
        self.update()

    def update(self) -> None:
        if self._tick:
            self._tick(self.done, self.total, self.cached)

    def say(self, msg: str) -> None:
        if self._say:
            self._say(msg)


class Study:
    def __init__(self, models: list[ModelEntry], options: P.StudyOptions, studydir: Path, cache: Cache,
                 make_backend: Callable[[], object], progress: Progress):
        self.models, self.options, self.studydir, self.cache = models, options, Path(studydir), cache
        self._make_backend, self.progress = make_backend, progress
        self.backend = None
        self.pending: dict = {}  # handle -> (unit, stage, index, key)
        self.deferred: list = []  # local latency tasks, run last
        self.notes: list[str] = []
        self.images = None
        self.calibration = None
        self._blobs: dict[int, bytes] = {}
        self.lut = None
        self.backend_start_s = None  # None: every task came from the cache, no backend was started

    # -- setup ---------------------------------------------------------------------------
    def _units(self) -> list[Unit]:
        units = []
        hashes = {}
        for m in self.models:
            try:
                hashes[m.path] = sha256_file(m.path)
            except OSError as exc:
                hashes[m.path] = exc
        for m in self.models:
            for precision in self.options.precisions:
                u = Unit(m, precision, self.studydir / "models" / m.name / precision)
                if isinstance(hashes[m.path], OSError):
                    u.fail(f"{m.path}: cannot read: {hashes[m.path].strerror}")
                else:
                    u.sha256 = hashes[m.path]
                    u.conv_options = P.convert_options(self.options, precision, m.profile, self.calibration)
                    u.key = P.convert_key(u.sha256, precision, u.conv_options, self.calibration)
                units.append(u)
        return units

    def _backend(self):
        if self.backend is None:
            t0 = time.monotonic()
            self.backend = self._make_backend()
            self.backend_start_s = round(time.monotonic() - t0, 3)
            if self.options.latency.kind == "adb" and hasattr(self.backend, "check_resources"):
                self.backend.check_resources([f"adb:{s}" for s in self.options.latency.serials])
            self.progress.say(f"running on {self.backend.describe()}")
        return self.backend

    def _chunks(self) -> list[tuple[int, int]]:
        return self.images.chunks(self.options.chunk_size) if self.images is not None else []

    def _latency_tasks(self) -> int:
        return 1 if self.options.latency.kind in ("local", "adb") else 0

    # -- the run -------------------------------------------------------------------------
    def run(self) -> list[Unit]:
        opts = self.options
        self.images, self.calibration = P.select_images(opts)
        if self.images is not None and self.images.note:
            self.notes.append(self.images.note)
        if opts.latency.kind == "lut":
            from amc_tf.benchmarks.latency_lut import load_lut

            self.lut = load_lut(opts.latency.lut)
        units = self._units()
        per_unit = 1 + len(self._chunks()) + self._latency_tasks()
        self.progress.add(per_unit * len(units))
        try:
            for u in units:
                if u.error:
                    self.progress.drop(per_unit)
                    continue
                hit = self.cache.get(u.key)
                if hit is not None and "error" in hit:  # bad input, already tried
                    self.progress.finish(cached=True)
                    u.cached["convert"] = 1
                    u.fail(hit["error"])
                    self.progress.drop(per_unit - 1)
                elif hit is not None and self._artifacts_ok(u, hit):
                    self.progress.finish(cached=True)
                    u.cached["convert"] = 1
                    self._converted(u, hit)
                else:
                    self._submit(u, "convert", 0, u.key, {"kind": "convert", "options": u.conv_options,
                                                         "filename": os.path.basename(u.model.path),
                                                         "origin": u.model.path},
                                 self._file_blob(u.model.path))
            self._drain()
            for u, task, blob, key in self.deferred:  # local latency: one at a time, nothing else running
                if u.error:
                    self.progress.drop(1)
                    continue
                self._submit(u, "latency", 0, key, task, blob)
                self._drain()
        finally:
            if self.backend is not None:
                self.backend.close()
        return units

    def _file_blob(self, path: str) -> bytes:
        data = self._blobs.get(path)
        if data is None:
            data = self._blobs[path] = Path(path).read_bytes()
        return data

    def _submit(self, u: Unit, stage: str, index: int, key: str, task: dict, blob, resources=None) -> None:
        handle = self._backend().submit(task, blob, resources)
        self.pending[handle] = (u, stage, index, key)

    def _drain(self) -> None:
        while self.pending:
            for handle in self.backend.wait(list(self.pending), timeout=1.0):
                u, stage, index, key = self.pending.pop(handle)
                out = self.backend.get(handle)
                self._arrived(u, stage, index, key, out)

    def _arrived(self, u: Unit, stage: str, index: int, key: str, out: dict) -> None:
        self.progress.finish()
        node = out.get("node")
        if out["status"] != "ok":
            self.progress.say(f"{u.label}: {stage} failed on {node}: {out['error']}")
            u.fail(out["error"] if stage == "convert" else f"{stage}: {out['error']}")
            if stage == "convert" and out.get("cacheable"):
                self.cache.put(key, {"error": out["error"], "node": node})
            if stage == "convert":
                self.progress.drop(len(self._chunks()) + self._latency_tasks())
            return
        result = out["result"]
        value = {"node": node, "seconds": out.get("seconds")}
        if stage == "convert":
            report = result["report"]
            report["source"]["file"] = u.model.path
            place_tar(result["tar"], u.outdir)
            (u.outdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            value["report"] = report
        elif stage == "latency":
            write_files(u.outdir / "latency", result.pop("logs"))
            value.update(result)
        else:
            value.update(result)
        self.cache.put(key, value)  # only now: the artifacts are in place
        self.progress.say(f"{u.label}: {stage}{'' if stage != 'eval' else f' chunk {index + 1}'} done on {node} "
                          f"({out.get('seconds')} s)")
        if stage == "convert":
            self._converted(u, value)
        elif stage == "eval":
            u.shards[index] = value
            u.nodes.setdefault("eval", set()).add(node)
            u.seconds["eval"] = u.seconds.get("eval", 0) + (out.get("seconds") or 0)
        else:
            u.latency = value
            u.nodes["latency"] = {node}
            u.seconds["latency"] = out.get("seconds")

    def _artifacts_ok(self, u: Unit, hit: dict) -> bool:
        tflite = u.outdir / hit.get("report", {}).get("artifacts", {}).get("tflite", {}).get("path", "model.tflite")
        try:
            return tflite.stat().st_size == hit["report"]["artifacts"]["tflite"]["bytes"]
        except (OSError, KeyError, TypeError):
            return False

    def _converted(self, u: Unit, value: dict) -> None:
        """The conversion is done (now or cached): queue its evaluation chunks and latency."""
        report = value["report"]
        u.convert = report
        u.nodes["convert"] = {value.get("node")}
        u.seconds["convert"] = value.get("seconds")
        tflite = u.outdir / report["artifacts"]["tflite"]["path"]
        blob = None
        for i, (start, stop) in enumerate(self._chunks()):
            key = P.digest("eval", u.key, self.images.key(start, stop))
            hit = self.cache.get(key)
            if hit is not None:
                self.progress.finish(cached=True)
                u.cached["eval"] = u.cached.get("eval", 0) + 1
                u.shards[i] = hit
                u.nodes.setdefault("eval", set()).add(hit.get("node"))
                u.seconds["eval"] = u.seconds.get("eval", 0) + (hit.get("seconds") or 0)
                continue
            blob = blob or tflite.read_bytes()
            task = {"kind": "eval", "dataset": self.images.subset(start, stop)}
            self._submit(u, "eval", i, key, task, blob)
        self._queue_latency(u, tflite)

    def _queue_latency(self, u: Unit, tflite: Path) -> None:
        lat = self.options.latency
        if lat.kind == "lut":
            from amc_tf.core.netspec import NetSpec

            from amc_tf.core.errors import AmcError

            try:
                spec = NetSpec.from_dict(u.convert["network"])
                u.latency = {"latency_ms": self.lut.predict(spec), "source": f"lut:{lat.lut}"}
            except AmcError as exc:  # e.g. a LUT built for another input size: this record fails, not the study
                u.fail(f"latency: {exc}")
            return
        if lat.kind == "none":
            return
        protocol = {**PROTOCOL_DEFAULT, **self.options.protocol}
        task = {"kind": "latency", "protocol": protocol, "filename": tflite.name,
                "log_name": f"{u.model.name}-{u.precision}", "target": lat.kind}
        if lat.kind == "adb":
            index = [x for x in self.models].index(u.model) * len(self.options.precisions) \
                + self.options.precisions.index(u.precision)
            task.update(serial=lat.serials[index % len(lat.serials)], binary=self.options.benchmark_binary)
        key = P.digest("latency", u.key, task)
        hit = self.cache.get(key)
        if hit is not None:
            self.progress.finish(cached=True)
            u.cached["latency"] = 1
            u.latency = hit
            u.nodes["latency"] = {hit.get("node")}
            u.seconds["latency"] = hit.get("seconds")
        elif lat.kind == "adb" and self._backend().exclusive_resources:  # Ray: the phone's resource serialises
            self._submit(u, "latency", 0, key, task, tflite.read_bytes(), resources={f"adb:{task['serial']}": 1})
        else:  # the local CPU, or a phone without Ray: one measurement at a time, after everything else
            self.deferred.append((u, task, tflite.read_bytes(), key))
