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

import io
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



_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


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


def scan_pickle(data: bytes) -> PickleLimits:
    """Check a pickle's opcodes without running them; return the limits for unpickling it.

    Args:
        data: the whole pickle (its size bounds every limit).
    Raises:
        PickleLimitError: a memo index beyond its byte offset (memo-table bomb).
        ValueError: truncated data or an unknown opcode (from ``pickletools``).
    """
    n_ops = 0
    puts = 0
    for op, arg, pos in pickletools.genops(io.BytesIO(data)):
        n_ops += 1
        name = op.name
        if name in _MEMO_PUT or name == "MEMOIZE":
            index = puts if name == "MEMOIZE" else int(arg)
            # the C unpickler resizes its memo array to 2 * index pointers at once
            if index > max(pos, 1024):
                raise PickleLimitError(f"memo index {index} at byte {pos} (a memory bomb: "
                                       "valid pickles number memo entries in order)")
            puts += 1
        elif name in _MEMO_GET and int(arg) > max(pos, 1024):
            raise PickleLimitError(f"memo index {arg} at byte {pos} refers to nothing")
        elif name == "STOP":
            break
    return PickleLimits(max_alloc=len(data), max_nodes=16 * n_ops + 100_000)
