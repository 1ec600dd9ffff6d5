"""The object tree a restricted unpickle builds, and how it becomes plain values.

Globals that name data classes (chumpy ``Ch``, OmegaConf containers, old scipy sparse
matrices) are rebuilt as inert stand-ins that only record their state; numpy arrays as
:class:`_SafeNdarray`, whose state is checked before numpy sees it. :class:`_Finalizer`
then walks the tree once, within :class:`~emoca.io.pickle_limits.PickleLimits`, turning
stand-ins into ``np.ndarray`` / ``dict`` / ``scipy.sparse`` values and reporting a
damaged tensor (:class:`_BadTensor`) with its key path.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np

from emoca.io.pickle_limits import PickleLimits

__all__ = ["_BadTensor", "_Finalizer", "_SafeNdarray", "_StandIn", "_TreeError",
           "_stand_in_class"]


class _StandIn:
    """Records how a data-only object was built without running any of its code."""

    kind = "object"
    origin = ""
    # class-level defaults: NEWOBJ builds instances through __new__ without __init__
    args: tuple = ()
    kwargs: dict = {}  # noqa: RUF012
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # some pickles append/extend/set items on a reconstructed container
    def append(self, value: Any) -> None:
        self.__dict__.setdefault("items", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("items", []).extend(values)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("mapping", {})[key] = value


def _stand_in_class(kind: str, qualname: str) -> type:
    """A fresh stand-in class per refused-to-import global, remembering its origin."""
    return type(f"StandIn[{qualname}]", (_StandIn,), {"kind": kind, "origin": qualname})


class _TreeError(ValueError):
    """A problem found while rebuilding or finalising; ``unpickle_bytes`` adds the file name."""


class _BadTensor:
    """Placeholder for a tensor whose storage cannot hold it (reported with its key path)."""

    made = 0  # how many were made, so a loader sees one the finaliser never reached
    last = ""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        _BadTensor.made += 1
        _BadTensor.last = problem


class _Finalizer:
    """Replaces stand-ins by plain values, walking containers with size and depth limits.

    Shared references stay shared (one output per input object), but each reference counts
    its whole subtree against ``limits.max_nodes``: a graph that is small but huge as a tree
    (a "billion laughs" pickle) is refused here, before any caller walks it as a tree.
    """

    def __init__(self, limits: PickleLimits | None = None) -> None:
        self.limits = limits or PickleLimits(max_alloc=0, max_nodes=10**12, max_depth=10**4)
        self.memo: dict[int, tuple[Any, int]] = {}
        self.path: list[str] = []
        self.bad: list[str] = []

    def where(self) -> str:
        """The key path being walked, shortened in the middle when deep."""
        path = self.path if len(self.path) <= 8 else [
            *self.path[:3], f"...({len(self.path) - 6} levels)...", *self.path[-3:]]
        return "/".join(path) or "<top level>"

    def __call__(self, obj: Any) -> Any:
        return self.visit(obj)[0]

    def visit(self, obj: Any) -> tuple[Any, int]:
        """(plain value, tree size counting shared subtrees once per reference)."""
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        if len(self.path) > self.limits.max_depth:
            raise _TreeError(f"containers nested deeper than {self.limits.max_depth} levels "
                             f"at {self.where()} (a malformed or hostile file)")
        if isinstance(obj, _BadTensor):
            raise _TreeError(f"tensor '{self.where()}': {obj.problem}")
        if isinstance(obj, _SafeNdarray):
            out, size = obj.view(np.ndarray), 1
        elif isinstance(obj, _StandIn):
            self.memo[key] = (None, 1)  # a cycle through a stand-in reads as None
            out, size = _CONVERT[obj.kind](obj, self), 1
        elif isinstance(obj, dict):
            out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
            self.memo[key] = (out, 1)
            size = 1
            for k, v in obj.items():
                k2, n_k = self.visit(k)
                self.path.append(str(k2))
                v2, n_v = self.visit(v)
                self.path.pop()
                out[k2] = v2
                size = self._count(size + n_k + n_v)
        elif isinstance(obj, list):
            out = []
            self.memo[key] = (out, 1)
            size = 1
            for i, v in enumerate(obj):
                self.path.append(str(i))
                v2, n = self.visit(v)
                self.path.pop()
                out.append(v2)
                size = self._count(size + n)
        elif isinstance(obj, tuple):
            items, size = [], 1
            for i, v in enumerate(obj):
                self.path.append(str(i))
                v2, n = self.visit(v)
                self.path.pop()
                items.append(v2)
                size = self._count(size + n)
            out = tuple(items)
        else:
            out, size = obj, 1
        self.memo[key] = (out, size)
        return out, size

    def _count(self, size: int) -> int:
        if size > self.limits.max_nodes:
            raise _TreeError(f"object tree under '{self.where()}' has more than "
                             f"{self.limits.max_nodes} nodes when shared parts are counted "
                             "per reference (a \"billion laughs\" memory bomb)")
        return size


def _chumpy_to_array(obj: _StandIn, fin: _Finalizer) -> np.ndarray:
    state = obj.state
    if isinstance(state, dict) and "x" in state:
        return np.asarray(fin(state["x"]))
    raise _TreeError(
        f"'{fin.where()}': chumpy object {obj.origin} carries no array under 'x' (FLAME's "
        "chumpy arrays (chumpy.ch.Ch) keep their values there; this one may be tampered with)"
    )


def _sparse_to_scipy(obj: _StandIn, fin: _Finalizer) -> Any:
    import scipy.sparse as sp

    state = fin(obj.state) if isinstance(obj.state, dict) else {}
    fmt = obj.origin.rsplit(".", 1)[-1].replace("_array", "_matrix")
    shape = tuple(state.get("_shape", state.get("shape", ())))
    try:
        if fmt in ("csc_matrix", "csr_matrix"):
            cls = sp.csc_matrix if fmt == "csc_matrix" else sp.csr_matrix
            return cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        if fmt == "coo_matrix":
            row = state.get("row", state.get("coords", (None, None))[0])
            col = state.get("col", state.get("coords", (None, None))[1])
            return sp.coo_matrix((state["data"], (row, col)), shape=shape)
    except KeyError as e:
        raise _TreeError(f"'{fin.where()}': sparse matrix {obj.origin} lacks field {e}") from None
    except (ValueError, TypeError) as e:
        raise _TreeError(f"'{fin.where()}': sparse matrix {obj.origin} is inconsistent "
                         f"({e})") from None
    raise _TreeError(f"'{fin.where()}': unsupported sparse format {obj.origin}")


def _omegaconf_to_plain(obj: _StandIn, fin: _Finalizer) -> Any:
    state = obj.state if isinstance(obj.state, dict) else {}
    # OmegaConf keeps its state under __dict__-like keys; some versions nest it one level
    if "__dict__" in state and isinstance(state["__dict__"], dict):
        state = state["__dict__"]
    if "_content" in state:
        content = state["_content"]
        if isinstance(content, str):  # interpolation string or "???" (missing)
            return content
        return fin(content)
    if "_val" in state:
        return fin(state["_val"])
    return None  # metadata objects carry nothing a caller needs


_CONVERT: dict[str, Callable[[_StandIn, _Finalizer], Any]] = {
    "chumpy": _chumpy_to_array,
    "sparse": _sparse_to_scipy,
    "omegaconf": _omegaconf_to_plain,
}


class _SafeNdarray(np.ndarray):
    """An ndarray whose pickle state is checked before numpy sees it.

    numpy trusts ``__setstate__``: an object array whose data list is shorter than its
    shape crashes the interpreter (numpy 1.26, segmentation fault). Arrays are rebuilt as
    this subclass and turned back into plain ``np.ndarray`` views by the finaliser.
    """

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise _TreeError(f"malformed array state {type(state).__name__}")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) or not all(
                isinstance(n, int) and n >= 0 for n in shape):
            raise _TreeError(f"malformed array state (shape {shape!r}, dtype {dtype!r})")
        count = int(np.prod(shape, dtype=object))
        if dtype.hasobject:
            if not isinstance(data, list) or len(data) != count:
                got = len(data) if isinstance(data, list) else type(data).__name__
                raise _TreeError(f"object array of shape {shape} with {got} items")
        elif not isinstance(data, (bytes, bytearray, str)) or len(data) != count * dtype.itemsize:
            got = len(data) if hasattr(data, "__len__") else type(data).__name__
            raise _TreeError(f"array of shape {shape} {dtype} needs "
                             f"{count * dtype.itemsize} bytes, the file holds {got}")
        super().__setstate__(state)
