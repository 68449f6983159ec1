"""What a latency LUT build times, and how: standalone TFLite models of one layer (built
exactly as the TF builder builds that layer in a whole network: explicit pad + VALID
before stride-2 3x3 convs, bias, fused activation), whole random-weight networks for the
calibration, and three timers that run them with `bench`'s runtime, threads and delegate:

* `LocalTimer`: LiteRT as `bench --target local` runs it, in one long-lived child process
  (amc_tf.core.litert_worker; the lower quintile of the per-invocation times of one run);
* `BinaryTimer`: a host `benchmark_model`, one invocation per point (its average);
* `AdbTimer`: `benchmark_model` on an Android device through the adb path of `bench`
  (the binary is pushed once, each point's model once, then run).
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import numpy as np

from amc_tf.core.errors import AmcError, RunFailedError
from amc_tf.core.fileutil import sha256_file
from amc_tf.core.netspec import Network, NetSpec
from amc_tf.benchmarks.logparse import parse_text
from amc_tf.benchmarks.protocol import Protocol


# -- layer models ----------------------------------------------------------------------
PRECISIONS = ("fp32", "int8")


def _int8_configure(samples: list[list[np.ndarray]], float_in: bool, float_out: bool):
    """A converter configuration for a full-integer model, calibrated on `samples` (each one
    input list); its input/output stay float32 where the whole network's do (the stem's input,
    the head's output: a QUANTIZE/DEQUANTIZE pair inside the model), else int8."""
    import tensorflow as tf

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32 if float_in else tf.int8
        converter.inference_output_type = tf.float32 if float_out else tf.int8
    return configure


def layer_tflite(kind: str, res: int, cin: int, cout: int, seed: int = 0, precision: str = "fp32") -> bytes:
    """A TFLite model of one layer: kind is conv3x3_s2 | depthwise_s1 | depthwise_s2 |
    pointwise | add | head (global average pool + 1x1 conv to `cout` classes + squeeze) | null.

    `precision` int8: the layer fully quantized (int8 weights per channel, int8 activations),
    as `convert --quantize int8` makes it inside a whole network: float input only for the
    stem (the network quantizes its input there), float output only for the head."""
    import warnings

    import tensorflow as tf

    from amc_tf.converters.exporters import tflite_from_concrete

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    rng = np.random.default_rng(seed)
    configure = None
    if precision == "int8":
        n_in = 2 if kind == "add" else 1
        shape = [1, 1, 1, 1] if kind == "null" else [1, res, res, cin]
        data_rng = np.random.default_rng(seed + 1)
        samples = [[data_rng.uniform(-1 if kind == "conv3x3_s2" else 0, 1, shape).astype(np.float32)
                    for _ in range(n_in)] for _ in range(3)]
        configure = _int8_configure(samples, float_in=kind == "conv3x3_s2", float_out=kind == "head")

    def convert(concrete):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return tflite_from_concrete(concrete, configure)

    def const(shape, fan_in):
        return tf.constant((rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))).astype(np.float32))

    if kind == "add":
        specs = [tf.TensorSpec([1, res, res, cin], tf.float32)] * 2

        @tf.function(input_signature=specs, autograph=False)
        def f(a, b):
            return tf.add(a, b)
        return convert(f.get_concrete_function())

    if kind == "null":
        cin, res = 1, 1
    bias = tf.constant(np.zeros(max(cout, 1), np.float32))

    def body(x):
        if kind == "null":
            return tf.nn.relu(x)
        if kind == "head":
            x = tf.nn.avg_pool2d(x, [res, res], 1, "VALID")
            x = tf.nn.bias_add(tf.nn.conv2d(x, const([1, 1, cin, cout], cin), 1, "SAME"), bias)
            return tf.squeeze(x, [1, 2])
        if kind == "pointwise":
            return tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(x, const([1, 1, cin, cout], cin), 1, "SAME"), bias))
        m = re.fullmatch(r"(conv3x3|depthwise)_s(\d)", kind)
        if not m:
            raise ValueError(f"unknown layer kind {kind!r}")
        stride = int(m.group(2))
        padding = "SAME"
        if stride > 1:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            padding = "VALID"
        if m.group(1) == "depthwise":
            x = tf.nn.depthwise_conv2d(x, const([3, 3, cin, 1], 9), [1, stride, stride, 1], padding)
            bias_c = tf.constant(np.zeros(cin, np.float32))
        else:
            x = tf.nn.conv2d(x, const([3, 3, cin, cout], 9 * cin), stride, padding)
            bias_c = bias
        return tf.nn.relu(tf.nn.bias_add(x, bias_c))

    @tf.function(input_signature=[tf.TensorSpec([1, res, res, cin], tf.float32)], autograph=False)
    def g(x):
        return body(x)

    return convert(g.get_concrete_function())


def random_network(spec: NetSpec, seed: int = 0) -> Network:
    """Random weights of sane scale (He init, unit BatchNorm) so no layer runs on denormals."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in spec.var_shapes().items():
        if name.endswith(("weights", "depthwise_weights")):
            fan_in = int(np.prod(shape[:-1])) if not name.endswith("depthwise_weights") else shape[0] * shape[1]
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif name.endswith(("gamma", "moving_variance")):
            weights[name] = np.ones(shape, np.float32)
        else:
            weights[name] = np.zeros(shape, np.float32)
    return Network(spec, weights, {"frontend": "random", "seed": seed})


def network_tflite(spec: NetSpec, seed: int = 0, precision: str = "fp32") -> bytes:
    """A random-weight whole network; int8: fully quantized as `convert --quantize int8`
    quantizes (float32 input and output, the TF converter's calibration on random images:
    the kernels and so the latency do not depend on the ranges)."""
    from amc_tf.converters.exporters import tflite_bytes
    from amc_tf.converters.tf_builder import build

    model = build(random_network(spec, seed))
    if precision == "fp32":
        return tflite_bytes(model)
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}")
    from amc_tf.converters.quantize import QuantizeRequest, quantized_tflite_bytes

    rng = np.random.default_rng(seed + 7)
    shape = (1, spec.input_size, spec.input_size, 3)
    return quantized_tflite_bytes(model, QuantizeRequest("int8", recipe="tf"),
                                  lambda: (rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(4)))


# -- timers ----------------------------------------------------------------------------
def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"


class LocalTimer:
    """`bench --target local`'s LiteRT interpreter, in a child process. A point is the lower quintile of
    its invocations: on a shared machine, a long invocation is often preempted while a short
    one rarely is, and any mean or median would mix the machine's load into the table."""

    QUANTILE = 0.2

    def __init__(self, threads: int = 1, delegate: str = "xnnpack", budget_s: float = 0.08,
                 min_runs: int = 7, max_runs: int = 200):
        self.threads, self.delegate = threads, delegate
        self.budget_s, self.min_runs, self.max_runs = budget_s, min_runs, max_runs
        self._interp = None

    def fingerprint(self) -> dict:
        from amc_tf.benchmarks.local import host_info

        info = host_info()
        return {"target": "local", "cpu": info.get("cpu", info["machine"]), "device": None,
                "runtime": f"ai-edge-litert {_litert_version()}", "threads": self.threads, "delegate": self.delegate,
                "machine": info["machine"], "cpus": info.get("cpus")}

    def _ready(self, path: Path):
        from amc_tf.benchmarks.local import make_interpreter

        interp = make_interpreter(str(path), self.threads, self.delegate)
        interp.allocate_tensors()
        rng = np.random.default_rng(0)
        for d in interp.get_input_details():
            if d["dtype"] == np.float32:
                x = rng.uniform(-1, 1, size=tuple(d["shape"])).astype(np.float32)
            else:
                x = rng.integers(-128, 128, size=tuple(d["shape"])).astype(d["dtype"])
            interp.set_tensor(d["index"], x)
        return interp

    def time_mean(self, path: Path, seconds: float = 1.0, warmup: int = 30) -> float:
        """The mean per-invocation time (us) of `path` over about `seconds` after `warmup`
        invocations: the statistic a user's timer (and benchmark_model) reports, load included."""
        interp = self._ready(path)
        invoke, clock = interp.invoke, time.perf_counter_ns
        for _ in range(warmup):
            invoke()
        n, t0 = 0, clock()
        end = t0 + seconds * 1e9
        while True:
            invoke()
            n += 1
            now = clock()
            if now >= end and n >= 10:
                return (now - t0) / n / 1000.0

    def time_model(self, path: Path, budget_s: float | None = None) -> float:
        """LiteRT runs in one long-lived child process (amc_tf.core.litert_worker) that loads
        each model in turn; a crash or hang there is a failed run (exit 3, the points kept)."""
        from amc_tf.core.errors import ModelFileError, ModelHangError
        from amc_tf.core.litert_worker import IsolatedInterpreter

        try:
            if self._interp is None:
                self._interp = IsolatedInterpreter()
            self._interp.load(str(path), threads=self.threads, delegates=self.delegate == "xnnpack")
            return self._time(budget_s)
        except (ModelFileError, ModelHangError) as exc:
            self.close()  # the child is gone or unusable: the next point starts a fresh one
            raise RunFailedError(f"timing {Path(path).name}: {exc}") from None

    def _time(self, budget_s: float | None) -> float:
        timed = self._interp.time_invokes
        first = timed(1, seed=0)[0]
        timed(2 if first < 2e7 else 1)
        budget = (budget_s or self.budget_s) * 1e9
        n = int(min(self.max_runs, max(self.min_runs, budget // max(first, 1))))
        samples = sorted(timed(n))
        return samples[int(self.QUANTILE * (len(samples) - 1))] / 1000.0

    def close(self) -> None:
        if self._interp is not None:
            self._interp.close()
            self._interp = None


class BinaryTimer:
    """A host `benchmark_model`; a point is one invocation's average."""

    def __init__(self, binary: Path, protocol: Protocol):
        self.binary, self.protocol = Path(binary), protocol

    def fingerprint(self) -> dict:
        from amc_tf.benchmarks.local import host_info

        info = host_info()
        return {"target": "local", "cpu": info.get("cpu", info["machine"]), "device": None,
                "runtime": f"benchmark_model sha256:{sha256_file(self.binary)[:16]}",
                "threads": self.protocol.threads, "delegate": self.protocol.delegate, "machine": info["machine"]}

    def time_model(self, path: Path, budget_s: float | None = None) -> float:
        from amc_tf.benchmarks.local import RunTimedOut, run_binary

        try:
            text, rc = run_binary(self.binary, Path(path), self.protocol)
        except RunTimedOut as exc:
            raise RunFailedError(f"benchmark_model on {Path(path).name}: {exc}") from None
        return _avg_us(text, rc, path)

    def close(self) -> None:
        pass


def _avg_us(text: str, rc: int | None, path) -> float:
    parsed = parse_text(text)
    if rc not in (0, None) or parsed.inference_avg_us is None:
        why = parsed.error or (f"exit code {rc}" if rc else "no result in its output")
        raise RunFailedError(f"benchmark_model failed on {Path(path).name}: {why}")
    return float(parsed.inference_avg_us)


class AdbTimer:
    """`benchmark_model` on one Android device over `bench`'s adb path (android.py)."""

    def __init__(self, binary: Path, protocol: Protocol, serial: str | None, adb: str | None = None, say=None):
        from amc_tf.benchmarks.android import Adb, DeviceWorker, resolve_adb, select_serials

        self.client = Adb(resolve_adb(adb))
        self.serial = select_serials(self.client, [serial] if serial else [])[0]
        self.binary, self.protocol = Path(binary), protocol
        if not self.binary.is_file():
            raise AmcError(f"benchmark binary not found: {self.binary}")
        self.worker = DeviceWorker(self.client, self.serial, protocol, Path("."), self.binary, [], cleanup=False,
                                   say=say or (lambda _m: None))
        self.worker.place(self.binary, self.worker.remote_binary, executable=True)
        self._info = self.worker.info() or {}

    def fingerprint(self) -> dict:
        return {"target": "adb", "cpu": None, "device": self._info.get("model", "unknown"),
                "runtime": f"benchmark_model sha256:{sha256_file(self.binary)[:16]}",
                "threads": self.protocol.threads, "delegate": self.protocol.delegate,
                "android": self._info.get("android"), "serial": self.serial}

    def time_model(self, path: Path, budget_s: float | None = None) -> float:
        from amc_tf.benchmarks.android import DeviceLost

        try:
            return self._time_model(path)
        except DeviceLost as exc:  # a lost device is a failed run (exit 3), not a bug
            raise RunFailedError(str(exc)) from None

    def _time_model(self, path: Path) -> float:
        from amc_tf.benchmarks.android import RC_MARK, REMOTE_DIR, TIMED_OUT

        remote = f"{REMOTE_DIR}/amc_lut_{Path(path).name}"
        self.worker.place(Path(path), remote, executable=False)
        timeout = self.protocol.timeout_s()
        rc, out, err = self.client.shell(self.serial, self.worker.command(remote), timeout=timeout)
        m = re.search(rf"^{RC_MARK}(\d{{1,9}})[ \t\r]*$", out, flags=re.M)  # bounded: a device prints what it likes
        code = int(m.group(1)) if m else rc
        if m:
            out = out[: m.start()]
        else:
            self.worker.check_alive()
            if rc == TIMED_OUT:  # stop the tool on the device (best effort), report the timeout
                self.client.shell(self.serial, f"pkill -f {shlex.quote(self.worker.remote_binary)}", timeout=30)
                raise RunFailedError(f"benchmark_model on {Path(path).name} timed out after {timeout:g} s "
                                     "(--run-timeout)")
        self.client.shell(self.serial, f"rm -f {shlex.quote(remote)}")
        self.worker.placed = [p for p in self.worker.placed if p != remote]
        return _avg_us(out or err, code, path)

    def close(self) -> None:
        try:  # best effort: the device may be gone
            self.client.shell(self.serial, f"rm -f {shlex.quote(self.worker.remote_binary)}", timeout=30)
        except AmcError:
            pass


def make_timer(target: str, threads: int, binary: str | None = None, serial: str | None = None,
               adb: str | None = None, say=None, run_timeout: float | None = None):
    """The timer for a target. Over benchmark_model, few iterations per point (10 warm-up + 30),
    each invocation stopped after `run_timeout` seconds (default: derived as `bench` does)."""
    if target == "local" and not binary:
        if run_timeout is not None:
            raise AmcError("--run-timeout applies to benchmark_model runs (--benchmark-binary or --target adb); "
                           "the in-process LiteRT timer has none")
        return LocalTimer(threads=threads)
    protocol = Protocol(warmup=10, runs=30, repeats=1, threads=threads, run_timeout=run_timeout)
    if target == "local":
        from amc_tf.benchmarks.local import check_binary

        return BinaryTimer(check_binary(binary), protocol)  # as `bench`: `./bm` is a path, `bm` is on PATH
    return AdbTimer(_android_binary(binary), protocol, serial, adb, say)


def _android_binary(binary: str | None) -> Path:
    """The host copy of the Android benchmark_model, checked as `bench --target adb` does,
    before any device is contacted."""
    if not binary:
        raise AmcError("--target adb needs --benchmark-binary (an Android build of benchmark_model)")
    p = Path(binary)
    if not p.exists():
        raise AmcError(f"benchmark binary not found: {binary}")
    if not p.is_file():
        raise AmcError(f"benchmark binary is not a file: {binary}")
    return p


def current_fingerprint(target: str, threads: int, binary: str | None = None, serial: str | None = None,
                        adb: str | None = None) -> dict:
    """The fingerprint of the target a prediction is for, without timing anything. Over adb
    without --benchmark-binary the runtime cannot be known, so it is not compared."""
    if target == "local":
        if binary:
            from amc_tf.benchmarks.local import check_binary

            return BinaryTimer(check_binary(binary), Protocol(threads=threads)).fingerprint()
        return LocalTimer(threads=threads).fingerprint()
    from amc_tf.benchmarks.android import Adb, resolve_adb, select_serials

    host_binary = _android_binary(binary) if binary else None
    client = Adb(resolve_adb(adb))
    chosen = select_serials(client, [serial] if serial else [])[0]
    rc, out, _ = client.shell(chosen, "getprop ro.product.model", timeout=60)
    fp = {"target": "adb", "cpu": None, "device": out.strip() if rc == 0 and out.strip() else "unknown",
          "threads": threads, "delegate": "xnnpack"}
    fp["runtime"] = f"benchmark_model sha256:{sha256_file(host_binary)[:16]}" if host_binary else None
    return fp
