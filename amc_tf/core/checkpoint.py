"""Read PyTorch checkpoints without PyTorch.

Both on-disk formats are supported:

* the zip archive written by PyTorch >= 1.6 (``<root>/data.pkl`` plus one file per storage
  under ``<root>/data/``), and
* the legacy stream of PyTorch <= 1.5 (the format of the 2018 AMC release): a magic number,
  protocol version and sys-info pickles, the pickled object, a pickled list of storage keys,
  then each storage as an int64 element count followed by its raw bytes.

The file is untrusted: unpickling and every tensor record go through
`amc_tf.core.checkpoint_safety` (allow-listed globals only, validated records, bounded memory),
zip entries are read once each with their declared sizes checked first, and any malformed
input ends in one `CheckpointError` naming the file (docs/security.md).
"""

from __future__ import annotations

import collections
import io
import os
import struct
import zipfile
from typing import Any

import numpy as np

from amc_tf.core import checkpoint_safety as safety
from amc_tf.core.checkpoint_safety import Budget, StorageRef, materialize, tensor_record
from amc_tf.core.errors import CheckpointError
from amc_tf.core.pickle_budget import PickleBudget

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_NESTING = 100


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, budget: Budget | None) -> bytearray:
    """One zip entry's bytes, its declared size checked against `limit`, the budget and the
    compression ratio before anything is read; the read itself stops at the declared size."""
    what = f"zip entry {info.filename}"
    if info.file_size > limit:
        raise CheckpointError(f"{what} is {info.file_size} bytes, over the limit of {limit}; refused")
    if (info.compress_type != zipfile.ZIP_STORED and info.file_size > (1 << 20)
            and info.file_size > safety.MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
        raise CheckpointError(
            f"{what} expands from {info.compress_size} to {info.file_size} bytes (over "
            f"{safety.MAX_COMPRESSION_RATIO}:1, a compression bomb); refused")
    if budget is not None:
        budget.take_storage(info.file_size, what)
    buf = bytearray(info.file_size)
    view, pos = memoryview(buf), 0
    with zf.open(info) as fh:
        while pos < info.file_size:
            chunk = fh.read(min(1 << 20, info.file_size - pos))
            if not chunk:
                raise CheckpointError(f"{what} ends after {pos} of its {info.file_size} bytes (truncated)")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
    return buf


def _open_zip(fh, file_size: int) -> zipfile.ZipFile:
    """The archive, after checking its end record's entry count and directory size."""
    end = zipfile._EndRecData(fh)
    if end is None:
        raise CheckpointError("truncated or corrupt zip checkpoint (no central directory)")
    entries, cd_size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > safety.MAX_ZIP_ENTRIES:
        raise CheckpointError(f"the zip holds {entries} entries, over the limit of {safety.MAX_ZIP_ENTRIES}; refused")
    if cd_size > file_size:
        raise CheckpointError(f"the zip's central directory claims {cd_size} bytes in a {file_size}-byte file")
    fh.seek(0)
    return zipfile.ZipFile(fh)


def _load_zip(fh, file_size: int, budget: Budget) -> Any:
    with _open_zip(fh, file_size) as zf:
        infos = {info.filename: info for info in zf.infolist()}
        pkl = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise CheckpointError("zip file without data.pkl: not a PyTorch checkpoint")
        root = pkl[0][: -len("data.pkl")]
        order = infos.get(f"{root}byteorder")
        if order is not None and bytes(_read_entry(zf, order, 64, None)).strip() not in (b"little", b""):
            raise CheckpointError("big-endian checkpoints are not supported")
        storages: dict[str, StorageRef] = {}

        def load_storage(key, storage_type, pid):
            ref = storages.get(key)
            if ref is None:
                info = infos.get(f"{root}data/{key}")
                if info is None:
                    raise CheckpointError(f"storage {key} is missing (truncated archive)")
                raw = _read_entry(zf, info, safety.MAX_TOTAL_BYTES, budget)
                if len(raw) % storage_type.dtype.itemsize:
                    raise CheckpointError(f"storage {key} has {len(raw)} bytes, not a whole number of "
                                          f"{storage_type.dtype.itemsize}-byte elements")
                ref = storages[key] = StorageRef(key, storage_type, np.frombuffer(raw, dtype=storage_type.dtype))
            elif ref.storage_type != storage_type:
                raise CheckpointError(f"storage {key} is read as both {ref.storage_type.name} and {storage_type.name}")
            return ref

        def rebuild(storage, storage_offset, size, stride, *unused):
            return materialize(tensor_record(storage, storage_offset, size, stride, budget))

        data = _read_entry(zf, infos[pkl[0]], safety.MAX_PICKLE_BYTES, None)
        return safety.unpickle(io.BytesIO(data), load_storage, rebuild, PickleBudget.for_bytes(len(data)))


class _Capped:
    """A file reader that never asks for more than the file holds (so no read allocates more)."""

    def __init__(self, fh, size: int):
        self.fh, self.size, self.pos = fh, size, fh.tell()  # the position is kept here: no tell() per opcode

    def remaining(self) -> int:
        return max(0, self.size - self.pos)

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(self.remaining() if n is None or n < 0 else min(n, self.remaining()))
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        data = self.fh.readline(self.remaining())
        self.pos += len(data)
        return data


class _Pending:
    """A legacy-format tensor: validated now, built once its storage's bytes are read."""

    __slots__ = ("record",)

    def __init__(self, record):
        self.record = record


def _resolve(obj, memo: dict, depth: int = 0):
    """Replace every `_Pending` by its array; shared objects stay shared, cycles are refused."""
    if depth > _MAX_NESTING:
        raise CheckpointError(f"the pickled object is nested more than {_MAX_NESTING} levels deep")
    key = id(obj)
    if key in memo:
        if memo[key] is None:
            raise CheckpointError("the pickled object contains itself")
        return memo[key]
    if isinstance(obj, _Pending):
        out = materialize(obj.record)
    elif isinstance(obj, (dict, list, tuple)):
        memo[key] = None
        if isinstance(obj, dict):
            out = type(obj)((k, _resolve(v, memo, depth + 1)) for k, v in obj.items())
        else:
            out = type(obj)(_resolve(v, memo, depth + 1) for v in obj)
    else:
        return obj
    memo[key] = out
    return out


def _load_legacy(fh, file_size: int, budget: Budget) -> Any:
    stream = _Capped(fh, file_size)
    objects = PickleBudget.for_bytes(file_size)  # one budget for the file's five pickles

    def plain_load():
        return safety.unpickle(stream, _no_storage, _no_tensor, objects)

    storages: dict[str, StorageRef] = {}

    def lazy_storage(key, storage_type, pid):
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views of pre-0.4 checkpoints are not supported")
        ref = storages.setdefault(key, StorageRef(key, storage_type))
        if ref.storage_type != storage_type:
            raise CheckpointError(f"storage {key} is read as both {ref.storage_type.name} and {storage_type.name}")
        return ref

    def rebuild(storage, storage_offset, size, stride, *unused):
        return _Pending(tensor_record(storage, storage_offset, size, stride, budget))

    if plain_load() != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    if plain_load() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy checkpoint protocol")
    plain_load()  # sys info: endianness and type sizes
    obj = safety.unpickle(stream, lazy_storage, rebuild, objects)
    keys = plain_load()
    if not isinstance(keys, list) or len(keys) > safety.MAX_ZIP_ENTRIES:
        raise CheckpointError("the list of storage keys is missing or malformed")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"storage {_short(key)} is not referenced by the checkpoint")
        if storage.data is not None:
            raise CheckpointError(f"storage {storage.key} is listed twice")
        (count,) = struct.unpack("<q", _read_exact(stream, 8))
        itemsize = storage.storage_type.dtype.itemsize
        if count < 0 or count * itemsize > stream.remaining():
            raise CheckpointError(f"truncated or corrupt: storage {storage.key} claims {count} elements of "
                                  f"{itemsize} bytes, but {stream.remaining()} bytes are left in the file")
        budget.take_storage(count * itemsize, f"storage {storage.key}")
        storage.data = np.frombuffer(_read_exact(stream, count * itemsize), dtype=storage.storage_type.dtype)
    if any(s.data is None for s in storages.values()):
        raise CheckpointError("truncated checkpoint (tensor data missing)")
    return _resolve(obj, {})


def _short(value) -> str:
    text = repr(value) if isinstance(value, (str, int)) else type(value).__name__
    return text[:40]


def _no_storage(key, storage_type, pid):
    raise CheckpointError("unexpected tensor storage in a checkpoint header")


def _no_tensor(*args):
    raise CheckpointError("unexpected tensor in a checkpoint header")


def _read_exact(stream, n):
    data = stream.read(n)
    if len(data) != n:
        raise CheckpointError("truncated checkpoint (a tensor's data ends early)")
    return data


def load_pickled(path: str | os.PathLike) -> Any:
    """Unpickle a PyTorch checkpoint of either format, tensors as numpy arrays. Any malformed,
    hostile or oversized input raises `CheckpointError("<path>: <what is wrong>")`."""
    path = os.fspath(path)
    safety.check_regular_file(path)
    from amc_tf.core.fileutil import open_regular

    try:
        with open_regular(path) as fh:  # a FIFO or device swapped in after the check is still refused
            size = os.fstat(fh.fileno()).st_size
            limit = safety.MAX_TOTAL_BYTES + safety.MAX_PICKLE_BYTES
            if size > limit:
                raise CheckpointError(f"the file is {size} bytes, over the limit of {limit} "
                                      "(a MobileNet checkpoint is < 20 MB); refused")
            head = fh.read(4)
            is_zip = head == b"PK\x03\x04" or zipfile.is_zipfile(fh)
            fh.seek(0)
            if is_zip:
                return _load_zip(fh, size, Budget())
            if len(head) < 2 or head[0] != 0x80:
                raise CheckpointError("not a PyTorch checkpoint (neither zip archive nor pickle stream)")
            return _load_legacy(fh, size, Budget())
    except CheckpointError as exc:
        message = str(exc)
        raise type(exc)(message if message.startswith(f"{path}: ") else f"{path}: {message}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the pickled object is nested too deeply; refused") from None
    except MemoryError:
        raise CheckpointError(f"{path}: reading it ran out of memory; refused") from None
    except Exception as exc:  # any other malformation (bad opcode, bad zip, bad utf-8...): one error
        detail = " ".join(str(exc).split())[:160]
        if isinstance(exc, KeyError):  # the pure-Python unpickler's unknown opcode or memo entry
            detail = f"unknown pickle opcode or memo entry {detail}"
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {detail})") from None


def load_state_dict(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """Return the checkpoint's state dict as an ordered {key: numpy array}.

    Accepts a bare state dict or a dict holding one under `state_dict` (or `model`,
    `model_state_dict`, `net`), and strips a DataParallel `module.` prefix.
    """
    obj = load_pickled(path)
    sd = _find_state_dict(obj)
    if sd is None:
        raise CheckpointError(f"{os.fspath(path)}: the file holds no state dict of tensors")
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for key, value in sd.items():
        if not isinstance(value, np.ndarray) or not isinstance(key, str):
            continue
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _find_state_dict(obj, depth: int = 0):
    if isinstance(obj, dict) and depth < 8:
        if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
            return obj
        for name in ("state_dict", "model_state_dict", "model", "net", "state"):
            inner = obj.get(name)
            if isinstance(inner, dict) and inner is not obj:
                found = _find_state_dict(inner, depth + 1)
                if found is not None:
                    return found
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if len(tensors) >= 2:
            return obj
    return None


def _plain_scalar(value):
    """A JSON-safe scalar for report.json (bool, bounded int, float, short str), else None."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else None
    if isinstance(value, np.generic):
        value = value.item() if value.dtype.kind in "biuf" else None
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**63):
        return value
    if isinstance(value, float) or (isinstance(value, str) and len(value) <= 200):
        return value
    return None


def checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Scalars stored beside the state dict (epoch, best_prec1, arch...), for report.json."""
    obj = load_pickled(path)
    meta = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        for key, value in obj.items():
            scalar = _plain_scalar(value)
            if scalar is not None and isinstance(key, str) and len(key) <= 200:
                meta[key] = scalar
    return meta
