"""The Android target: the real `adb` client drives `benchmark_model` on devices.

Every adb call names its device (`adb -s SERIAL`). Binary and models go to
/data/local/tmp (the one place shell users may execute from), each model as
<log name>.tflite (log names are unique, so two OUTDIRs' model.tflite never clash there);
a push is skipped when the remote file's size and sha256 already match. Each run is one benchmark_model
invocation with the exact-count flags, optionally under `taskset MASK`; its raw output
(stdout and stderr, merged on the device) is written to its log as soon as the run
ends, so a device lost at run 3 keeps runs 1-2. Before and after every run the device
state is recorded (model, Android version, governors, frequencies, temperatures).
Several serials run in parallel, one worker thread per device.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL
from typing import Callable

from amc_tf.core.errors import AmcError, DeviceError
from amc_tf.core.fileutil import sha256_file
from amc_tf.benchmarks.adb_devices import select_serials, serial_tag, state_problem  # noqa: F401 (re-exported)
from amc_tf.benchmarks.device_info import INFO_SCRIPT, check_device_taskset, parse_info
from amc_tf.benchmarks.logparse import parse_text
from amc_tf.benchmarks.protocol import Protocol
from amc_tf.benchmarks.runlog import (BenchRecord, RunRecord, atomic_write, claim_logdir, log_path, run_status,
                               write_manifest)

REMOTE_DIR = "/data/local/tmp"
ADB_HINT = "install it with `apt-get install adb`, or pass --adb PATH or set $ADB"
RC_MARK = "__AMC_RC="
TIMED_OUT = 124  # Adb._run's return code when adb did not finish in time
CONTROL_TIMEOUT_S = 60.0  # devices, get-state, push (+1 s per MB), control shells: past it, DeviceError

Progress = Callable[[str], None]


def resolve_adb(path: str | None) -> str:
    cand = path or os.environ.get("ADB") or shutil.which("adb")
    if not cand:
        raise DeviceError(f"adb not found: {ADB_HINT}")
    p = Path(cand)
    if not p.is_file():
        found = shutil.which(cand)
        if not found:
            raise DeviceError(f"adb not found at {cand}: {ADB_HINT}")
        p = Path(found)
    if not os.access(p, os.X_OK):
        raise DeviceError(f"adb at {p} is not executable")
    return str(p)


class Adb:
    """A thin wrapper over the adb command line; every device call passes -s SERIAL."""

    def __init__(self, path: str):
        self.path = path

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """adb ARGS. A control call (no timeout given: CONTROL_TIMEOUT_S) that does not finish in
        time raises DeviceError; a call with its own timeout (a run) returns code TIMED_OUT."""
        from amc_tf.benchmarks.capture import run_capped

        limit = CONTROL_TIMEOUT_S if timeout is None else timeout
        try:
            # stdin: never the caller's (adb shell forwards it to the device: a `while read` loop would lose its input);
            # stdout/stderr capped (capture.MAX_OUTPUT_BYTES): a device cannot fill the host's memory
            got = run_capped([self.path] + args, limit, stdin=DEVNULL)
        except OSError as exc:
            raise DeviceError(f"cannot run adb ({self.path}): {exc.strerror}") from None
        if got.timed_out:  # what it printed so far is kept (a run's partial log)
            if timeout is None:
                port = os.environ.get("ANDROID_ADB_SERVER_PORT")
                where = f"ANDROID_ADB_SERVER_PORT={port}" if port else "the default port 5037"
                raise DeviceError(f"`adb {args[2] if args[0] == '-s' else args[0]}` got no answer within {limit:g} s "
                                  f"from the adb server at {where}: is it an adb server (not, e.g., a device's port)?")
            return subprocess.CompletedProcess(args, TIMED_OUT, got.stdout,
                                               f"adb {args[0]} timed out after {timeout:g}s".encode())
        return subprocess.CompletedProcess(args, got.returncode, got.stdout, got.stderr)

    @staticmethod
    def _text(b: bytes) -> str:
        return b.decode("utf-8", errors="replace")

    def devices(self) -> dict[str, str]:
        proc = self._run(["devices"])
        if proc.returncode != 0:
            raise DeviceError(f"`adb devices` failed: {one_line(self._text(proc.stderr)) or proc.returncode}")
        out = {}
        for line in self._text(proc.stdout).splitlines():
            line = line.strip()
            if not line or line.startswith(("List of devices", "*")):
                continue
            parts = line.split(None, 1)
            if len(parts) == 2:
                state = parts[1]
                out[parts[0]] = "no permissions" if state.startswith("no permissions") else state.split()[0]
        return out

    def get_state(self, serial: str) -> tuple[str | None, str]:
        """("device"|"offline"|..., "") or (None, adb's error message)."""
        proc = self._run(["-s", serial, "get-state"])
        if proc.returncode == 0:
            return self._text(proc.stdout).strip(), ""
        return None, one_line(self._text(proc.stderr) + self._text(proc.stdout))

    def shell(self, serial: str, command: str, timeout: float | None = None) -> tuple[int, str, str]:
        proc = self._run(["-s", serial, "shell", command], timeout=timeout)
        return proc.returncode, self._text(proc.stdout), self._text(proc.stderr)

    def push(self, serial: str, local: Path, remote: str) -> tuple[int, str]:
        timeout = CONTROL_TIMEOUT_S + local.stat().st_size / 1e6
        proc = self._run(["-s", serial, "push", str(local), remote], timeout=timeout)
        if proc.returncode == TIMED_OUT:
            raise DeviceError(f"adb push of {local.name} to {serial} did not finish within {timeout:.0f} s")
        return proc.returncode, one_line(self._text(proc.stderr) + self._text(proc.stdout))


def one_line(text: str) -> str:
    """adb's messages as one line: its error lines if any (else every line), without the
    server start-up chatter (`* daemon not running; starting now at tcp:PORT`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("* ")]
    errors = [ln for ln in lines if re.search(r"error|fail", ln, flags=re.I)]
    return "; ".join(errors or lines)


def device_model_path(log_name: str) -> str:
    """Where a model logged as LOG_NAME is pushed: /data/local/tmp/<log name>.tflite."""
    return f"{REMOTE_DIR}/{log_name}.tflite"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class AndroidOutcome:
    records: list[BenchRecord] = field(default_factory=list)
    log_names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class DeviceLost(Exception):
    pass


class DeviceWorker:
    """Runs every model's protocol on one device, one run at a time."""

    def __init__(self, adb: Adb, serial: str, protocol: Protocol, logdir: Path, binary: Path,
                 models: list[tuple[str, str, Path]], cleanup: bool, say: Progress):
        self.adb, self.serial, self.protocol, self.logdir = adb, serial, protocol, logdir
        self.binary, self.models, self.cleanup, self._say = binary, models, cleanup, say
        self.remote_binary = f"{REMOTE_DIR}/{binary.name}"
        self.placed: list[str] = []
        self.records: list[BenchRecord] = []
        self.error: str | None = None
        self.ran = False

    def say(self, msg: str) -> None:
        self._say(f"[{self.serial}] {msg}")

    # -- device helpers -------------------------------------------------------------
    def info(self) -> dict | None:
        rc, out, _ = self.adb.shell(self.serial, INFO_SCRIPT)
        return parse_info(out) if rc == 0 else None

    def check_alive(self) -> None:
        state, msg = self.adb.get_state(self.serial)
        if state != "device":
            raise DeviceLost(state_problem(self.serial, state) if state else f"device {self.serial} lost: {msg or 'gone'}")

    def place(self, local: Path, remote: str, executable: bool) -> None:
        q = shlex.quote(remote)
        rc, out, err = self.adb.shell(self.serial, f"if [ -d {q} ]; then echo is-a-directory; "
                                                   f"elif [ -f {q} ]; then stat -c %s {q}; sha256sum {q}; fi")
        if rc != 0:
            self.check_alive()
            raise DeviceError(f"{self.serial}: cannot inspect {remote}: {one_line(err or out)}")
        if out.strip() == "is-a-directory":  # adb push would silently put the file inside it
            raise DeviceError(f"{self.serial}: {remote} is a directory on the device; remove it "
                              f"(adb -s {self.serial} shell rm -r {q})")
        lines = out.split()
        same = (len(lines) >= 2 and lines[0] == str(local.stat().st_size) and lines[1] == sha256_file(local))
        if same:
            self.say(f"{remote} up to date, push skipped")
        else:
            rc, msg = self.adb.push(self.serial, local, remote)
            if rc != 0:
                self.check_alive()
                raise DeviceError(f"{self.serial}: push of {local} to {remote} failed: {msg}")
            self.say(f"pushed {local} -> {remote}")
        self.placed.append(remote)
        if executable:
            self.adb.shell(self.serial, f"chmod 755 {q}")
            rc, out, _ = self.adb.shell(self.serial, f"test -x {q} && echo exec-ok")
            if "exec-ok" not in out:
                raise DeviceError(f"{self.serial}: benchmark binary {remote} is not executable after chmod +x "
                                  f"(is {REMOTE_DIR} mounted noexec?)")

    def command(self, remote_model: str) -> str:
        args = self.protocol.benchmark_model_args(remote_model)
        cmd = " ".join([shlex.quote(self.remote_binary)] + [shlex.quote(a) for a in args])
        if self.protocol.taskset:
            cmd = f"taskset {self.protocol.taskset} {cmd}"
        return f"{cmd} </dev/null 2>&1; echo {RC_MARK}$?"

    # -- the work -------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except DeviceLost as exc:
            self.error = str(exc)
        except DeviceError as exc:
            self.error = str(exc)
        finally:
            if self.cleanup and self.placed:
                try:
                    state, _ = self.adb.get_state(self.serial)
                    if state == "device":
                        self.adb.shell(self.serial, "rm -f " + " ".join(shlex.quote(p) for p in self.placed))
                        self.say(f"removed {', '.join(self.placed)}")
                except DeviceError as exc:
                    self.error = self.error or str(exc)

    def _run(self) -> None:
        self.check_alive()
        self.place(self.binary, self.remote_binary, executable=True)
        remotes = {}
        for _, name, local in self.models:
            remotes[name] = device_model_path(name)
            self.place(local, remotes[name], executable=False)
        device = self.info() or {}
        for log_name, name, local in self.models:
            rec = BenchRecord(name=log_name, model=str(local), model_sha256=sha256_file(local), target="adb",
                              protocol=self.protocol.as_dict(),
                              runner={"kind": "benchmark_model", "serial": self.serial, "binary": str(self.binary),
                                      "remote_binary": self.remote_binary, "remote_model": remotes[name],
                                      "device": device})
            self.records.append(rec)
            self._model_runs(rec, remotes[name])

    def _model_runs(self, rec: BenchRecord, remote_model: str) -> None:
        p = self.protocol
        for k in range(1, p.repeats + 1):
            try:
                self.check_alive()
            except DeviceLost as exc:
                self._missing(rec, k, f"{exc} (before run {k})")
                raise
            before = self.info()
            self.say(f"{rec.name}: run {k}/{p.repeats}")
            t0 = time.monotonic()
            rc, out, err = self.adb.shell(self.serial, self.command(remote_model), timeout=p.timeout_s())
            duration = round(time.monotonic() - t0, 3)
            remote_rc = None
            m = re.search(rf"^{RC_MARK}(\d{{1,9}})[ \t\r]*$", out, flags=re.M)  # bounded: a device prints what it likes
            if m:
                remote_rc = int(m.group(1))
                out = out[: m.start()]
            self.ran = True
            if remote_rc is None and rc == TIMED_OUT:
                self._timed_out(rec, k, out, duration, before)
                continue
            if remote_rc is None:
                # the shell session ended without the exit status: the device went away, or adb failed
                state, msg = self.adb.get_state(self.serial)
                if state != "device":
                    partial = self.logdir / f"{rec.name}_run{k}.partial.txt"
                    if out:
                        atomic_write(partial, out)
                    detail = one_line(err or msg)
                    why = f"device {self.serial} lost during run {k}" + (f" ({detail})" if detail else "")
                    rec.runs.append(RunRecord(k=k, status="lost", log=str(partial) if out else None, error=why,
                                              returncode=rc, duration_s=duration, device_before=before))
                    self._missing(rec, k + 1, f"device {self.serial} lost during run {k}")
                    raise DeviceLost(why)
            path = log_path(self.logdir, rec.name, k)
            atomic_write(path, out)
            after = self.info()
            parsed = parse_text(out, source=str(path))
            code = remote_rc if remote_rc is not None else rc
            status, error = run_status(parsed, code, out or err)
            rec.runs.append(RunRecord(k=k, status=status, log=str(path), inference_avg_us=parsed.inference_avg_us,
                                      count=parsed.count, error=error, returncode=code, duration_s=duration,
                                      device_before=before, device_after=after))
            write_manifest(self.logdir, rec)
            if status == "ok":
                self.say(f"{rec.name}: run {k}/{p.repeats}: {parsed.inference_avg_us / 1000:.4g} ms avg over {parsed.count}")
            else:
                self.say(f"{rec.name}: run {k}/{p.repeats}: {status}: {error}")

    def _timed_out(self, rec: BenchRecord, k: int, out: str, duration: float, before) -> None:
        """Run k exceeded the protocol's timeout: keep its output as a partial log, stop the
        tool on the device (best effort), record the run as timed out and go on."""
        partial = self.logdir / f"{rec.name}_run{k}.partial.txt"
        if out:
            atomic_write(partial, out)
        self.adb.shell(self.serial, f"pkill -f {shlex.quote(self.remote_binary)}", timeout=30)
        why = f"timed out after {self.protocol.timeout_s():g} s (--run-timeout)"
        rec.runs.append(RunRecord(k=k, status="timed_out", log=str(partial) if out else None, error=why,
                                  duration_s=duration, device_before=before))
        write_manifest(self.logdir, rec)
        self.say(f"{rec.name}: run {k}/{self.protocol.repeats}: timed_out: {why}")

    def _missing(self, rec: BenchRecord, from_k: int, why: str) -> None:
        for j in range(from_k, self.protocol.repeats + 1):
            rec.runs.append(RunRecord(k=j, status="missing", error=why))
        write_manifest(self.logdir, rec)
        # models not started on this device are recorded too, so the summary names them
        started = {r.name for r in self.records}
        for log_name, _, local in self.models:
            if log_name not in started:
                other = BenchRecord(name=log_name, model=str(local), model_sha256=sha256_file(local), target="adb",
                                    protocol=self.protocol.as_dict(), runner={"serial": self.serial})
                other.runs = [RunRecord(k=j, status="missing", error=why) for j in range(1, self.protocol.repeats + 1)]
                self.records.append(other)
                write_manifest(self.logdir, other)


def bench_android(models: list[tuple[str, Path]], protocol: Protocol, logdir: Path, serials: list[str],
                  binary: Path, adb: str | None = None, cleanup: bool = False, force: bool = False,
                  progress: Progress | None = None) -> AndroidOutcome:
    say = progress or (lambda _m: None)
    if not binary.exists():
        raise AmcError(f"benchmark binary not found: {binary}")
    if not binary.is_file():
        raise AmcError(f"benchmark binary is not a file: {binary}")
    # each model goes to the device as <log name>.tflite: log names are unique, so two OUTDIRs'
    # model.tflite never overwrite each other there (the same command works on every target)
    for name, path in models:
        if device_model_path(name) == f"{REMOTE_DIR}/{binary.name}" and not _same_file(path, binary):
            raise AmcError(f"the model logged as {name!r} and the benchmark binary {binary.name} would share "
                           f"{REMOTE_DIR}/{binary.name} on the device; rename the binary or pass --name")
    client = Adb(resolve_adb(adb))
    chosen = select_serials(client, serials)
    check_device_taskset(client, chosen, protocol.taskset)  # before any run: a mask the device lacks fails them all
    multi = len(chosen) > 1
    per_device = {s: [((f"{n}@{serial_tag(s)}" if multi else n), n, p) for n, p in models] for s in chosen}
    log_names = [ln for s in chosen for ln, _, _ in per_device[s]]
    with claim_logdir(logdir, log_names, force, staged=True):  # old logs replaced only once the runs are done
        lock = threading.Lock()

        def locked_say(msg):
            with lock:
                say(msg)

        workers = [DeviceWorker(client, s, protocol, Path(logdir), binary, per_device[s], cleanup, locked_say) for s in chosen]
        if multi:
            with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="adb") as pool:
                list(pool.map(lambda w: w.run(), workers))
        else:
            workers[0].run()

        out = AndroidOutcome(log_names=log_names)
        for w in workers:
            out.records.extend(w.records)
            if w.error:
                out.errors.append(w.error)
        if out.errors and not any(w.ran for w in workers):
            raise DeviceError("; ".join(out.errors))
    return out
