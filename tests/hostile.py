"""Craft PyTorch checkpoints byte by byte, valid or hostile, without torch.

`emit` writes protocol-2 pickle opcodes for plain values plus the few nodes a checkpoint
needs (a global, a call, a persistent id, a BUILD), so a test can put any value into any
field of a tensor record; `zip_checkpoint` and `legacy_checkpoint` wrap the pickle in the two
on-disk formats exactly as torch.save lays them out. `run_measured` runs the real CLI in a
subprocess and reports its exit code, stderr, peak RSS (wait4) and wall time.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    func: object
    args: tuple


@dataclass(frozen=True)
class PersId:
    pid: tuple


@dataclass(frozen=True)
class Build:
    obj: object
    state: object


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are (for malformed streams)."""

    data: bytes


def _emit(obj, out: list) -> None:
    if isinstance(obj, Raw):
        out.append(obj.data)
    elif obj is None:
        out.append(pickle.NONE)
    elif obj is True or obj is False:
        out.append(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            out.append(pickle.BININT + struct.pack("<i", obj))
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out.append(pickle.LONG1 + bytes([len(raw)]) + raw)
    elif isinstance(obj, float):
        out.append(pickle.BINFLOAT + struct.pack(">d", obj))
    elif isinstance(obj, str):
        raw = obj.encode()
        out.append(pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw)
    elif isinstance(obj, bytes):
        out.append(pickle.SHORT_BINBYTES + bytes([len(obj)]) + obj if len(obj) < 256
                   else pickle.BINBYTES + struct.pack("<I", len(obj)) + obj)
    elif isinstance(obj, tuple):
        out.append(pickle.MARK)
        for v in obj:
            _emit(v, out)
        out.append(pickle.TUPLE)
    elif isinstance(obj, list):
        out.append(pickle.EMPTY_LIST + pickle.MARK)
        for v in obj:
            _emit(v, out)
        out.append(pickle.APPENDS)
    elif isinstance(obj, dict):
        out.append(pickle.EMPTY_DICT + pickle.MARK)
        for k, v in obj.items():
            _emit(k, out)
            _emit(v, out)
        out.append(pickle.SETITEMS)
    elif isinstance(obj, Global):
        out.append(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    elif isinstance(obj, Call):
        _emit(obj.func, out)
        _emit(tuple(obj.args), out)
        out.append(pickle.REDUCE)
    elif isinstance(obj, PersId):
        _emit(obj.pid, out)
        out.append(pickle.BINPERSID)
    elif isinstance(obj, Build):
        _emit(obj.obj, out)
        _emit(obj.state, out)
        out.append(pickle.BUILD)
    else:
        raise TypeError(type(obj))


def emit(obj) -> bytes:
    out = [pickle.PROTO + b"\x02"]
    _emit(obj, out)
    out.append(pickle.STOP)
    return b"".join(out)


_STORAGES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage", np.dtype("float64"): "DoubleStorage"}


@dataclass
class Tensor:
    """A tensor record: storage key, its dtype's storage class, offset, size, stride (any values)."""

    key: str
    offset: object = 0
    size: object = ()
    stride: object = ()
    storage: str = "FloatStorage"
    numel: int = 0

    def node(self):
        pid = ("storage", Global("torch", self.storage), self.key, "cpu", self.numel)
        return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                    (PersId(pid), self.offset, self.size, self.stride, False,
                     Call(Global("collections", "OrderedDict"), ())))


def contiguous(key: str, arr: np.ndarray) -> Tensor:
    strides = tuple(s // arr.itemsize for s in arr.strides) if arr.size else (1,) * arr.ndim
    return Tensor(key, 0, tuple(arr.shape), strides, _STORAGES[arr.dtype], arr.size)


def state_dict_node(records: dict) -> Call:
    """An OrderedDict of {name: tensor record or any node}, as torch pickles a state dict."""
    items = [(k, v.node() if isinstance(v, Tensor) else v) for k, v in records.items()]
    return Call(Global("collections", "OrderedDict"), (items,))


@dataclass
class Storages:
    data: dict = field(default_factory=dict)  # key -> raw bytes
    itemsizes: dict = field(default_factory=dict)  # key -> bytes per element (default 4)

    def add(self, key: str, arr: np.ndarray) -> Tensor:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        self.data[key] = arr.tobytes()
        self.itemsizes[key] = arr.itemsize
        return contiguous(key, arr)


def zip_checkpoint(path, obj, storages: dict, *, compress: dict | None = None) -> Path:
    """The zip layout of torch.save: archive/data.pkl, archive/data/<key>, archive/byteorder.
    `compress`: {key: zipfile compression} for storages to deflate (torch stores them)."""
    path = Path(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", emit(obj) if not isinstance(obj, bytes) else obj)
        zf.writestr("archive/byteorder", b"little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw, compress_type=(compress or {}).get(key, zipfile.ZIP_STORED))
        zf.writestr("archive/version", b"3\n")
    return path


def legacy_checkpoint(path, obj, storages: dict, *, counts: dict | None = None, itemsizes: dict | None = None) -> Path:
    """The legacy stream: magic, protocol, sys info, the object, the storage keys, then each
    storage as an int64 element count (or `counts[key]`, any value) and its bytes."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2),
             emit(obj) if not isinstance(obj, bytes) else obj, pickle.dumps(list(storages), 2)]
    for key, raw in storages.items():
        count = (counts or {}).get(key, len(raw) // (itemsizes or {}).get(key, 4))
        parts.append(struct.pack("<q", count) + raw)
    Path(path).write_bytes(b"".join(parts))
    return Path(path)


def reemit(state_dict: dict, storages: Storages) -> dict:
    """Records (one storage each) for a real state dict, to re-emit it and tamper with one."""
    return {name: storages.add(str(i), arr) for i, (name, arr) in enumerate(state_dict.items())}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float
    wall_s: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "amc_tf", *map(str, args)]


def child_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    env.pop("AMC_TF_DEBUG", None)
    return env


# Runs the command and writes its peak RSS (KiB, from wait4 on it) to argv[1]. The command is
# spawned from this small process, not from the test session: Linux carries the forking
# process's peak RSS into the child's figure, which would make every figure the session's.
_LAUNCHER = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(args: list, *, cwd=None, timeout: float = 300, env: dict | None = None) -> Run:
    """Run a command; report its exit code, output, wall time and its own peak RSS."""
    import signal
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path, rss_path = (Path(tmp) / n for n in ("out", "err", "rss"))
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(rss_path), *map(str, args)], stdout=out,
                                    stderr=err, cwd=cwd, env=env or child_env(), start_new_session=True)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            wall = time.monotonic() - t0
        rss_kb = float(rss_path.read_text()) if rss_path.exists() else float("inf")
        return Run(proc.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                   rss_kb / 1024.0, wall)


def raw_zip(path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written field by field: entries are (name, data as stored, method, crc32, size when
    expanded), so a test can declare any expansion (a compression bomb) without producing it."""
    local, central, offset = [], [], 0
    for name, data, method, crc, size in entries:
        n = name.encode()
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(n), 0) + n
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                                   len(n), 0, 0, 0, 0, 0, offset) + n)
        local.append(header + data)
        offset += len(header) + len(data)
    cd = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), offset, 0)
    Path(path).write_bytes(b"".join(local) + cd + end)
    return Path(path)


def deflated_zeros(chunks: int, chunk: int = 64 << 20) -> tuple[bytes, int, int]:
    """Raw deflate of `chunks` x `chunk` zero bytes, built from one flushed segment repeated
    (each segment is independent after a full flush), with its crc32 and expanded size."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = comp.compress(bytes(chunk)) + comp.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(chunk)
    for _ in range(chunks):
        crc = zlib.crc32(zeros, crc)
    return segment * chunks + b"\x03\x00", crc, chunks * chunk
