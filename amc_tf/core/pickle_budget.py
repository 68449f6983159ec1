"""A memory budget for unpickling: what the opcodes build is counted before it can grow.

A pickle opcode is one byte, the object it builds is not: an EMPTY_SET is 216 bytes, a MEMOIZE a
dict entry, and a call of an allowed global (`set`, `frozenset`, `OrderedDict`) copies a
container the stream already built, as many times as it likes. So the bytes read bound nothing:
a 12 MB stream of EMPTY_SET opcodes builds 2.8 GB of sets.

`charged_dispatch` wraps every opcode of a `pickle._Unpickler` dispatch table so that each one
is charged, in bytes, *before* it runs when its cost is known from the stack (container
growth, a call's container arguments, a BUILD's state) and right after it when it is the
object just made (`sys.getsizeof`), plus `OPCODE_COST` for the stack slot or memo entry. The
charges never go down (what is popped is still counted), so they bound the time too.

`PickleBudget.for_bytes(n)` gives a stream of n bytes `FLOOR + PER_BYTE * n`, capped at `CAP`:
a MobileNet's pickle (~50 KB, a few thousand opcodes) is charged about 1 MB. Over the budget is
one `CheckpointError` with the numbers.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np

from amc_tf.core.errors import CheckpointError

FLOOR = 32 << 20  # bytes of objects any pickle may build
PER_BYTE = 8  # and this many per byte of the stream (file)
CAP = 512 << 20  # never more than this per file
OPCODE_COST = 128  # every opcode: a stack slot, a memo entry's share, interpreter work (bounds the time)
ITEM_COST = 64  # every item put into a dict, set or list (entry, hash table growth)


class PickleBudget:
    """Bytes of objects the unpickler may build for one file; `charge` refuses past `limit`."""

    def __init__(self, limit: int, stream_bytes: int | None = None):
        self.limit = int(limit)
        self.used = 0
        self.stream_bytes = stream_bytes

    @classmethod
    def for_bytes(cls, stream_bytes: int) -> "PickleBudget":
        return cls(min(CAP, FLOOR + PER_BYTE * max(0, int(stream_bytes))), stream_bytes)

    def charge(self, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            of = f" for a {self.stream_bytes}-byte file" if self.stream_bytes is not None else ""
            raise CheckpointError(
                f"the pickle builds more than {self.limit} bytes of objects (its budget{of}; a MobileNet "
                f"checkpoint's needs about 1 MB): too many or too large objects for a state dict; refused")


def _sized(value) -> int:
    try:
        return len(value) if isinstance(value, (tuple, list, dict, set, frozenset, str, bytes)) else 0
    except TypeError:
        return 0


def _args_cost(args) -> int:
    """What calling an allowed global with `args` may copy: their containers' items."""
    if isinstance(args, dict):
        return ITEM_COST * (len(args) + sum(_sized(v) for v in args.values()))
    if isinstance(args, (tuple, list)):
        return ITEM_COST * sum(_sized(a) for a in args)
    return 0


# opcodes that push a reference to an object that already exists: no new object to size
_REFERENCE_OPS = {pickle.DUP, pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.MARK, pickle.POP,
                  pickle.POP_MARK, pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE, pickle.STOP,
                  pickle.PROTO, pickle.FRAME, pickle.GLOBAL, pickle.STACK_GLOBAL, pickle.EXT1, pickle.EXT2,
                  pickle.EXT4, pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.EMPTY_TUPLE}
# opcodes that move the items since the last MARK into a container (the items were charged when
# pushed; their entries in the container are charged here, before it grows)
_MARK_ITEM_OPS = {pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS, pickle.DICT, pickle.LIST, pickle.TUPLE,
                  pickle.FROZENSET, pickle.INST, pickle.OBJ}
_ONE_ITEM_OPS = {pickle.APPEND, pickle.SETITEM}
_CALL_OPS = {pickle.REDUCE: 1, pickle.NEWOBJ: 1, pickle.NEWOBJ_EX: 2, pickle.BUILD: 1}


def _wrap(op: bytes, handler):
    code = op[0]
    if op in _MARK_ITEM_OPS:
        def run(self):
            self._pickle_budget.charge(OPCODE_COST + ITEM_COST * len(self.stack))
            handler(self)
            _size_top(self)
    elif op in _ONE_ITEM_OPS:
        def run(self):
            self._pickle_budget.charge(OPCODE_COST + ITEM_COST)
            handler(self)
    elif op in _CALL_OPS:
        depth = _CALL_OPS[op]

        def run(self):
            cost = OPCODE_COST
            for arg in self.stack[-depth:] if len(self.stack) >= depth else ():
                cost += _args_cost(arg) if op != pickle.BUILD else ITEM_COST * _sized(arg)
            self._pickle_budget.charge(cost)
            handler(self)
            if op != pickle.BUILD:
                _size_top(self)
    elif op in _REFERENCE_OPS:
        def run(self):
            self._pickle_budget.charge(OPCODE_COST)
            handler(self)
    else:  # a new value: a number, a string, bytes, an empty container, a persistent id...
        def run(self):
            self._pickle_budget.charge(OPCODE_COST)
            handler(self)
            _size_top(self)
    run.__name__ = f"charged_{getattr(handler, '__name__', code)}"
    return run


def _size_top(self, _ndarray=np.ndarray, _getsizeof=sys.getsizeof) -> None:
    if self.stack:
        top = self.stack[-1]
        if type(top) is _ndarray:  # a tensor: counted by checkpoint_safety's tensor budget
            return
        self._pickle_budget.charge(_getsizeof(top, OPCODE_COST))


def charged_dispatch(dispatch: dict) -> dict:
    """A copy of an Unpickler dispatch table with every opcode charged to `self._pickle_budget`."""
    ops = {getattr(pickle, name)[0]: getattr(pickle, name) for name in dir(pickle)
           if name.isupper() and isinstance(getattr(pickle, name), bytes) and len(getattr(pickle, name)) == 1}
    return {code: _wrap(ops.get(code, bytes([code])), handler) for code, handler in dispatch.items()}
