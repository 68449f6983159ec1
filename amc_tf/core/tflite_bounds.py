"""Bound what a .tflite makes LiteRT allocate, before LiteRT sees it.

LiteRT trusts a model's declared tensor shapes: `allocate_tensors()` plans an arena for every
tensor without data from its shape, so a 2.3 KB file declaring a [1024, 1024, 1024] float
tensor takes 4 GB. `check_model` reads the flatbuffer itself (a small bounded reader: every
offset and vector length checked against the file before it is followed; nothing is allocated
per tensor) and refuses, with one `ModelFileError`:

* a file over `MAX_FILE_BYTES`, or one that is not a well-formed TFLite flatbuffer;
* more than `MAX_SUBGRAPHS` subgraphs, `MAX_TENSORS` tensors in all, a rank over `MAX_RANK`,
  a negative dimension;
* a tensor declaring more than `MAX_TENSOR_BYTES`, or tensors without data (the ones LiteRT
  allocates) declaring more than `MAX_ARENA_BYTES` together (an upper bound of LiteRT's arena:
  it reuses memory between tensors, never needs more than all of them);
* a buffer whose data lies outside the file.

Declared shapes are not the last word: LiteRT's Prepare recomputes output shapes from inputs and
constants (a BROADCAST_TO to a constant shape declared [1]), and plans dynamic ones at invoke.
`check_allocated` applies the same bounds to the shapes LiteRT computed, right after
`allocate_tensors()` and before anything runs (an arena reserved but not yet written).

A MobileNetV2 1.0 at 224 declares 51 MB in all (its largest tensor 5.1 MB); at 1024, the
largest input the toolkit converts, about 1.07 GB.
"""

from __future__ import annotations

import mmap
import os
import struct

from amc_tf.core.errors import ModelFileError

MAX_FILE_BYTES = 576 << 20  # as the checkpoint and ONNX readers (a MobileNet .tflite is < 20 MB)
MAX_SUBGRAPHS = 1_000
MAX_TENSORS = 100_000  # in all subgraphs (a MobileNet has about 180)
MAX_RANK = 16
MAX_TENSOR_BYTES = 512 << 20  # one tensor (a MobileNet at 1024x1024: 107 MB)
MAX_ARENA_BYTES = 1536 << 20  # all tensors without data together (a MobileNetV2 at 1024x1024: 1.07 GB)

# TensorType -> bytes per element (flatbuffer enum of tensorflow/lite/schema/schema.fbs);
# unknown, string, resource and variant types count as 8
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 8, 14: 8,
              15: 4, 16: 2, 17: 1, 18: 2}
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
              8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 15: "uint32", 16: "uint16",
              17: "int4", 18: "bfloat16"}


class _Bad(Exception):
    """The flatbuffer is malformed (an offset or a length outside the file)."""


class _Over(Exception):
    """A well-formed count past its bound (the message names the count and the bound)."""


class _Buf:
    """Bounds-checked little-endian reads of a flatbuffer (an mmap or bytes)."""

    def __init__(self, data):
        self.data, self.size = data, len(data)

    def _get(self, fmt: str, pos: int, n: int):
        if pos < 0 or pos + n > self.size:
            raise _Bad(f"a read of {n} bytes at offset {pos} is outside the {self.size}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u8(self, pos): return self._get("<B", pos, 1)
    def u16(self, pos): return self._get("<H", pos, 2)
    def u32(self, pos): return self._get("<I", pos, 4)
    def i32(self, pos): return self._get("<i", pos, 4)
    def u64(self, pos): return self._get("<Q", pos, 8)

    def table(self, pos: int) -> "_Table":
        vtable = pos - self.i32(pos)
        vlen = self.u16(vtable)
        if vlen < 4 or vlen % 2 or vtable + vlen > self.size:
            raise _Bad(f"a vtable at offset {vtable} of length {vlen}")
        return _Table(self, pos, vtable, vlen)


class _Table:
    def __init__(self, buf: _Buf, pos: int, vtable: int, vlen: int):
        self.buf, self.pos, self.vtable, self.vlen = buf, pos, vtable, vlen

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        return self.buf.u16(self.vtable + slot) if slot < self.vlen else 0

    def scalar(self, index: int, read, default=0):
        off = self._field(index)
        return read(self.pos + off) if off else default

    def _indirect(self, index: int) -> int | None:
        off = self._field(index)
        if not off:
            return None
        at = self.pos + off
        return at + self.buf.u32(at)

    def table(self, index: int) -> "_Table | None":
        at = self._indirect(index)
        return None if at is None else self.buf.table(at)

    def vector(self, index: int, elem_size: int, limit: int | None = None, what: str = "a vector") -> tuple[int, int]:
        """(start offset, length) of a vector field, its extent checked against the file."""
        at = self._indirect(index)
        if at is None:
            return 0, 0
        length = self.buf.u32(at)
        if at + 4 + length * elem_size > self.buf.size:  # garbage, not a large model: checked first
            raise _Bad(f"{what} of {length} entries runs past the end of the file")
        if limit is not None and length > limit:
            raise _Over(f"{what} has {length} entries, over the limit of {limit}; refused")
        return at + 4, length

    def tables(self, index: int, limit: int | None = None, what: str = "a vector"):
        start, length = self.vector(index, 4, limit, what)
        for i in range(length):
            at = start + 4 * i
            yield self.buf.table(at + self.buf.u32(at))


def _describe_bytes(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / (1 << 30):.1f} GiB)" if n >= 1 << 30 else f" ({n / (1 << 20):.1f} MiB)" if n >= 1 << 20 else "")


def check_buffer(data, where: str = "the model") -> dict:
    """Check a .tflite's bytes (see the module doc); returns what was read:
    {"tensors", "arena_bytes", "largest_bytes", "inputs": [shapes of subgraph 0's inputs]}."""
    buf = _Buf(data)
    try:
        if buf.size < 8:
            raise _Bad("shorter than a flatbuffer header")
        if bytes(data[4:8]) != b"TFL3":
            raise _Bad("no TFL3 identifier")
        model = buf.table(buf.u32(0))
        # Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers
        buffers = []
        for b in model.tables(4, MAX_TENSORS + 1, "the buffer list"):
            # Buffer: 0 data [ubyte], 1 offset (u64), 2 size (u64): data beyond the flatbuffer
            _, length = b.vector(0, 1, None, "a buffer's data")
            offset, size = b.scalar(1, buf.u64), b.scalar(2, buf.u64)
            if offset > 1 and (offset > buf.size or size > buf.size - offset):
                raise _Bad(f"a buffer at offset {offset} of {size} bytes lies outside the {buf.size}-byte file")
            buffers.append(length or (size if offset > 1 else 0))
        total, largest, count, inputs = 0, 0, 0, []
        subgraphs = list(model.tables(2, MAX_SUBGRAPHS, "the subgraph list"))
        if not subgraphs:
            raise ModelFileError(f"{where}: the model has no subgraph; refused")
        for g, graph in enumerate(subgraphs):
            shapes = []
            for t in graph.tables(0, MAX_TENSORS, "a subgraph's tensor list"):
                count += 1
                if count > MAX_TENSORS:
                    raise ModelFileError(f"{where}: more than {MAX_TENSORS} tensors (a MobileNet has about 180); refused")
                # Tensor: 0 shape [int], 1 type (byte), 2 buffer (uint)
                start, rank = t.vector(0, 4, MAX_RANK, "a tensor's shape")
                dims = [buf.i32(start + 4 * i) for i in range(rank)]
                if any(d < 0 for d in dims):
                    raise ModelFileError(f"{where}: tensor {len(shapes)} of subgraph {g} has shape {dims} "
                                         "(a negative dimension); refused")
                kind = t.scalar(1, buf.u8, 0)
                nbytes = TYPE_BYTES.get(kind, 8)
                for d in dims:
                    nbytes *= d
                shapes.append((dims, kind))
                if nbytes > MAX_TENSOR_BYTES:
                    raise ModelFileError(
                        f"{where}: tensor {len(shapes) - 1} of subgraph {g} declares shape {dims} "
                        f"({TYPE_NAMES.get(kind, f'type {kind}')}): {_describe_bytes(nbytes)}, over the limit of "
                        f"{_describe_bytes(MAX_TENSOR_BYTES)} per tensor; refused before LiteRT allocates it")
                index = t.scalar(2, buf.u32, 0)
                if index >= len(buffers) and index != 0:
                    raise _Bad(f"tensor {len(shapes) - 1} of subgraph {g} names buffer {index} of {len(buffers)}")
                if not (index and buffers[index]):  # no data in the file: LiteRT allocates it
                    total += nbytes
                    largest = max(largest, nbytes)
                    if total > MAX_ARENA_BYTES:
                        raise ModelFileError(
                            f"{where}: its tensors declare more than {_describe_bytes(MAX_ARENA_BYTES)} together "
                            f"(the limit; a MobileNet at 224 declares 51 MB); refused before LiteRT allocates them")
            if g == 0:
                start, n_in = graph.vector(1, 4, MAX_TENSORS, "the subgraph's inputs")
                for i in range(n_in):
                    k = buf.i32(start + 4 * i)
                    if 0 <= k < len(shapes):
                        inputs.append(shapes[k][0])
    except _Bad as exc:
        raise ModelFileError(f"{where}: not a loadable .tflite (malformed flatbuffer: {exc})") from None
    except _Over as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    return {"tensors": count, "arena_bytes": total, "largest_bytes": largest, "inputs": inputs}


def check_model(path_or_bytes) -> dict:
    """`check_buffer` on a .tflite file (mapped, not read: the walk touches only its tables) or
    on its bytes; a file over MAX_FILE_BYTES is refused before anything is read."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return check_buffer(path_or_bytes)
    path = os.fspath(path_or_bytes)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise ModelFileError(f"{path}: the file is {size} bytes, over the limit of {MAX_FILE_BYTES} "
                                 "(a MobileNet .tflite is < 20 MB); refused")
        if size == 0:
            raise ModelFileError(f"{path}: not a loadable .tflite (an empty file)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return check_buffer(data, path)


def check_allocated(interp, where: str, file_bytes: int = 0) -> None:
    """The bounds again, on the shapes LiteRT computed in allocate_tensors() (ModelFileError):
    each tensor at most MAX_TENSOR_BYTES, all of them at most MAX_ARENA_BYTES plus the file's
    size (constant data lives in the file)."""
    import numpy as np

    total = 0
    for t in interp.get_tensor_details():
        nbytes = np.dtype(t["dtype"]).itemsize if t["dtype"] is not None else 8
        for d in t["shape"]:
            nbytes *= max(int(d), 1)
        if nbytes > MAX_TENSOR_BYTES:
            raise ModelFileError(
                f"{where}: tensor {t['index']} becomes {[int(d) for d in t['shape']]} once LiteRT computes its shape: "
                f"{_describe_bytes(nbytes)}, over the limit of {_describe_bytes(MAX_TENSOR_BYTES)} per tensor; "
                "refused before running it")
        total += nbytes
        if total > MAX_ARENA_BYTES + file_bytes:
            raise ModelFileError(f"{where}: its tensors take more than {_describe_bytes(MAX_ARENA_BYTES + file_bytes)} "
                                 "together once LiteRT computes their shapes; refused before running it")
