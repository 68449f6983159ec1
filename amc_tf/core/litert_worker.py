"""The LiteRT interpreter in a child process, for models from outside (eval, parity, compare,
diff, latency's timer).

LiteRT is native code, and a crafted .tflite can crash it (CALL_ONCE subgraphs calling each
other: SIGSEGV; a uint8 ADD without quantization parameters: SIGABRT in allocate_tensors) or
make it run forever (a WHILE that never ends). `IsolatedInterpreter` loads the model once in a
long-lived `amc_tf.core.service.Service` and sends it whole batches: the batch goes through
shared memory (a memfd), the outputs come back on a pipe, so the cost is one round trip per
batch, not per image. The parent turns every way the child can end into one error:

* it died of a signal or exited: `ModelCrashedError` (exit 2), naming the model and the signal;
* no progress for AMC_TF_LITERT_TIMEOUT seconds (default 120; the child reports progress after
  each image): `ModelHangError` (exit 3), the child killed;
* LiteRT raised (not a flatbuffer, a failed invoke): `ModelFileError` (exit 2).

The child is killed and reaped by `close()` (also at garbage collection and at exit), dies with
its parent, and leaves no file behind (the shared memory is a memfd).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from amc_tf.core.errors import AmcError, ModelCrashedError, ModelFileError, ModelHangError

TIMEOUT_ENV = "AMC_TF_LITERT_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0


def litert_timeout() -> float:
    """Seconds without progress before a LiteRT child is declared hung (AMC_TF_LITERT_TIMEOUT)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise AmcError(f"{TIMEOUT_ENV}={text[:40]!r}: want a number of seconds > 0")
    return value


# --- the parent's side -----------------------------------------------------------------------

def _from_json(d: dict) -> dict:
    """A tensor detail as LiteRT's get_*_details give it (numpy shapes and dtypes)."""
    q = d.get("quantization_parameters", {})
    return dict(d, shape=np.asarray(d["shape"], np.int32), shape_signature=np.asarray(d["shape_signature"], np.int32),
                dtype=np.dtype(d["dtype"]).type, quantization=tuple(d["quantization"]),
                quantization_parameters={"scales": np.asarray(q.get("scales", []), np.float32),
                                         "zero_points": np.asarray(q.get("zero_points", []), np.int32),
                                         "quantized_dimension": int(q.get("quantized_dimension", 0))})


class IsolatedInterpreter:
    """A .tflite (path or bytes) loaded in a LiteRT child process (`load()` replaces it: one child
    serves many models). The interpreter-like part of its API (get_input_details,
    get_output_details, get_tensor_details) answers from what the child reported at load;
    `run()` sends a batch."""

    def __init__(self, source=None, *, threads: int = 1, delegates: bool = True, preserve_all_tensors: bool = False):
        from amc_tf.core import quiet
        from amc_tf.core.service import Service

        self.where = "the model"
        self._inputs, self._outputs, self._tensors, self._op_outputs = [], [], None, None
        self._service = Service("amc_tf.core.litert_worker", timeout=litert_timeout(), capture_stderr=quiet.active())
        if source is not None:
            try:
                self.load(source, threads=threads, delegates=delegates, preserve_all_tensors=preserve_all_tensors)
            except BaseException:
                self.close()
                raise

    def load(self, source, *, threads: int = 1, delegates: bool = True, preserve_all_tensors: bool = False) -> None:
        """Load a .tflite (path or bytes) in the child, replacing the model it held."""
        in_memory = isinstance(source, (bytes, bytearray))
        self.where = "the model" if in_memory else os.fspath(source)
        if not in_memory and not os.path.isfile(self.where):
            raise ModelFileError(f"{self.where}: "
                                 f"{'not a regular file' if os.path.exists(self.where) else 'no such .tflite file'}")
        from amc_tf.core.tflite_bounds import check_model

        check_model(source)  # declared sizes bounded here, before the child allocates anything
        header = {"op": "load", "threads": int(threads), "delegates": bool(delegates),
                  "preserve_all_tensors": bool(preserve_all_tensors)}
        if in_memory:
            reply, _ = self._call("loading", header, data=bytes(source))
        else:
            reply, _ = self._call("loading", dict(header, path=os.path.abspath(self.where)))
        self._inputs = [_from_json(d) for d in reply["inputs"]]
        self._outputs = [_from_json(d) for d in reply["outputs"]]
        self._tensors = self._op_outputs = None

    def get_input_details(self) -> list[dict]:
        return list(self._inputs)

    def get_output_details(self) -> list[dict]:
        return list(self._outputs)

    def _load_tensors(self) -> None:
        if self._tensors is None:
            reply, _ = self._call("reading", {"op": "tensors"})
            self._tensors = [_from_json(d) for d in reply["tensors"]]
            self._op_outputs = [int(i) for i in reply["op_outputs"]]

    def get_tensor_details(self) -> list[dict]:
        self._load_tensors()
        return list(self._tensors)

    def op_outputs(self) -> list[int]:
        """The output tensor indices of every op, in execution order."""
        self._load_tensors()
        return list(self._op_outputs)

    def run(self, x: np.ndarray, outputs: list[int] | None = None, input_index: int | None = None) -> list[np.ndarray]:
        """Invoke once per sample of `x` ([N, ...], already of the input's type); for each tensor
        in `outputs` (default: the model's first output) its values stacked: [N, *tensor shape]."""
        x = np.ascontiguousarray(x)
        outputs = [int(i) for i in (outputs if outputs is not None else [self._outputs[0]["index"]])]
        index = self._inputs[0]["index"] if input_index is None else int(input_index)
        shapes = {int(d["index"]): d for d in self._outputs}
        if outputs and any(i not in shapes for i in outputs):
            shapes.update({int(d["index"]): d for d in self.get_tensor_details()})
        expect = sum(len(x) * int(np.prod(shapes[i]["shape"])) * np.dtype(shapes[i]["dtype"]).itemsize
                     for i in outputs)
        header = {"op": "run", "input": index, "dtype": x.dtype.str, "shape": list(x.shape), "outputs": outputs}
        reply, payload = self._call("running", header, data=x if x.size else b"\0", limit=expect)
        arrays, offset = [], 0
        for spec in reply["arrays"]:
            dtype, shape = np.dtype(spec["dtype"]), tuple(int(s) for s in spec["shape"])
            n = int(np.prod(shape)) * dtype.itemsize
            arrays.append(np.frombuffer(payload, dtype, int(np.prod(shape)), offset).reshape(shape))
            offset += n
        return arrays

    def time_invokes(self, n: int, seed: int = 0) -> list[int]:
        """Fill the inputs with uniform(-1, 1) values, invoke `n` times; each invoke's ns."""
        reply, _ = self._call("running", {"op": "time", "n": int(n), "seed": int(seed)})
        return [int(t) for t in reply["ns"]]

    def close(self) -> None:
        self._service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, doing: str, header: dict, data=None, limit: int = 1 << 31):
        from amc_tf.core.service import ServiceDied, ServiceError, ServiceTimedOut

        try:
            return self._service.request(header, data, limit=limit)
        except ServiceDied as exc:
            raise ModelCrashedError(f"{self.where}: LiteRT {exc.describe()} while {doing} the model "
                                    "(it ran in a separate process; nothing else was affected)") from None
        except ServiceTimedOut as exc:
            raise ModelHangError(f"{self.where}: LiteRT made no progress {doing} the model for {exc.seconds:g} s; "
                                 f"stopped it (the limit is {TIMEOUT_ENV})") from None
        except ServiceError as exc:
            detail = " ".join(str(exc).split())[:200]
            if doing == "loading":
                raise ModelFileError(f"{self.where}: not a loadable .tflite ({detail})") from None
            raise ModelFileError(f"{self.where}: LiteRT failed {doing} the model ({detail})") from None


# --- the child's side (amc_tf.core.service.serve_main runs these) ------------------------------

_state: dict = {}


def _to_json(d: dict) -> dict:
    q = d.get("quantization_parameters", {})
    return {"name": str(d["name"]), "index": int(d["index"]), "shape": [int(s) for s in d["shape"]],
            "shape_signature": [int(s) for s in d.get("shape_signature", d["shape"])],
            "dtype": np.dtype(d["dtype"]).str, "quantization": [float(d["quantization"][0]), int(d["quantization"][1])],
            "quantization_parameters": {"scales": [float(s) for s in q.get("scales", [])],
                                        "zero_points": [int(z) for z in q.get("zero_points", [])],
                                        "quantized_dimension": int(q.get("quantized_dimension", 0))}}


def _load(header, _payload, ctx):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _state.clear()
    kwargs = {"num_threads": header["threads"]}
    if not header["delegates"]:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if header["preserve_all_tensors"]:
        kwargs["experimental_preserve_all_tensors"] = True
    if "path" in header:
        interp = Interpreter(model_path=header["path"], **kwargs)
    else:
        interp = Interpreter(model_content=bytes(ctx.shared(header["shared"])), **kwargs)
    interp.allocate_tensors()
    from amc_tf.core.tflite_bounds import check_allocated

    where = header.get("path", "the model")
    check_allocated(interp, where, os.path.getsize(where) if "path" in header else len(ctx.shared(header["shared"])))
    _state["interp"] = interp
    return {"inputs": [_to_json(d) for d in interp.get_input_details()],
            "outputs": [_to_json(d) for d in interp.get_output_details()]}, []


def _tensors(_header, _payload, _ctx):
    interp = _state["interp"]
    ops = [int(i) for op in interp._get_ops_details() for i in op["outputs"]]  # noqa: SLF001 - no public listing
    return {"tensors": [_to_json(d) for d in interp.get_tensor_details()], "op_outputs": ops}, []


def _run(header, _payload, ctx):
    interp = _state["interp"]
    shape = tuple(header["shape"])
    x = np.frombuffer(ctx.shared(header["shared"]), np.dtype(header["dtype"]), int(np.prod(shape))).reshape(shape)
    collected = [[] for _ in header["outputs"]]
    for sample in x:
        interp.set_tensor(header["input"], sample[None])
        _invoke(interp)
        ctx.tick()
        for rows, index in zip(collected, header["outputs"]):
            rows.append(interp.get_tensor(index))
    del x
    arrays = [np.ascontiguousarray(np.stack(rows)) if rows else np.zeros((0,), np.float32) for rows in collected]
    return {"arrays": [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]}, arrays


def _invoke(interp) -> None:
    """One invoke with the child's memory growth bounded (membudget.growth_limited): tensors whose
    shapes come from values are allocated only now, so a crafted model is stopped here, in the
    child, where no other thread allocates."""
    from amc_tf.core.membudget import growth_limited

    with growth_limited():
        interp.invoke()


def _time(header, _payload, ctx):
    interp = _state["interp"]
    rng = np.random.default_rng(header["seed"])
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], rng.uniform(-1, 1, size=tuple(d["shape"])).astype(d["dtype"]))
    invoke, clock, out = interp.invoke, time.perf_counter_ns, []
    for _ in range(header["n"]):
        t0 = clock()
        invoke()
        out.append(clock() - t0)
        ctx.tick()
    return {"ns": out}, []


HANDLERS = {"load": _load, "tensors": _tensors, "run": _run, "time": _time}
