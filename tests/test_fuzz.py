"""Property tests (hypothesis, bounded to well under 30 s each) of the two parsers of untrusted
input: the checkpoint reader returns exactly the tensors a record describes or raises
CheckpointError - never another exception; the benchmark log parser never raises and never
reports a number that is not finite."""

from __future__ import annotations

import math
import tempfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amc_tf.core.checkpoint import load_pickled, load_state_dict
from amc_tf.core.errors import CheckpointError
from amc_tf.benchmarks.logparse import parse_text
from hostile import Build, Global, Storages, Tensor, legacy_checkpoint, state_dict_node, zip_checkpoint

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

_dim = st.one_of(st.integers(-3, 9), st.sampled_from([2**31, 2**63, 10**30, -(2**40)]))
_shape = st.one_of(st.lists(_dim, max_size=4).map(tuple), st.none(), st.just("ab"), st.tuples(st.floats(0, 3)),
                   st.lists(st.integers(0, 3), min_size=9, max_size=10).map(tuple))
_offset = st.one_of(st.integers(-3, 80), st.none(), st.floats(0, 5), st.just(2**64))


def _expected(storage: np.ndarray, offset, size, stride):
    """The tensor a valid record describes, element by element (the oracle)."""
    out = np.zeros(size, storage.dtype)
    for idx in np.ndindex(*size):
        out[idx] = storage[offset + sum(i * s for i, s in zip(idx, stride))]
    return out


def _is_valid(n_storage, offset, size, stride) -> bool:
    ints = lambda v: isinstance(v, tuple) and all(type(x) is int and x >= 0 for x in v)  # noqa: E731
    if type(offset) is not int or offset < 0 or not ints(size) or not ints(stride) or len(size) != len(stride):
        return False
    # the reader refuses a dimension over its element limit even when another is 0: an empty
    # tensor of shape (0, 2**63) is no MobileNet's, and numpy cannot even shape it
    if len(size) > 8 or math.prod(size) > 1 << 26 or any(n > 1 << 26 for n in size):
        return False
    return math.prod(size) == 0 or offset + sum((n - 1) * s for n, s in zip(size, stride)) < n_storage


@FUZZ
@given(fmt=st.sampled_from(["zip", "legacy"]), n=st.integers(0, 64), offset=_offset, size=_shape, stride=_shape,
       dtype=st.sampled_from(["float32", "int64", "float64"]))
def test_reader_returns_the_described_tensor_or_refuses(fmt, n, offset, size, stride, dtype):
    storage = np.arange(n, dtype=dtype)
    sto = Storages()
    record = sto.add("0", storage)
    record.offset, record.size, record.stride = offset, size, stride
    records = {"a.weight": record, "b.weight": sto.add("1", np.ones(3, "float32"))}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pth"
        if fmt == "zip":
            zip_checkpoint(path, state_dict_node(records), sto.data)
        else:
            legacy_checkpoint(path, state_dict_node(records), sto.data, itemsizes=sto.itemsizes)
        try:
            got = load_state_dict(path)
        except CheckpointError:
            assert not _is_valid(n, offset, size, stride)
            return
    assert _is_valid(n, offset, size, stride)
    assert got["a.weight"].shape == tuple(size) and got["a.weight"].dtype == storage.dtype
    np.testing.assert_array_equal(got["a.weight"], _expected(storage, offset, size, stride))


def _good_files() -> dict[str, bytes]:
    sto = Storages()
    records = {"conv.weight": sto.add("0", np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)),
               "bn.num_batches_tracked": sto.add("1", np.array(5, np.int64))}
    with tempfile.TemporaryDirectory() as tmp:
        z = zip_checkpoint(Path(tmp) / "z", state_dict_node(records), sto.data).read_bytes()
        g = legacy_checkpoint(Path(tmp) / "l", state_dict_node(records), sto.data, itemsizes=sto.itemsizes).read_bytes()
    return {"zip": z, "legacy": g}


GOOD = _good_files()


@FUZZ
@given(fmt=st.sampled_from(["zip", "legacy"]), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
       st.integers(0, 255)), max_size=6), cut=st.one_of(st.none(), st.floats(0, 1)))
def test_reader_survives_corrupted_bytes(fmt, flips, cut):
    data = bytearray(GOOD[fmt])
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pth"
        path.write_bytes(bytes(data))
        try:
            sd = load_state_dict(path)
        except CheckpointError:
            return
    assert all(isinstance(v, np.ndarray) for v in sd.values())


@FUZZ
@given(target=st.sampled_from([("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2"),
                               ("collections", "OrderedDict"), ("builtins", "set"), ("numpy", "dtype")]),
       state=st.one_of(st.dictionaries(st.sampled_from(["name", "dtype", "__class__", "x"]), st.integers()),
                       st.tuples(st.integers(), st.text(max_size=3))))
def test_build_never_changes_what_later_files_read(target, state):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_pickled(zip_checkpoint(Path(tmp) / "b", Build(Global(*target), state), {}))
        except CheckpointError:
            pass
        path = Path(tmp) / "good"
        path.write_bytes(GOOD["zip"])
        got = load_state_dict(path)
    assert got["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(got["conv.weight"].ravel(), np.arange(24, dtype=np.float32))


LOG_LINES = [
    "native : benchmark_tflite_model.cc:412 Running benchmark for 200 iterations with detailed stat logging:",
    "native : benchmark_tflite_model.cc:440 count=200 first=67444 curr=68656 min=66997 max=71141 avg=68307.7 std=758",
    "native : benchmark_tflite_model.cc:590 Average inference timings in us: Warmup: 68459.8, no stats: 68307",
    "INFO: Running benchmark for at least 200 iterations and at least 0 seconds but terminate if exceeding 150 seconds.",
    "INFO: count=200 first=1e+05 curr=9.9e4 min=nan max=inf avg=1.2e309 std=-0 p5=1 median=2 p95=3",
    "INFO: Inference timings in us: Init: 3, First inference: 4, Warmup (avg): 5e3, Inference (avg): 6.5e3",
    "INFO: Memory footprint delta from the start of the tool (MB): init=3.1 overall=9.9",
    "========== BENCHMARK RESULTS ==========", "Inference (avg): 1.5 ms", "Benchmarking failed.",
    "\t                 CONV_2D\t    0.000\t    5.228\t    3.367\t  4.928%\t  4.928%\t     0.000\t        1\t[x]",
    "============================== Run Order ==============================", "\x1b[31m", "",
]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(LOG_LINES), st.text(max_size=80),
                          st.sampled_from(LOG_LINES).map(lambda s: s[: len(s) // 2])), max_size=40))
def test_log_parser_never_raises_and_never_reports_a_non_finite_number(lines):
    res = parse_text("\n".join(lines))
    assert res.status in ("ok", "failed", "no_result") and res.failed == (res.status != "ok")
    for name, value in res.as_dict().items():
        if isinstance(value, float):
            assert math.isfinite(value), (name, value)
    if res.ok:
        assert res.inference_avg_us is not None and res.inference_avg_us >= 0


def test_fuzz_inputs_include_valid_records():
    """The structured fuzz is not all refusals: a plain valid record reads back exactly."""
    storage = np.arange(10, dtype=np.float32)
    assert _is_valid(10, 1, (3, 2), (3, 1))
    np.testing.assert_array_equal(_expected(storage, 1, (3, 2), (3, 1)), [[1, 2], [4, 5], [7, 8]])
    assert zlib.crc32(GOOD["zip"]) != zlib.crc32(GOOD["legacy"])
