"""The local target: an in-process LiteRT interpreter, or a host `benchmark_model`.

In-process, each run builds a fresh interpreter, fills its inputs with random data once
(as benchmark_model does), invokes it exactly `warmup` then exactly `runs` times,
timing every invocation alone, and writes the run's log in benchmark_model's current
format so that one parser reads every log. With a host binary, each run is one
`benchmark_model` invocation with the exact-count flags.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amc_tf.core.errors import AmcError
from amc_tf.core.quiet import silenced
from amc_tf.benchmarks.logparse import parse_text
from amc_tf.benchmarks.protocol import LOCAL_DELEGATES, Protocol, taskset_cpus
from amc_tf.core.fileutil import sha256_file
from amc_tf.benchmarks.runlog import (BenchRecord, RunRecord, atomic_write, log_path, run_status, write_manifest)

Progress = Callable[[str], None]


def make_interpreter(model_path: str, threads: int, delegate: str):
    """A LiteRT interpreter; `delegate="none"` disables the default XNNPACK delegate."""
    from amc_tf.core.tflite_io import load_interpreter

    return load_interpreter(str(model_path), threads=threads, delegates=(delegate == "xnnpack"))


@dataclass
class Stat:
    """benchmark_model's Stat over per-invocation times in µs."""

    samples: list[float]

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def avg(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    @property
    def std(self) -> float:
        if not self.samples:
            return math.nan
        a = self.avg
        return math.sqrt(max(0.0, sum((x - a) ** 2 for x in self.samples) / len(self.samples)))

    def line(self) -> str:
        """`count=N first=F curr=C min=m max=M avg=A std=S` as benchmark_model prints it."""
        s = self.samples
        if not s:
            return "count=0"
        if len(set(int(x) for x in s)) == 1:
            return f"count={len(s)} curr={int(s[-1])}" + ("(all same)" if len(s) > 1 else "")
        return (
            f"count={len(s)} first={int(s[0])} curr={int(s[-1])} min={int(min(s))} max={int(max(s))} "
            f"avg={self.avg:g} std={int(self.std)}"
        )


def _timed_loop(invoke, n: int) -> list[float]:
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        invoke()
        out[i] = clock() - t0
    # whole microseconds, as benchmark_model records them (rounded, not truncated: no bias)
    return [float(round(t / 1000.0)) for t in out]


def _fill_inputs(interp, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.floating):
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = rng.integers(max(info.min, -128), min(info.max, 127), size=shape, endpoint=True).astype(dtype)
        elif dtype == np.bool_:
            data = rng.integers(0, 1, size=shape, endpoint=True).astype(dtype)
        else:
            raise AmcError(f"cannot make random input of type {dtype} for input {d['name']!r}")
        interp.set_tensor(d["index"], data)


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@contextlib.contextmanager
def _pinned(mask: str | None):
    """Pin this process (and the threads it starts) to the CPUs of a hex mask."""
    if not mask:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise AmcError("--taskset needs sched_setaffinity (Linux); this platform has none")
    wanted = set(taskset_cpus(mask))
    before = os.sched_getaffinity(0)
    cpus = wanted & set(range(os.cpu_count() or 1))
    if not cpus:
        raise AmcError(f"--taskset {mask} selects CPUs {sorted(wanted)}, none of which this machine has")
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_inprocess(model: Path, protocol: Protocol, k: int = 1, interpreter_factory=None) -> str:
    """One run of the protocol in this process; returns the run's log text."""
    factory = interpreter_factory or make_interpreter
    rss0 = _rss_mb()
    t0 = time.perf_counter_ns()
    interp = factory(str(model), protocol.threads, protocol.delegate)
    with silenced():  # LiteRT's XNNPACK notice, in quiet mode
        interp.allocate_tensors()
    init_us = (time.perf_counter_ns() - t0) / 1000.0
    rss_init = _rss_mb()
    _fill_inputs(interp, seed=k)
    invoke = interp.invoke
    warm = Stat(_timed_loop(invoke, protocol.warmup))
    timed = Stat(_timed_loop(invoke, protocol.runs))
    rss_end = _rss_mb()
    del interp, invoke

    first = warm.samples[0] if warm.samples else timed.samples[0]
    size_mb = model.stat().st_size / 1e6
    floor = f"at least 0 seconds but terminate if exceeding {protocol.max_secs} seconds."
    lines = [
        "STARTING!",
        "Log parameter values verbosely: [0]",
        f"Min num runs: [{protocol.runs}]",
        "Min runs duration (seconds): [0]",
        f"Max runs duration (seconds): [{protocol.max_secs}]",
        f"Num threads: [{protocol.threads}]",
        f"Min warmup runs: [{protocol.warmup}]",
        "Min warmup runs duration (seconds): [0]",
        f"Graph: [{model}]",
        f"Use xnnpack: [{1 if protocol.delegate == 'xnnpack' else 0}]",
        f"Runner: [amc-tf in-process ai-edge-litert {_litert_version()}, run {k}/{protocol.repeats}]",
        f"#threads used for CPU inference: [{protocol.threads}]",
        f"Loaded model {model}",
        f"The input model file size (MB): {size_mb:g}",
        f"Initialized session in {init_us / 1000.0:g}ms.",
        f"Running benchmark for at least {protocol.warmup} iterations and {floor}",
        warm.line(),
        "",
        f"Running benchmark for at least {protocol.runs} iterations and {floor}",
        timed.line(),
        "",
        f"Inference timings in us: Init: {int(init_us)}, First inference: {int(first)}, "
        f"Warmup (avg): {warm.avg:g}, Inference (avg): {timed.avg:g}",
    ]
    if rss0 is not None and rss_init is not None and rss_end is not None:
        lines.append(
            "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
            "to the actual memory footprint of the model at runtime. Take the information at your discretion."
        )
        lines.append(
            f"Memory footprint delta from the start of the tool (MB): init={rss_init - rss0:g} overall={rss_end - rss0:g}"
        )
    return "\n".join(lines) + "\n"


class RunTimedOut(Exception):
    """A run exceeded the protocol's timeout; `output` is what it printed until then."""

    def __init__(self, seconds: float, output: str = ""):
        super().__init__(f"timed out after {seconds:g} s (--run-timeout)")
        self.output = output


def run_binary(binary: Path, model: Path, protocol: Protocol) -> tuple[str, int]:
    """One `benchmark_model` invocation on this host; returns (stdout+stderr, exit code).
    Raises RunTimedOut (the process group killed) beyond `protocol.timeout_s()`."""
    args = [str(binary)] + protocol.benchmark_model_args(str(model))
    preexec = None
    if protocol.taskset:
        cpus = set(taskset_cpus(protocol.taskset)) & set(range(os.cpu_count() or 1))
        if not cpus:
            raise AmcError(f"--taskset {protocol.taskset} selects no CPU this machine has")
        preexec = lambda: os.sched_setaffinity(0, cpus)  # noqa: E731
    timeout = protocol.timeout_s()
    from amc_tf.benchmarks.capture import run_capped

    try:  # output capped at capture.MAX_OUTPUT_BYTES: a binary cannot fill the host's memory
        got = run_capped(args, timeout, merge_stderr=True, new_session=True, preexec_fn=preexec)
    except OSError as exc:
        raise AmcError(f"cannot run benchmark binary {binary}: {exc.strerror}") from None
    out = got.stdout.decode("utf-8", errors="replace")
    if got.timed_out:
        raise RunTimedOut(timeout, out)
    return out, got.returncode


def _child_run(conn, model, protocol, k, factory) -> None:
    try:
        with _pinned(protocol.taskset):
            conn.send(("ok", run_inprocess(model, protocol, k=k, interpreter_factory=factory)))
    except AmcError as exc:
        conn.send(("amc", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent as the run's failure
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_isolated(model: Path, protocol: Protocol, k: int = 1, interpreter_factory=None) -> str:
    """`run_inprocess` in a forked child process, so that a hung interpreter can be stopped:
    raises RunTimedOut beyond `protocol.timeout_s()`, RuntimeError if the child dies.
    Without fork (not Linux/macOS) the run happens in this process, with no timeout."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        with _pinned(protocol.taskset):
            return run_inprocess(model, protocol, k=k, interpreter_factory=interpreter_factory)
    import ai_edge_litert.interpreter  # noqa: F401 - imported once here, not in every child

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_run, args=(child, model, protocol, k, interpreter_factory), daemon=True)
    proc.start()
    child.close()
    timeout = protocol.timeout_s()
    try:
        if not parent.poll(timeout):
            raise RunTimedOut(timeout)
        try:
            kind, payload = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"the run's process died ({_death(proc.exitcode)})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()
    if kind == "amc":
        raise AmcError(payload)
    if kind == "error":
        raise RuntimeError(payload)
    return payload


def _death(exitcode: int | None) -> str:
    """`LiteRT crashed with SIGSEGV` for a child killed by a signal, else its exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"LiteRT crashed with {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


def check_binary(path: str | Path) -> Path:
    """The host benchmark binary as an absolute path: a name with a `/` is a path (`./bm`),
    a bare name is looked up on PATH, as a shell would."""
    import shutil

    text = os.fspath(path)
    if "/" in text:
        p = Path(text)
        if not p.exists():
            raise AmcError(f"benchmark binary not found: {p}")
        if not p.is_file():
            raise AmcError(f"benchmark binary is not a file: {p}")
        if not os.access(p, os.X_OK):
            raise AmcError(f"benchmark binary is not executable: {p} (chmod +x it)")
        return p.resolve()
    found = shutil.which(text)
    if found is None:
        hint = f"; to run the file in this folder, say ./{text}" if Path(text).is_file() else ""
        raise AmcError(f"benchmark binary {text!r} is not on PATH{hint}")
    return Path(found).resolve()


def host_info() -> dict:
    info = {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if gov.is_file():
        with contextlib.suppress(OSError):
            info["governor"] = gov.read_text().strip()
    info["cpus"] = os.cpu_count()
    return info


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - only for the log's provenance line
        return "unknown"


def bench_local(
    model: Path,
    name: str,
    protocol: Protocol,
    logdir: Path,
    binary: Path | None = None,
    progress: Progress | None = None,
    interpreter_factory=None,
) -> BenchRecord:
    """Run the protocol `repeats` times; each run leaves LOGDIR/<name>_run<k>.txt."""
    if protocol.delegate not in LOCAL_DELEGATES:
        raise AmcError(f"--delegate {protocol.delegate} is only available with --target adb")
    say = progress or (lambda _msg: None)
    runner = {"kind": "benchmark_model", "binary": str(binary)} if binary else {
        "kind": "in-process", "ai_edge_litert": _litert_version()}
    runner["host"] = host_info()
    runner["run_timeout_s"] = protocol.timeout_s()
    rec = BenchRecord(name=name, model=str(model), model_sha256=sha256_file(model), target="local",
                      protocol=protocol.as_dict(), runner=runner)
    for k in range(1, protocol.repeats + 1):
        say(f"{name}: run {k}/{protocol.repeats} ({protocol.warmup} warm-up + {protocol.runs} timed)")
        t0 = time.monotonic()
        rc = None
        try:
            if binary:
                text, rc = run_binary(binary, model, protocol)
            else:
                text = run_isolated(model, protocol, k=k, interpreter_factory=interpreter_factory)
        except (RunTimedOut, RuntimeError) as exc:
            rec.runs.append(_unfinished_run(logdir, name, k, exc, round(time.monotonic() - t0, 3)))
            write_manifest(logdir, rec)
            say(f"{name}: run {k}/{protocol.repeats}: {rec.runs[-1].status}: {rec.runs[-1].error}")
            continue
        path = log_path(logdir, name, k)
        atomic_write(path, text)
        parsed = parse_text(text, source=str(path))
        status, error = run_status(parsed, rc, text)
        run = RunRecord(k=k, status=status, log=str(path), inference_avg_us=parsed.inference_avg_us,
                        count=parsed.count, error=error, returncode=rc, duration_s=round(time.monotonic() - t0, 3))
        rec.runs.append(run)
        write_manifest(logdir, rec)
        if run.status == "ok":
            say(f"{name}: run {k}/{protocol.repeats}: {parsed.inference_avg_us / 1000.0:.4g} ms avg over {parsed.count}")
        else:
            say(f"{name}: run {k}/{protocol.repeats}: {run.status}: {error}")
    return rec


def _unfinished_run(logdir: Path, name: str, k: int, exc: Exception, duration: float) -> RunRecord:
    """A run that timed out (its output so far kept as <name>_run<k>.partial.txt) or whose
    process died: no log of its own, so the summary counts it as failed, never as a result."""
    partial = None
    if isinstance(exc, RunTimedOut) and exc.output:
        partial = Path(logdir) / f"{name}_run{k}.partial.txt"
        atomic_write(partial, exc.output)
    status = "timed_out" if isinstance(exc, RunTimedOut) else "failed"
    return RunRecord(k=k, status=status, log=str(partial) if partial else None, error=str(exc), duration_s=duration)
