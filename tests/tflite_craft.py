"""Build .tflite flatbuffers by hand (any shapes, types and buffers), valid or hostile.

`model_bytes` writes the few tables LiteRT needs (Model, OperatorCode, SubGraph, Tensor,
Operator, Buffer) with the `flatbuffers` builder, field numbers as in LiteRT's schema.fbs, so a
test can declare any tensor shape in a file of a few hundred bytes. `mean_model` is a loadable
one-op model (MEAN over H and W: [1, H, W, C] -> [1, C]) of any input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

FLOAT32, INT32, UINT8, INT64 = 0, 2, 3, 4
ADD, MEAN = 0, 40


@dataclass
class Tensor:
    shape: list[int]
    type: int = FLOAT32
    buffer: int = 0  # 0: no data (LiteRT allocates it)
    name: str = "t"


@dataclass
class Op:
    code: int  # builtin operator code
    inputs: list[int]
    outputs: list[int]


@dataclass
class Graph:
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    ops: list[Op] = field(default_factory=list)


def _int_vector(b: flatbuffers.Builder, values) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(list(values)):
        b.PrependInt32(int(v))
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(list(offsets)):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def model_bytes(graphs: list[Graph], buffers: list[bytes], op_codes: list[int], versions: dict | None = None) -> bytes:
    """A TFL3 flatbuffer: `buffers[0]` should be b"" (the empty sentinel); `versions` {code: op version}."""
    b = flatbuffers.Builder(1024)
    buffer_offsets = []
    for data in buffers:
        vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        b.StartObject(3)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        buffer_offsets.append(b.EndObject())
    code_offsets = []
    for code in op_codes:
        b.StartObject(4)
        b.PrependInt8Slot(0, min(code, 127), 0)  # deprecated_builtin_code
        b.PrependInt32Slot(2, (versions or {}).get(code, 1), 1)  # version
        b.PrependInt32Slot(3, code, 0)  # builtin_code
        code_offsets.append(b.EndObject())
    graph_offsets = []
    for g in graphs:
        tensor_offsets = []
        for t in g.tensors:
            name = b.CreateString(t.name)
            shape = _int_vector(b, t.shape)
            b.StartObject(8)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependUint8Slot(1, t.type, 0)
            b.PrependUint32Slot(2, t.buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            tensor_offsets.append(b.EndObject())
        op_offsets = []
        for op in g.ops:
            ins, outs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
            b.StartObject(5)
            b.PrependUint32Slot(0, op_codes.index(op.code), 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            op_offsets.append(b.EndObject())
        tensors, ops = _offset_vector(b, tensor_offsets), _offset_vector(b, op_offsets)
        ins, outs = _int_vector(b, g.inputs), _int_vector(b, g.outputs)
        name = b.CreateString("main")
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tensors, 0)
        b.PrependUOffsetTRelativeSlot(1, ins, 0)
        b.PrependUOffsetTRelativeSlot(2, outs, 0)
        b.PrependUOffsetTRelativeSlot(3, ops, 0)
        b.PrependUOffsetTRelativeSlot(4, name, 0)
        graph_offsets.append(b.EndObject())
    codes, subgraphs, bufs = _offset_vector(b, code_offsets), _offset_vector(b, graph_offsets), _offset_vector(b, buffer_offsets)
    desc = b.CreateString("tflite_craft")
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)  # schema version 3
    b.PrependUOffsetTRelativeSlot(1, codes, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, bufs, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


def add_model(shape: list[int], type: int = FLOAT32) -> bytes:
    """x + x -> y, both of `shape`: LiteRT allocates the two tensors from their declared shapes."""
    graph = Graph([Tensor(shape, type, name="x"), Tensor(shape, type, name="y")], [0], [1], [Op(ADD, [0, 0], [1])])
    return model_bytes([graph], [b""], [ADD])


def mean_model(height: int, width: int, channels: int = 3) -> bytes:
    """A loadable classifier-shaped model: MEAN over H and W, [1, H, W, C] float32 -> [1, C]."""
    axes = np.asarray([1, 2], np.int32).tobytes()
    graph = Graph([Tensor([1, height, width, channels], name="image"), Tensor([2], INT32, buffer=1, name="axes"),
                   Tensor([1, channels], name="logits")], [0], [2], [Op(MEAN, [0, 1], [2])])
    return model_bytes([graph], [b"", axes], [MEAN])


def many_tensors_model(count: int, shape: list[int]) -> bytes:
    """`count` tensors of `shape`, none with data, chained by ADDs: their sum is what LiteRT plans."""
    tensors = [Tensor(shape, name=f"t{i}") for i in range(count)]
    ops = [Op(ADD, [i, i], [i + 1]) for i in range(count - 1)]
    return model_bytes([Graph(tensors, [0], [count - 1], ops)], [b""], [ADD])
