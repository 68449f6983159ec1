"""Allocation before bounds, for MODEL inputs: crafted checkpoints and ONNX files that would
make a reader allocate gigabytes from a few megabytes are refused by the reader's own budget,
through the real CLI in a subprocess (exit 2, one `error:` line, peak RSS and time bounded);
the budgets themselves are checked in-process (each estimate covers what the parse really
allocates; a parse past its budget is refused); and the memory backstop (RLIMIT_DATA) turns
an allocation failure into one line while a real conversion still fits under it.
"""

from __future__ import annotations

import io
import pickle
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amc_tf.core import checkpoint_safety, membudget, pickle_budget, protobuf_bounds
from amc_tf.core.errors import CheckpointError
from hostile import child_env, cli_command, run_measured

MAX_RSS_MB = 700  # the CLI with numpy and onnx imported is ~100 MB; unbounded, these cases reach GBs
MAX_WALL_S = 120  # generous: the test machine is shared


def assert_refused(run, path, pattern: str):
    """Exit 2, one `error:` line naming the file and matching `pattern`, no traceback, low RSS."""
    import re

    errors = [line for line in run.lines if line.startswith("error:")]
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    assert len(errors) == 1 and run.lines[-1] == errors[0], run.stderr[-2000:]
    assert errors[0].startswith(f"error: {path}: "), errors[0]
    assert re.search(pattern, errors[0]), errors[0]
    print(f"[figure] peak RSS {run.max_rss_mb:.0f} MB, {run.wall_s:.1f} s: {errors[0][:160]}")
    assert run.max_rss_mb < MAX_RSS_MB and run.wall_s < MAX_WALL_S, (run.max_rss_mb, run.wall_s)


def convert(path: Path, tmp_path: Path):
    out = tmp_path / "out"
    run = run_measured(cli_command("convert", path, "-o", out, "-q"), timeout=600)
    assert not out.exists()
    return run


# --- pickles ---------------------------------------------------------------------------------

def _legacy_stream(body: bytes) -> bytes:
    """A legacy-format checkpoint whose first pickle (the magic number's) is `body`."""
    return b"\x80\x02" + body + b"."


def _zip_stream(tmp: Path, body: bytes) -> Path:
    import zipfile

    path = tmp / "z.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02" + body + b".")
    return path


# Each maker: (bytes of opcodes, repeated) - one-byte opcodes that build an object each, or a
# container copied by an allowed global again and again.
_SET_GLOBAL = b"cbuiltins\nset\nq\x00"
_FROZENSET_GLOBAL = b"cbuiltins\nfrozenset\nq\x00"


def _copies(global_: bytes, items: int, calls: int) -> bytes:
    """A list of `items` distinct ints (memo 1), its 1-tuple (memo 2), then `calls` calls of the
    global on it, each one a fresh copy."""
    ints = b"".join(b"J" + i.to_bytes(4, "little") for i in range(items))
    return (global_ + b"](" + ints + b"eq\x01h\x01\x85q\x02" + b"h\x00h\x02R" * calls)


PICKLE_CASES = {
    "empty-sets-12MB-legacy": lambda tmp: _write(tmp / "s.pth", _legacy_stream(b"\x8f" * 12_000_000)),
    "empty-dicts-memoized-legacy": lambda tmp: _write(tmp / "d.pth", b"\x80\x04" + b"}\x94" * 5_000_000 + b"."),
    "marks-and-lists-zip": lambda tmp: _zip_stream(tmp, b"(]" * 4_000_000),
    "set-copies-of-one-list-zip": lambda tmp: _zip_stream(tmp, _copies(_SET_GLOBAL, 200_000, 5_000)),
    "frozenset-copies-legacy": lambda tmp: _write(tmp / "f.pth", _legacy_stream(_copies(_FROZENSET_GLOBAL, 100_000, 20_000))),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(PICKLE_CASES))
def test_pickle_that_builds_past_its_budget_is_refused(case, tmp_path):
    path = PICKLE_CASES[case](tmp_path)
    run = convert(path, tmp_path)
    assert_refused(run, path, r"the pickle builds more than \d+ bytes of objects")


def _unpickle_measured(data: bytes, limit: int):
    """(refused?, budget, peak bytes tracemalloc saw) for one pickle under a `limit`-byte budget."""
    budget = pickle_budget.PickleBudget(limit)
    tracemalloc.start()
    try:
        checkpoint_safety.unpickle(io.BytesIO(data), None, None, budget)
        refused = False
    except CheckpointError as exc:
        assert "the pickle builds more than" in str(exc), exc
        refused = True
    except (pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError, ValueError, AttributeError):
        refused = True  # malformed: refused by the reader (one CheckpointError at its boundary)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return refused, budget, peak


# the opcodes an attacker would combine: containers, marks, memo traffic, calls of allowed globals
_OPS = st.sampled_from([b"\x8f", b"}", b"]", b")", b"(", b"\x94", b"h\x00", b"N", b"e", b"u", b"\x90", b"t", b"l",
                        b"\x91", b"J\x01\x00\x00\x00", b"X\x05\x00\x00\x00abcde", b"2", b"0", b"h\x00h\x01R"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(ops=st.lists(st.tuples(st.lists(_OPS, min_size=1, max_size=6), st.integers(1, 40_000)), min_size=1, max_size=5))
def test_pickle_budget_covers_what_the_unpickler_allocates(ops):
    """Whatever opcodes build, tracemalloc's peak stays under the budget: the estimate is an upper
    bound of the real allocation, so a stream is refused before it allocates more than its budget."""
    body = _SET_GLOBAL + b"(]q\x01" + b"".join(b"".join(seq) * n for seq, n in ops)
    limit = 8 << 20
    refused, budget, peak = _unpickle_measured(b"\x80\x04" + body + b".", limit)
    assert budget.used <= limit or refused
    assert peak <= limit + (1 << 20), (peak, budget.used, refused)


def test_pickle_budget_follows_the_file_size():
    assert pickle_budget.PickleBudget.for_bytes(0).limit == pickle_budget.FLOOR
    assert pickle_budget.PickleBudget.for_bytes(12_000_000).limit == pickle_budget.FLOOR + 8 * 12_000_000
    assert pickle_budget.PickleBudget.for_bytes(10**9).limit == pickle_budget.CAP
    refused, budget, _ = _unpickle_measured(b"\x80\x02" + b"\x8f" * 100_000 + b".", 1 << 20)
    assert refused and budget.used > 1 << 20


def test_real_checkpoint_uses_a_small_part_of_its_budget(make_checkpoint):
    """A MobileNetV2 1.0 checkpoint's pickle is charged ~1.4 MB: 24x under the 32 MiB floor."""
    from amc_tf.core import checkpoint

    path, _, _ = make_checkpoint("v2-1.0")
    seen = []
    original = pickle_budget.PickleBudget.for_bytes.__func__

    def spy(cls, n):
        seen.append(original(cls, n))
        return seen[-1]

    checkpoint.PickleBudget.for_bytes = classmethod(spy)
    try:
        sd = checkpoint.load_state_dict(path)
    finally:
        checkpoint.PickleBudget.for_bytes = classmethod(original)
    assert len(sd) > 300
    (budget,) = seen
    print(f"[figure] MobileNetV2 1.0 pickle: {budget.used} bytes charged of {budget.limit}")
    assert budget.used < 3 << 20


# --- ONNX ------------------------------------------------------------------------------------

def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _packed_int64_model(path: Path, nbytes: int) -> Path:
    """ModelProto.graph(7).initializer(5).int64_data(7, packed): one element per wire byte."""
    tensor = _field(7, b"\x01" * nbytes)
    path.write_bytes(_field(7, _field(5, tensor)))
    return path


def _empty_nodes_model(path: Path, count: int) -> Path:
    """ModelProto.graph(7) holding `count` empty NodeProtos (2 bytes each, ~150 decoded)."""
    path.write_bytes(_field(7, b"\x0a\x00" * count))
    return path


def _concat_model(path: Path, copies: int, width: int = 1000) -> Path:
    """A small graph whose first node Concats one initializer `copies` times."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    init = numpy_helper.from_array(np.zeros(width, np.float32), "w")
    node = helper.make_node("Concat", ["w"] * copies, ["c"], axis=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)], [init])
    onnx.save(helper.make_model(graph), path)
    return path


def _gather_model(path: Path, indices: int) -> Path:
    """Gather of a [1000, 1000] initializer by `indices` indices: 1000 x indices elements."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    data = numpy_helper.from_array(np.zeros((1000, 1000), np.float32), "d")
    idx = numpy_helper.from_array(np.zeros(indices, np.int64), "i")
    node = helper.make_node("Gather", ["d", "i"], ["g"], axis=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("g", TensorProto.FLOAT, None)], [data, idx])
    onnx.save(helper.make_model(graph), path)
    return path


ONNX_CASES = {
    "packed-int64-64MB": (lambda tmp: _packed_int64_model(tmp / "p.onnx", 64 << 20), r"decoding it would take more than"),
    "empty-nodes-10MB": (lambda tmp: _empty_nodes_model(tmp / "n.onnx", 5_000_000), r"decoding it would take more than"),
    "concat-one-initializer-100000-times": (lambda tmp: _concat_model(tmp / "c.onnx", 100_000),
                                            r"would fold to 100000000 elements"),
    "gather-1M-rows": (lambda tmp: _gather_model(tmp / "g.onnx", 1_000_000), r"\(Gather\) would fold to"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_that_decodes_or_folds_past_its_budget_is_refused(case, tmp_path):
    make, pattern = ONNX_CASES[case]
    path = make(tmp_path)
    run = convert(path, tmp_path)
    assert_refused(run, path, pattern)


def test_many_concats_under_the_per_tensor_limit_meet_the_graph_limit():
    """Each Concat alone is allowed; together they pass the graph's folded-bytes budget."""
    from onnx import TensorProto, helper, numpy_helper

    from amc_tf.converters.onnx_graph import walk_graph
    from amc_tf.core import onnx_io

    init = numpy_helper.from_array(np.zeros(1 << 20, np.float32), "w")  # 1M elements; 8 copies: 64 MB (8-byte bound)
    nodes = [helper.make_node("Concat", ["w"] * 8, [f"c{i}"], axis=0) for i in range(8)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("c0", TensorProto.FLOAT, None)], [init])
    with pytest.raises(CheckpointError, match="would bring the folded constants to"):
        walk_graph(helper.make_model(graph))
    each = 8 * (1 << 20)  # elements of one Concat: under the per-tensor limit
    assert each <= onnx_io.MAX_FOLDED_ELEMENTS and 8 * each * 8 > onnx_io.MAX_FOLDED_BYTES


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(parts=st.lists(st.tuples(st.sampled_from(["packed", "nodes", "strings", "dims"]), st.integers(1, 300_000)),
                      min_size=1, max_size=4))
def test_decode_estimate_covers_what_onnx_load_allocates(tmp_path_factory, parts):
    """For files mixing packed fields, empty messages, strings and unpacked dims, the walk's
    estimate is at least what decoding them allocates (measured as RSS growth of ParseFromString)."""
    import gc

    import onnx

    graph = b""
    for kind, n in parts:
        if kind == "packed":
            graph += _field(5, _field(7, b"\x01" * n))
        elif kind == "nodes":
            graph += b"\x0a\x00" * n
        elif kind == "strings":
            graph += _field(1, _field(1, b"") * min(n, 100_000))
        else:
            graph += _field(5, b"\x08\x01" * n)
    data = _field(7, graph)
    path = tmp_path_factory.mktemp("pb") / "m.onnx"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        budget = protobuf_bounds.DecodeBudget(len(data), limit=1 << 40)
        protobuf_bounds.walk(fh, len(data), onnx.ModelProto.DESCRIPTOR, budget)
    gc.collect()
    before = _rss()
    model = onnx.ModelProto()
    model.ParseFromString(data)
    grew = _rss() - before
    del model
    assert grew <= budget.used + (4 << 20), (grew, budget.used)


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_decode_budget_follows_the_file_size(tmp_path):
    import onnx

    assert protobuf_bounds.DecodeBudget(0).limit == protobuf_bounds.FLOOR
    assert protobuf_bounds.DecodeBudget(10**8).limit == protobuf_bounds.FLOOR + 2 * 10**8
    assert protobuf_bounds.DecodeBudget(10**10).limit == protobuf_bounds.CAP
    path = _packed_int64_model(tmp_path / "small.onnx", 1 << 20)  # 1 MiB: about 24 MiB estimated, allowed
    assert protobuf_bounds.check_file(path, onnx.ModelProto.DESCRIPTOR).used < protobuf_bounds.FLOOR
    path.write_bytes(b"\x3a\x05\x0a\x00")  # a sub-message claiming more bytes than the file has
    with pytest.raises(CheckpointError, match="malformed protobuf"):
        protobuf_bounds.check_file(path, onnx.ModelProto.DESCRIPTOR)


def test_field_count_and_nesting_are_bounded_before_decoding(tmp_path):
    import onnx

    many = tmp_path / "fields.onnx"
    many.write_bytes(b"\x08\x01" * (protobuf_bounds.MAX_FIELDS + 1))  # ir_version, again and again
    with pytest.raises(CheckpointError, match="more than 1000000 protobuf fields"):
        protobuf_bounds.check_file(many, onnx.ModelProto.DESCRIPTOR)
    inner = b""
    for _ in range(30):  # GraphProto.node -> NodeProto.attribute -> AttributeProto.g -> GraphProto ...
        inner = _field(1, _field(5, _field(6, inner)))
    deep = tmp_path / "deep.onnx"
    deep.write_bytes(_field(7, inner))
    with pytest.raises(CheckpointError, match="messages nest more than 64 deep"):
        protobuf_bounds.check_file(deep, onnx.ModelProto.DESCRIPTOR)


# --- the memory backstop ----------------------------------------------------------------------

def test_memory_limit_parsing_and_restoring():
    assert membudget.parse_size("4G") == 4 << 30
    assert membudget.parse_size("512M") == 512 << 20
    assert membudget.parse_size("0") is None and membudget.parse_size("off") is None
    with pytest.raises(membudget.LimitSyntaxError):
        membudget.parse_size("lots")
    with pytest.raises(membudget.LimitSyntaxError):
        membudget.parse_size("1M")  # too little to import TensorFlow
    assert membudget.default_limit() >= 4 << 30
    before = membudget.current_limit()
    with membudget.limited(3 << 30):
        assert membudget.current_limit() == min(3 << 30, before or 3 << 30)
        with pytest.raises(membudget.OutOfMemory, match="memory budget of 3 GiB"):
            with membudget.limited(3 << 30):
                np.ones(4 << 30, np.uint8)  # refused by the kernel under the limit: MemoryError
    assert membudget.current_limit() == before


def test_growth_limit_allows_the_headroom_and_refuses_beyond_it():
    before = membudget.current_limit()
    with membudget.growth_limited(256 << 20):
        kept = np.ones(128 << 20, np.uint8)  # within the headroom
        with pytest.raises(membudget.OutOfMemory):
            with membudget.growth_limited(64 << 20):
                np.ones(256 << 20, np.uint8)
    assert membudget.current_limit() == before and kept.sum() == 128 << 20


def test_allocation_failure_under_the_limit_is_one_line(tmp_path):
    """A conversion under a 300 MiB budget (the smallest accepted) runs out of memory: one line
    naming the budget, exit 2, whether it happens in Python, an allocator or a library's loader."""
    from cli_run import DIGITS

    out = tmp_path / "out"
    run = run_measured(cli_command("convert", DIGITS, "-o", out, "-q"), env=dict(child_env(), AMC_TF_MEMORY_LIMIT="300M"),
                       timeout=600)
    errors = [line for line in run.lines if line.startswith("error:")]
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert errors == [run.lines[-1]] and "memory budget of 300 MiB" in errors[0], run.stderr[-2000:]
    assert not out.exists()


def test_conversion_and_eval_fit_under_the_default_limit(tmp_path):
    """The real convert (TensorFlow, LiteRT, the torch self-check) and eval run under the default
    budget, which is in force in the child (read back from /proc)."""
    from cli_run import DIGITS

    out = tmp_path / "out"
    run = run_measured(cli_command("convert", DIGITS, "-o", out, "-q", "--input-size", "64"), timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    data = tmp_path / "data"
    from PIL import Image

    for c in range(10):
        (data / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((70, 90, 3), 20 * c, np.uint8)).save(data / str(c) / "a.png")
    for target in (out, out / "model.tflite"):
        run = run_measured(cli_command("eval", target, "--data", data, "-q"), timeout=900)
        assert run.returncode == 0, run.stderr[-2000:]
    code = ("from amc_tf.core import membudget\n"
            "with membudget.limited():\n    print(open('/proc/self/limits').read())")
    run = run_measured([sys.executable, "-c", code])
    line = next(line for line in run.stdout.splitlines() if line.startswith("Max data size"))
    assert int(line.split()[3]) == membudget.default_limit(), line
