"""The security boundary of the torch-free checkpoint reader (used by amc_tf/core/checkpoint.py).

A checkpoint from a stranger is hostile until proven otherwise, so this module:
- unpickles with a pure-Python unpickler that resolves only the globals a state dict needs,
  and refuses BUILD (`__setstate__` / `__dict__` updates) on anything but the fresh
  containers this load created, so a file can never change the allow-list's objects;
- counts what the opcodes build against a budget derived from the file's size
  (amc_tf/core/pickle_budget.py), so a stream of one-byte opcodes cannot build gigabytes;
- validates every tensor record (integer sizes, non-negative strides and offset, the real
  strided extent inside its storage) and counts elements and bytes against fixed limits
  *before* any memory is allocated for it.

Every refusal is a `CheckpointError` naming what is wrong and the numbers.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from amc_tf.core.errors import CheckpointError, UnsafePickleError
from amc_tf.core.pickle_budget import PickleBudget, charged_dispatch

# Limits, far above any MobileNet (V1 1.0 is 4.2M parameters, 17 MB; its largest tensor
# 1.0M elements), far below what could hurt the machine.
MAX_TENSOR_ELEMENTS = 1 << 26  # 67M elements per tensor
MAX_TOTAL_BYTES = 512 << 20  # storages read + tensors built, each, per file
MAX_PICKLE_BYTES = 64 << 20  # the pickled object itself (a MobileNet's is ~50 KB)
MAX_RANK = 8
MAX_COMPRESSION_RATIO = 100  # torch stores storages uncompressed; deflate can reach ~1000:1
MAX_ZIP_ENTRIES = 100_000  # a MobileNet checkpoint has a few hundred

# storage class name -> numpy dtype (little-endian on disk)
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # widened to float32 after reading
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True, slots=True)
class StorageType:
    """The stand-in for torch.FloatStorage & co. Slotted and frozen: no state to overwrite."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


_STORAGE_TYPES = {name: StorageType(name) for name in STORAGE_DTYPES}


def check_regular_file(path: str) -> int:
    """The size of `path`, after refusing what is not a regular file: a device such as /dev/zero
    or a FIFO would be read forever."""
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a device, FIFO or socket is not read)")
    return st.st_size


class Budget:
    """Bytes of storage read and of tensors built so far for one file, against MAX_TOTAL_BYTES."""

    def __init__(self):
        self.storage_bytes = 0
        self.tensor_bytes = 0

    def take_storage(self, nbytes: int, what: str) -> None:
        if nbytes < 0:
            raise CheckpointError(f"{what} has a negative size ({nbytes} bytes)")
        if self.storage_bytes + nbytes > MAX_TOTAL_BYTES:
            raise CheckpointError(
                f"{what} would bring the storage read to {self.storage_bytes + nbytes} bytes, over the "
                f"limit of {MAX_TOTAL_BYTES} (a MobileNet checkpoint holds < 20 MB); refused")
        self.storage_bytes += nbytes

    def take_tensor(self, nbytes: int, what: str) -> None:
        if self.tensor_bytes + nbytes > MAX_TOTAL_BYTES:
            raise CheckpointError(
                f"{what} would bring the tensors to {self.tensor_bytes + nbytes} bytes, over the limit of "
                f"{MAX_TOTAL_BYTES} (a MobileNet checkpoint holds < 20 MB); refused")
        self.tensor_bytes += nbytes


class StorageRef:
    """What a persistent id resolves to: a storage of this load (data filled now or later)."""

    __slots__ = ("key", "storage_type", "data")

    def __init__(self, key: str, storage_type: StorageType, data: np.ndarray | None = None):
        self.key, self.storage_type, self.data = key, storage_type, data


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_RANK:
        raise CheckpointError(f"a tensor record's {what} is {_short(value)}, not a tuple of at most {MAX_RANK} integers")
    if not all(type(v) is int for v in value):
        raise CheckpointError(f"a tensor record's {what} {_short(value)} holds a non-integer")
    if any(v < 0 for v in value):
        raise CheckpointError(f"a tensor record's {what} {_short(value)} is negative")
    return tuple(value)


def _short(value) -> str:
    text = repr(value) if isinstance(value, (int, float, str, bytes, type(None), tuple, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class TensorRecord:
    """A validated tensor record: shape, strides and offset checked for type, sign and size."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    count: int


def tensor_record(storage, storage_offset, size, stride, budget: Budget) -> TensorRecord:
    """Check a `_rebuild_tensor` call's arguments before anything is allocated for them."""
    if not isinstance(storage, StorageRef):
        raise CheckpointError(f"a tensor record's storage is a {type(storage).__name__}, not a storage of this file")
    if type(storage_offset) is not int or storage_offset < 0:
        raise CheckpointError(f"a tensor record's storage offset is {_short(storage_offset)}, not an integer >= 0")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"a tensor record has size {size} but stride {stride} (different ranks)")
    count = 1
    for n in size:
        count *= n
        if n > MAX_TENSOR_ELEMENTS or count > MAX_TENSOR_ELEMENTS:
            raise CheckpointError(f"a tensor of size {size} has more than {MAX_TENSOR_ELEMENTS} elements "
                                  f"(the limit, far above any MobileNet's); refused")
    budget.take_tensor(count * storage.storage_type.dtype.itemsize, f"a tensor of size {size}")
    return TensorRecord(storage, storage_offset, size, stride, count)


def materialize(record: TensorRecord) -> np.ndarray:
    """The tensor as a fresh numpy array, after checking its strided extent lies in its storage."""
    data = record.storage.data
    if data is None:
        raise CheckpointError(f"storage {record.storage.key} has no data (truncated checkpoint)")
    if record.count == 0:
        arr = np.zeros(record.size, dtype=data.dtype)
    else:
        last = record.offset + sum((n - 1) * s for n, s in zip(record.size, record.stride))
        if last >= data.size:
            raise CheckpointError(
                f"a tensor of size {record.size}, stride {record.stride} at offset {record.offset} reaches element "
                f"{last} of storage {record.storage.key}, which has {data.size}; refused")
        itemsize = data.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            data[record.offset:], shape=record.size, strides=tuple(s * itemsize for s in record.stride),
            writeable=False).copy()
    if record.storage.storage_type.name == "BFloat16Storage":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


class Namespace(types.SimpleNamespace):
    """Stands in for argparse.Namespace, which training scripts often store as `args`."""


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    return data


def _numpy_dtype(name, align=False, copy=False):
    dtype = np.dtype(name) if isinstance(name, str) and len(name) <= 8 else None
    if dtype is None or dtype.kind not in "biufc" or dtype.itemsize > 16:
        raise CheckpointError(f"a numpy scalar of dtype {_short(name)} (only numbers are read)")
    return dtype


def _latin1_bytes(text, encoding="utf-8", errors="strict"):
    """Stand-in for _codecs.encode, with which protocol-2 pickles spell bytes (a numpy scalar's)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or len(text) > 4096:
        raise CheckpointError(f"a pickled _codecs.encode({_short(text)}, {_short(encoding)}) (only short latin1 bytes are read)")
    return text.encode("latin1")


def _numpy_scalar(dtype, raw=None):
    if not isinstance(dtype, np.dtype):
        raise CheckpointError(f"a numpy scalar with dtype {_short(dtype)}")
    if raw is None:
        return dtype.type()
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise CheckpointError(f"a numpy {dtype} scalar with {_short(raw)} as its bytes")
    return np.frombuffer(raw, dtype=dtype)[0]


class SafeUnpickler(pickle._Unpickler):
    """Resolves only the allowed globals; every other global is refused before it could run.

    Pure Python (pickle._Unpickler) so BUILD can be checked: it is allowed only on a fresh
    OrderedDict (torch's `_metadata`, ignored), a fresh argparse Namespace (its fields) and a
    numpy dtype (its state ignored); everything else the stream could reach - the allowed
    functions, classes and storage types - is refused, so the allow-list stays as it is.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, fileobj, load_storage, rebuild_tensor, budget: PickleBudget):
        super().__init__(fileobj)
        self._pickle_budget = budget
        self._load_storage = load_storage
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "slice"): slice,
            ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("argparse", "Namespace"): Namespace,
            ("numpy.core.multiarray", "scalar"): _numpy_scalar,
            ("numpy._core.multiarray", "scalar"): _numpy_scalar,
            ("numpy", "dtype"): _numpy_dtype,
            ("_codecs", "encode"): _latin1_bytes,
            **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
        }

    def find_class(self, module, name):
        if self.proto < 3 and (module, name) in _compat_pickle.NAME_MAPPING:  # pickles written by Python 2
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif self.proto < 3 and module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = self._allowed.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
        if found is not None:
            return found
        where = f"{_short(module)}.{_short(name)}".replace("'", "")
        if isinstance(module, str) and module.startswith(("torch.nn", "__main__", "models")):
            raise UnsafePickleError(
                f"the checkpoint pickles a whole object ({where}), not a state dict; "
                "save model.state_dict() instead (refused, nothing was executed)")
        raise UnsafePickleError(
            f"the checkpoint's pickle asks for {where}, which a state dict never needs (refused, nothing was executed)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 3 or pid[0] != "storage":
            raise CheckpointError(f"unknown persistent id in pickle: {_short(pid)}")
        storage_type = pid[1]
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"unsupported storage type {_short(storage_type)}")
        if not isinstance(pid[2], (str, int)) or len(str(pid[2])) > 64:
            raise CheckpointError(f"a storage key {_short(pid[2])}")
        return self._load_storage(str(pid[2]), storage_type, pid)

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            if isinstance(state, tuple) and len(state) > 1 and state[1] == ">":
                raise CheckpointError("big-endian numpy scalars are not supported")
            return  # the dtype came from np.dtype(name): its state adds nothing we read
        if type(inst) is collections.OrderedDict:
            return  # torch's state_dict._metadata: not needed
        if type(inst) is Namespace and isinstance(state, dict) and all(type(k) is str for k in state):
            inst.__dict__.update(state)
            return
        raise UnsafePickleError(
            f"the checkpoint's pickle sets the state of a {type(inst).__name__}, which a state dict never does "
            "(refused, nothing was changed)")

    dispatch[pickle.BUILD[0]] = load_build

    def load_inst(self):
        raise UnsafePickleError("the checkpoint's pickle uses INST (protocol-0 object creation); refused")

    dispatch[pickle.INST[0]] = load_inst
    dispatch[pickle.OBJ[0]] = load_inst

    def load_buffer(self):
        raise CheckpointError("the checkpoint's pickle holds a bytearray or out-of-band buffer, which a state dict "
                              "never does; refused")

    for _op in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_op[0]] = load_buffer
    del _op

    # every opcode charged against the file's object budget before what it builds can grow
    dispatch = charged_dispatch(dispatch)


def unpickle(fileobj, load_storage, rebuild_tensor, budget: PickleBudget) -> Any:
    """One pickled object, its opcodes charged to `budget` (amc_tf/core/pickle_budget.py). The
    cyclic garbage collector pauses meanwhile: it would rescan every object built so far, again
    and again, for a stream of containers (twice the time, for nothing: the budget bounds them)."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return SafeUnpickler(fileobj, load_storage, rebuild_tensor, budget).load()
    finally:
        if was_enabled:
            gc.enable()
