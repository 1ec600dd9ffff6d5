"""Size limits for the restricted unpickler, derived from the file's own size.

A pickle is a program: a few dozen bytes can ask for a gigabyte (``bytearray(1 << 30)``,
a memo index of 2**28, an array header with a huge shape, an object array whose data list
is shorter than its shape) or describe a "billion laughs" graph where one small list is
referenced ten times at each of nine levels, harmless as a graph but 10**9 nodes for
anything that walks it as a tree. Every limit here is checked *before* the allocation:

* :func:`scan_pickle` walks the opcodes without running them (``pickletools``): every
  declared length must fit in the bytes that remain and every memo index must be below
  the byte offset where it appears (the unpickler's memo table grows to twice the index).
* :class:`PickleLimits` bounds what the allowed constructors may allocate (no more than
  the file holds) and the size/depth of the object tree the finaliser walks.

Honest files stay far below the limits: FLAME's ``generic_model.pkl`` and a Lightning
checkpoint's ``data.pkl`` are trees with a node per few opcodes, nested < 20 deep.
"""

from __future__ import annotations

import pickle
import pickletools
from dataclasses import dataclass

from emoca.errors import UnsafeFileError

__all__ = ["MAX_DEPTH", "PickleLimitError", "PickleLimits", "UnsafePickleError", "scan_pickle"]

#: containers nested deeper than this are refused (OmegaConf configs reach ~20)
MAX_DEPTH = 100

class UnsafePickleError(UnsafeFileError, pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list, was malformed, or exceeded the
    size limits; also an :class:`emoca.errors.InputError` (one line, naming the file)."""



_TWO_LINES = -100  # GLOBAL / INST: module and name, each up to a newline
_LEN_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
              pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
              pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
              pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}


def _opcode_table() -> list[tuple[str, int] | None]:
    """opcode byte -> (name, argument size: >= 0 fixed, or a pickletools length code)."""
    table: list[tuple[str, int] | None] = [None] * 256
    for op in pickletools.opcodes:
        size = 0 if op.arg is None else op.arg.n
        if op.name in ("GLOBAL", "INST"):
            size = _TWO_LINES
        table[op.code.encode("latin-1")[0]] = (op.name, size)
    return table


_OPS = _opcode_table()


@dataclass(frozen=True)
class PickleLimits:
    """What one pickle may build.

    Attributes:
        max_alloc: bytes one constructor may allocate without data in the file (the
            file's size: arrays are rebuilt from bytes the pickle carries).
        max_nodes: containers + leaves the finaliser may visit when shared references are
            counted once per reference (16 per opcode + 100k).
        max_depth: container nesting.
    """

    max_alloc: int
    max_nodes: int
    max_depth: int = MAX_DEPTH


class PickleLimitError(ValueError):
    """A pickle exceeds a :class:`PickleLimits` bound (the caller adds the file name)."""


def _memo_index(name: str, arg: bytes, puts: int) -> int:
    """The memo slot a PUT/GET-family opcode names, from its raw argument bytes."""
    if name == "MEMOIZE":
        return puts
    if name in ("BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET"):
        return int.from_bytes(arg, "little")
    return int(arg)  # PUT / GET: decimal text up to the newline


def scan_pickle(data: bytes) -> PickleLimits:
    """Check a pickle's opcodes without running them; return the limits for unpickling it.

    A plain loop over the opcode table (``pickletools.genops`` is several times slower):
    every argument must fit in the data, and every memo index must lie below the byte
    offset where it appears (the C unpickler resizes its memo array to 2 * index pointers
    at once).

    Args:
        data: the whole pickle (its size bounds every limit).
    Raises:
        PickleLimitError: a memo index beyond its byte offset (memo-table bomb).
        ValueError: truncated data or an unknown opcode.
    """
    n_ops = puts = pos = 0
    end_of_data = len(data)
    while pos < end_of_data:
        entry = _OPS[data[pos]]
        if entry is None:
            raise ValueError(f"unknown opcode {data[pos]:#04x} at byte {pos}")
        name, size = entry
        at = pos
        pos += 1
        start = pos
        if size >= 0:
            pos += size
        elif size == pickletools.UP_TO_NEWLINE or size == _TWO_LINES:
            for _ in range(2 if size == _TWO_LINES else 1):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    raise ValueError(f"{name} at byte {at}: no newline before the end")
                pos = nl + 1
        elif size in _LEN_BYTES:
            width, signed = _LEN_BYTES[size]
            length = int.from_bytes(data[pos:pos + width], "little", signed=signed)
            if length < 0:
                raise ValueError(f"{name} at byte {at}: negative length {length}")
            pos += width + length
        if pos > end_of_data:
            raise ValueError(f"{name} at byte {at} needs {pos - at} bytes, only "
                             f"{end_of_data - at} remain (truncated file)")
        n_ops += 1
        if name in _MEMO_OPS:
            index = _memo_index(name, data[start:pos].rstrip(b"\n"), puts)
            if index > max(at, 1024):
                raise PickleLimitError(f"memo index {index} at byte {at} (a memory bomb: "
                                       "valid pickles number memo entries in order)")
            puts += "GET" not in name
        elif name == "STOP":
            break
    else:
        raise ValueError("no STOP opcode: truncated file")
    return PickleLimits(max_alloc=len(data), max_nodes=16 * n_ops + 100_000)
