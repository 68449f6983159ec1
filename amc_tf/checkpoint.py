"""Read PyTorch checkpoints without PyTorch.

Both on-disk formats are supported:

* the zip archive written by PyTorch >= 1.6 (``<root>/data.pkl`` plus one file per storage
  under ``<root>/data/``), and
* the legacy stream of PyTorch <= 1.5 (the format of the 2018 AMC release): a magic number,
  protocol version and sys-info pickles, the pickled object, a pickled list of storage keys,
  then each storage as an int64 element count followed by its raw bytes.

Unpickling goes through `_SafeUnpickler`, which resolves only the few globals a state dict
needs and refuses anything else *before* it could run: a checkpoint from a stranger never
executes code here.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import types
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from amc_tf.errors import CheckpointError, UnsafePickleError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# storage class name -> numpy dtype (little-endian on disk)
_STORAGE_DTYPES = {
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


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


class _Namespace(types.SimpleNamespace):
    """Stands in for argparse.Namespace, which training scripts often store as `args`."""


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Stand-in for torch._utils._rebuild_tensor{,_v2}: a numpy view, then a copy."""
    data, dtype_name = storage
    if isinstance(data, _LazyStorage):
        return _PendingTensor(data, storage_offset, tuple(size), tuple(stride))
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    itemsize = data.dtype.itemsize
    count = int(np.prod(size)) if size else 1
    if count == 0:
        arr = np.zeros(size, dtype=data.dtype)
    else:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if storage_offset < 0 or last >= data.size:
            raise CheckpointError("a tensor points outside its storage (file truncated or corrupt)")
        arr = np.lib.stride_tricks.as_strided(
            data[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride)
        ).copy()
    if dtype_name == "BFloat16Storage":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    return data


def _numpy_scalar(dtype, raw=None):
    return np.frombuffer(raw, dtype=dtype)[0] if raw is not None else dtype.type()


def _numpy_dtype(name, align=False, copy=False):
    return np.dtype(name)


# (module, name) -> the safe object returned for it
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("argparse", "Namespace"): _Namespace,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}
for _name in _STORAGE_DTYPES:
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name)


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals of `_ALLOWED_GLOBALS`; refuses every other one."""

    def __init__(self, fileobj, load_storage):
        super().__init__(fileobj)
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            pass
        if module.startswith("torch.nn") or module.startswith("__main__") or module.startswith("models"):
            raise UnsafePickleError(
                f"the checkpoint pickles a whole object ({module}.{name}), not a state dict; "
                "save model.state_dict() instead (refused, nothing was executed)"
            )
        raise UnsafePickleError(
            f"the checkpoint's pickle asks for {module}.{name}, which a state dict never needs "
            "(refused, nothing was executed)"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unknown persistent id in pickle: {pid!r:.60}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r:.60}")
        data = self._load_storage(str(pid[2]), storage_type, pid)
        return (data, storage_type.name)


def _load_zip(path: str) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: corrupt or truncated zip checkpoint ({exc})") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise CheckpointError(f"{path}: zip file without data.pkl: not a PyTorch checkpoint")
        root = pkl[0][: -len("data.pkl")]
        if f"{root}byteorder" in names and zf.read(f"{root}byteorder").strip() not in (b"little", b""):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")

        def load_storage(key, storage_type, pid):
            try:
                raw = zf.read(f"{root}data/{key}")
            except KeyError:
                raise CheckpointError(f"{path}: storage {key} is missing (truncated archive)") from None
            return np.frombuffer(raw, dtype=storage_type.dtype)

        try:
            return _SafeUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {exc})") from None


@dataclass
class _LazyStorage:
    """A legacy-format storage whose bytes come after the pickled object."""

    key: str
    storage_type: _StorageType
    data: np.ndarray | None = None


@dataclass
class _PendingTensor:
    storage: _LazyStorage
    offset: int
    size: tuple
    stride: tuple

    def resolve(self) -> np.ndarray:
        return _rebuild_tensor((self.storage.data, self.storage.storage_type.name), self.offset, self.size, self.stride)


def _resolve_pending(obj):
    if isinstance(obj, _PendingTensor):
        return obj.resolve()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_pending(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_pending(v) for v in obj)
    return obj


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as fh:
        stream = io.BytesIO(fh.read())

    def plain_load():
        return _SafeUnpickler(stream, _no_storage).load()

    storages: dict[str, _LazyStorage] = {}

    def lazy_storage(key, storage_type, pid):
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError(f"{path}: storage views of pre-0.4 checkpoints are not supported")
        return storages.setdefault(key, _LazyStorage(key, storage_type))

    try:
        if plain_load() != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        if plain_load() != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy checkpoint protocol")
        plain_load()  # sys info: endianness and type sizes
        obj = _SafeUnpickler(stream, lazy_storage).load()
        for key in plain_load():
            storage = storages.get(str(key))
            if storage is None:
                raise CheckpointError(f"{path}: storage {key} is not referenced by the checkpoint")
            (count,) = struct.unpack("<q", _read_exact(stream, 8, path))
            nbytes = count * storage.storage_type.dtype.itemsize
            storage.data = np.frombuffer(_read_exact(stream, nbytes, path), dtype=storage.storage_type.dtype)
    except (EOFError, pickle.UnpicklingError, ValueError, struct.error, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or truncated ({type(exc).__name__})") from None
    if any(s.data is None for s in storages.values()):
        raise CheckpointError(f"{path}: truncated checkpoint (tensor data missing)")
    return _resolve_pending(obj)


def _no_storage(key, storage_type, pid):
    raise CheckpointError("unexpected tensor storage in a checkpoint header")


def _read_exact(stream, n, path):
    data = stream.read(n)
    if len(data) != n:
        raise CheckpointError(f"{path}: truncated checkpoint (a tensor's data ends early)")
    return data


def load_pickled(path: str | os.PathLike) -> Any:
    """Unpickle a PyTorch checkpoint of either format, tensors as numpy arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        raise CheckpointError(f"{path}: truncated or corrupt zip checkpoint (no central directory)")
    if len(head) < 2 or head[0] != 0x80:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither zip archive nor pickle stream)")
    return _load_legacy(path)


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
        if not isinstance(value, np.ndarray):
            continue
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _find_state_dict(obj):
    if isinstance(obj, dict):
        if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
            return obj
        for name in ("state_dict", "model_state_dict", "model", "net", "state"):
            inner = obj.get(name)
            if isinstance(inner, dict):
                found = _find_state_dict(inner)
                if found is not None:
                    return found
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if len(tensors) >= 2:
            return obj
    return None


def checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Scalars stored beside the state dict (epoch, best_prec1, arch...), for report.json."""
    obj = load_pickled(path)
    meta = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        for key, value in obj.items():
            if isinstance(value, (int, float, str, bool)) or isinstance(value, np.generic):
                meta[str(key)] = value.item() if isinstance(value, np.generic) else value
            elif isinstance(value, np.ndarray) and value.size == 1:
                meta[str(key)] = value.item()
    return meta
