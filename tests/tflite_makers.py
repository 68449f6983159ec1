"""Small .tflite files, valid or hostile, for the isolation and signature tests.

Valid-but-odd models come from tiny `tf.function`s through the real `tf.lite.TFLiteConverter`;
what the converter will not write (no outputs, CALL_ONCE subgraphs calling each other, a uint8
ADD without quantization parameters) is written with LiteRT's own flatbuffer schema
(`ai_edge_litert.schema_py_generated`'s object API), by editing a converted model or from
scratch. Every maker returns the file's bytes.
"""

from __future__ import annotations

import numpy as np

SIZE, CLASSES = 8, 3  # the tiny classifier: [1, 8, 8, 3] float32 -> [1, 3] (tests use 3 class folders)


def _convert(fn, *specs) -> bytes:
    import tensorflow as tf

    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()


def _image(size: int = SIZE, dtype=None):
    import tensorflow as tf

    return tf.TensorSpec([1, size, size, 3], dtype or tf.float32)


def _logits(x, classes: int = CLASSES):
    """A conv, a mean and a dense layer: enough ops to be a network, a few KB."""
    import tensorflow as tf

    w = tf.constant(np.random.default_rng(0).standard_normal((3, 3, 3, 4)).astype(np.float32))
    d = tf.constant(np.random.default_rng(1).standard_normal((4, classes)).astype(np.float32))
    y = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))
    return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), d)


def classifier() -> bytes:
    """A valid image classifier: [1, 8, 8, 3] float32 -> [1, 3] float32."""
    return _convert(_logits, _image())


def no_inputs() -> bytes:
    import tensorflow as tf

    return _convert(lambda: _logits(tf.ones([1, SIZE, SIZE, 3])))


def scalar_output() -> bytes:
    import tensorflow as tf

    return _convert(lambda x: tf.reduce_sum(_logits(x)), _image())


def rank2_input() -> bytes:
    import tensorflow as tf

    return _convert(lambda x: _logits(tf.reshape(x, [1, 4, 4, 3])), tf.TensorSpec([1, 48], tf.float32))


def huge_output() -> bytes:
    """A [32768, 2, 2, 3] output: valid, and nothing like logits."""
    import tensorflow as tf

    return _convert(lambda x: tf.tile(x[:, :2, :2, :], [32768, 1, 1, 1]), _image())


def fails_at_first_invoke() -> bytes:
    """Loads and allocates, then every invoke fails: GATHER with an index past the logits."""
    import tensorflow as tf

    return _convert(lambda x: tf.gather(_logits(x), [0, 1, CLASSES + 7], axis=1), _image())


def hangs_at_first_invoke() -> bytes:
    """A classifier whose WHILE loop never ends (x > -1 stays true, even at +inf)."""
    import tensorflow as tf

    def fn(x):
        y = tf.abs(_logits(x))
        return tf.while_loop(lambda v: tf.reduce_min(v) > -1.0, lambda v: v + 1.0, [y])[0]

    return _convert(fn, _image())


def signature(input_shape, input_dtype: str, output_shape) -> bytes:
    """Any signature: one input of `input_shape`/`input_dtype` (float32, int32, uint8), one
    float32 output of `output_shape` whose values depend on the input."""
    import tensorflow as tf

    def fn(x):
        total = tf.reduce_sum(tf.cast(x, tf.float32))
        return tf.fill(output_shape, 1.0) * total

    return _convert(fn, tf.TensorSpec(list(input_shape), getattr(tf, input_dtype)))


def random_signature(rng: np.random.Generator) -> tuple[list, str, list]:
    """(input shape, dtype, output shape), often one step away from an image classifier's."""
    size = int(rng.integers(1, 6))
    inp = [1, size, size, 3]
    out = [1, int(rng.integers(1, 6))]
    for _ in range(int(rng.integers(0, 3))):
        what = rng.integers(0, 5)
        if what == 0:
            inp = inp[: int(rng.integers(1, 4))]  # rank 1..3
        elif what == 1:
            inp[int(rng.integers(0, len(inp)))] = int(rng.integers(2, 5))
        elif what == 2:
            out = out + [int(rng.integers(1, 4))]
        elif what == 3:
            out = out[1:] if len(out) > 1 else []
        else:
            out[0] = int(rng.integers(2, 4)) if out else 0
    dtype = str(rng.choice(["float32", "float32", "uint8", "int32"]))
    return inp, dtype, [d for d in out if d]


# --- flatbuffer edits -------------------------------------------------------------------

def _read(data: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))


def _write(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def no_outputs() -> bytes:
    """The classifier with its subgraph's output list (and signature) removed."""
    model = _read(classifier())
    model.subgraphs[0].outputs = []
    model.signatureDefs = None
    return _write(model)


def _tensor(name: str, shape, tensor_type: int, buffer: int = 0):
    from ai_edge_litert import schema_py_generated as schema

    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), tensor_type, buffer
    return t


def _op(code_index: int, inputs, outputs, options_type: int = 0, options=None):
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code_index, list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _model(codes, subgraphs) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    for builtin in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        model.operatorCodes.append(code)
    model.subgraphs = subgraphs
    model.buffers = [schema.BufferT()]
    model.description = "amc-tf test model"
    return _write(model)


def _subgraph(tensors, inputs, outputs, ops, name: str):
    from ai_edge_litert import schema_py_generated as schema

    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, list(inputs), list(outputs), ops, name
    return sg


def call_once_cycle(length: int = 2) -> bytes:
    """A classifier-shaped model ([1, 8, 8, 3] -> [1, 3] float32, a MEAN) whose `length` init
    subgraphs CALL_ONCE each other in a ring (1: one calls itself): LiteRT recurses until the
    stack overflows (SIGSEGV) at the first invoke."""
    from ai_edge_litert import schema_py_generated as schema

    def call_once(target: int):
        opts = schema.CallOnceOptionsT()
        opts.initSubgraphIndex = target
        return _op(0, [], [], schema.BuiltinOptions.CallOnceOptions, opts)

    f32 = schema.TensorType.FLOAT32
    main = _subgraph([_tensor("image", [1, SIZE, SIZE, 3], f32), _tensor("logits", [1, 3], f32),
                      _tensor("axes", [2], schema.TensorType.INT32)], [0], [1],
                     [call_once(1), _op(1, [0, 2], [1], schema.BuiltinOptions.ReducerOptions, schema.ReducerOptionsT())],
                     "main")
    ring = [_subgraph([], [], [], [call_once(1 + (i + 1) % length)], f"init_{i}") for i in range(length)]
    data = _model([schema.BuiltinOperator.CALL_ONCE, schema.BuiltinOperator.MEAN], [main, *ring])
    model = _read(data)
    axes = schema.BufferT()
    axes.data = list(np.asarray([1, 2], np.int32).tobytes())
    model.buffers.append(axes)
    return _write(model)


def unquantized_uint8_add(op: str = "ADD") -> bytes:
    """[1, 8, 8, 3] uint8 `op` itself -> uint8, no quantization parameters: LiteRT's kernel
    aborts (SIGABRT) while preparing it, inside allocate_tensors."""
    from ai_edge_litert import schema_py_generated as schema

    options = {"ADD": (schema.BuiltinOptions.AddOptions, schema.AddOptionsT),
               "SUB": (schema.BuiltinOptions.SubOptions, schema.SubOptionsT),
               "MUL": (schema.BuiltinOptions.MulOptions, schema.MulOptionsT)}[op]
    u8 = schema.TensorType.UINT8
    sg = _subgraph([_tensor("image", [1, SIZE, SIZE, 3], u8), _tensor("out", [1, SIZE, SIZE, 3], u8)], [0], [1],
                   [_op(0, [0, 0], [1], options[0], options[1]())], "main")
    return _model([getattr(schema.BuiltinOperator, op)], [sg])


ODD = {  # name -> maker of a valid .tflite that is not an image classifier, or cannot run
    "no-inputs": no_inputs,
    "no-outputs": no_outputs,
    "scalar-output": scalar_output,
    "rank2-input": rank2_input,
    "huge-output": huge_output,
    "fails-at-first-invoke": fails_at_first_invoke,
}
CRASHING = {"call-once-cycle": call_once_cycle, "uint8-add": unquantized_uint8_add}


# --- what the commands read besides the model ----------------------------------------------

def image_folder(root, classes: int = CLASSES, per_class: int = 2):
    """An ImageFolder of `classes` class folders with small PNGs (a model of CLASSES outputs fits)."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.random.default_rng(10 * c + i).integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def outdir(root, data: bytes):
    """A conversion OUTDIR as `compare` reads it (report.json with a network, model.tflite),
    holding `data` as its model."""
    import json
    from pathlib import Path

    from amc_tf.core.profiles import profile_spec

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.json").write_text(json.dumps({"network": profile_spec("0.5flops").to_dict()}))
    (root / "model.tflite").write_bytes(data)
    return root
