"""Bound what decoding a protobuf file will allocate, before decoding it.

`onnx.load` decodes the whole ModelProto in one call, so every check after it comes too late:
a packed repeated int64 holds one element per wire byte and each becomes 8 bytes (upb's
arrays grow by doubling, so about 21 bytes of memory per byte of file were measured), an empty
sub-message is 2 bytes on the wire and about 150 in memory. A 260 MB file decodes past 2 GB.

`check_file` walks the wire format with the message schema (the descriptors of the generated
classes: which field is a sub-message, a string, a packed scalar), reading the file in 1 MiB chunks
and seeking past string and bytes payloads, allocating nothing per field. It adds up an upper
estimate of the decoded size and stops with one `CheckpointError` as soon as the estimate
passes the budget (`FLOOR + PER_BYTE * file size`, capped at `CAP`), when the walk meets more
than `MAX_FIELDS` fields or nesting deeper than `MAX_DEPTH`, or when the wire format is
malformed. Only then may the caller decode.

Costs (bytes of memory, measured on upb and rounded up): `MESSAGE_COST` per message, a string
or bytes field its length plus `STRING_COST`, a non-packed repeated scalar `SCALAR_COST` per
element, a packed field `PACKED_FACTOR` (varints: one element per wire byte at most, arrays
grown by doubling) or `FIXED_FACTOR` (fixed width: sized once) times its elements' width in
memory, an unknown field its length plus `STRING_COST`.
"""

from __future__ import annotations

import os

from amc_tf.core.errors import CheckpointError

FLOOR = 64 << 20  # decoded bytes any file may need
PER_BYTE = 2  # and this many per byte of file (raw tensor data decodes to about its own size)
CAP = 1 << 30  # never more
MAX_FIELDS = 1_000_000  # a MobileNet ONNX has 3,500 (tensor data is one field each)
MAX_DEPTH = 64  # upb refuses 100; a MobileNet's graph nests 4 deep

MESSAGE_COST = 192  # measured: 153 bytes per empty NodeProto
STRING_COST = 48  # measured: 36 bytes per empty repeated string
SCALAR_COST = 24  # measured: 15 bytes per non-packed int64
PACKED_FACTOR = 3  # measured: 21 bytes per wire byte of packed one-byte int64 varints (8 wide)
FIXED_FACTOR = 1.25  # measured: 1.0 byte per wire byte of packed floats (sized once, no doubling)

_CHUNK = 1 << 20


class _Schema:
    """For one message type: field number -> (kind, sub-schema or element width)."""

    __slots__ = ("name", "fields")

    def __init__(self, name: str):
        self.name = name
        self.fields: dict[int, tuple[str, object]] = {}


def _schema(descriptor, cache: dict) -> _Schema:
    """kinds: msg (a sub-message), str (string/bytes), scalar (with its width in memory)."""
    from google.protobuf.descriptor import FieldDescriptor as F

    if descriptor.full_name in cache:
        return cache[descriptor.full_name]
    schema = cache[descriptor.full_name] = _Schema(descriptor.full_name)
    widths = {F.TYPE_DOUBLE: 8, F.TYPE_FLOAT: 4, F.TYPE_INT64: 8, F.TYPE_UINT64: 8, F.TYPE_INT32: 4,
              F.TYPE_FIXED64: 8, F.TYPE_FIXED32: 4, F.TYPE_BOOL: 1, F.TYPE_UINT32: 4, F.TYPE_ENUM: 4,
              F.TYPE_SFIXED32: 4, F.TYPE_SFIXED64: 8, F.TYPE_SINT32: 4, F.TYPE_SINT64: 8}
    for field in descriptor.fields:
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
            schema.fields[field.number] = ("msg", _schema(field.message_type, cache))
        elif field.type in (F.TYPE_STRING, F.TYPE_BYTES):
            schema.fields[field.number] = ("str", None)
        else:
            fixed = field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT, F.TYPE_FIXED64, F.TYPE_FIXED32,
                                   F.TYPE_SFIXED32, F.TYPE_SFIXED64)
            width = widths.get(field.type, 8)
            # wire bytes per element at least: fixed width, or 1 for a varint
            schema.fields[field.number] = ("scalar", (width, width if fixed else 1))
    return schema


class _Malformed(Exception):
    pass


class DecodeBudget:
    """The estimate of decoded bytes, fields and depth, against their limits."""

    def __init__(self, file_size: int, limit: int | None = None):
        self.file_size = file_size
        self.limit = min(CAP, FLOOR + PER_BYTE * file_size) if limit is None else limit
        self.used = 0
        self.fields = 0

    def charge(self, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise CheckpointError(
                f"decoding it would take more than {self.limit} bytes of memory (the budget for a "
                f"{self.file_size}-byte file: {FLOOR >> 20} MiB + {PER_BYTE} per byte; packed fields and "
                "empty messages expand many times on decoding); refused before decoding")

    def field(self) -> None:
        self.fields += 1
        if self.fields > MAX_FIELDS:
            raise CheckpointError(f"the file holds more than {MAX_FIELDS} protobuf fields (a MobileNet's has a few "
                                  "thousand); refused before decoding")


def walk(fh, size: int, root_descriptor, budget: DecodeBudget) -> None:
    """Walk one message of type `root_descriptor` spanning the file's `size` bytes.

    The file is read in chunks of `_CHUNK` bytes, a chunk refilled whenever fewer than 32 bytes
    (more than a key and a length) are left in it; payloads are skipped by seeking. Varints are
    decoded inline: this loop runs once per field, up to MAX_FIELDS times."""
    root = _schema(root_descriptor, {})
    budget.charge(MESSAGE_COST)
    stack = [(root, size)]  # (schema, end offset) of the messages being walked
    buf, base, at = b"", 0, 0  # buf holds the file's bytes [base, base + len(buf)); at: the position in it
    fields, limit = budget.fields, MAX_FIELDS
    used, cap = budget.used, budget.limit

    def varint():
        nonlocal at
        result = shift = 0
        while True:
            if at >= len(buf):
                raise _Malformed("the file ends inside a field")
            b = buf[at]
            at += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise _Malformed("a varint longer than 10 bytes")

    while stack:
        schema, end = stack[-1]
        pos = base + at
        if pos >= end:
            if pos > end:
                raise _Malformed(f"a field runs past the end of its {schema.name}")
            stack.pop()
            continue
        if len(buf) - at < 32 and base + len(buf) < size:
            fh.seek(pos)
            buf, base, at = fh.read(_CHUNK), pos, 0
        fields += 1
        if fields > limit:
            budget.fields = fields
            budget.field()
        key = buf[at] if at < len(buf) else 0x80
        if key < 0x80:  # the one-byte key of fields 1..15: no call
            at += 1
        else:
            key = varint()
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("a field numbered 0")
        kind, info = schema.fields.get(number, ("unknown", None))
        if wire == 0:
            if at < len(buf) and buf[at] < 0x80:
                at += 1
            else:
                varint()
            used += SCALAR_COST if kind == "scalar" else STRING_COST + 10
        elif wire == 1 or wire == 5:
            at += 8 if wire == 1 else 4
            used += SCALAR_COST if kind == "scalar" else STRING_COST + 8
        elif wire == 2:
            length = varint()
            if length > end - (base + at):
                raise _Malformed(f"a field of {schema.name} claims {length} bytes, past the end of the message")
            if kind == "msg":
                if len(stack) >= MAX_DEPTH:
                    raise CheckpointError(f"messages nest more than {MAX_DEPTH} deep; refused before decoding")
                used += MESSAGE_COST
                stack.append((info, base + at + length))
            else:
                if kind == "scalar":  # a packed repeated scalar: at most length / min-wire-size elements
                    width, min_wire = info
                    factor = FIXED_FACTOR if min_wire > 1 else PACKED_FACTOR
                    used += STRING_COST + int(factor * width * (length // min_wire + 1))
                else:  # a string, bytes, or a field the schema does not know (kept as raw bytes)
                    used += STRING_COST + length
                at += length  # past the chunk's end: the next field refills from the new position
        else:  # groups (3, 4) and the unused wire types 6, 7: never in an ONNX file
            raise _Malformed(f"wire type {wire} (field {number} of {schema.name})")
        if used > cap:
            budget.used = used
            budget.charge(0)
        if at > len(buf):
            if base + at > size:
                raise _Malformed("the file ends inside a field")
            buf, base, at = b"", base + at, 0
    budget.used, budget.fields = used, fields


def check_file(path: str | os.PathLike, root_descriptor, what: str = "protobuf") -> DecodeBudget:
    """Refuse (CheckpointError, without the path: the caller adds it) a file whose decoding would
    pass the budget, or whose wire format is malformed. Returns the budget with its estimate."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        budget = DecodeBudget(size)
        try:
            walk(fh, size, root_descriptor, budget)
        except _Malformed as exc:
            raise CheckpointError(f"not a readable {what} file (malformed protobuf: {exc})") from None
    return budget
