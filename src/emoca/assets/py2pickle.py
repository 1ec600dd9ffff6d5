"""Write pickles the way FLAME's Python 2 / chumpy era files were written.

Used only to make look-alike official files: byte strings are emitted as Python 2 ``str``
(``BINSTRING``), numpy and scipy globals under their old module paths, and objects can be
pickled under any class path (``chumpy.ch.Ch``) without that module existing.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["PickleAs", "dumps_py2"]


class PickleAs:
    """An object pickled as ``module.name`` via ``__newobj__`` with ``state`` as its state.

    Example: ``PickleAs("chumpy.ch", "Ch", {"x": array})`` reads back, in chumpy, as a
    ``Ch`` whose ``x`` is ``array``.
    """

    def __init__(self, module: str, name: str, state: Any) -> None:
        self.module, self.name, self.state = module, name, state


class _GlobalRef:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


_OLD_NAMES = {
    "numpy._core.multiarray": "numpy.core.multiarray",
    "numpy._core.numeric": "numpy.core.numeric",
}


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def _write_global(self, module: str, name: str) -> None:
        module = _OLD_NAMES.get(module, module)
        self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if isinstance(obj, _GlobalRef):
            self._write_global(obj.module, obj.name)
            return
        module = getattr(obj, "__module__", None)
        qual = name or getattr(obj, "__qualname__", None)
        if module in _OLD_NAMES:
            self._write_global(module, qual)
            self.memoize(obj)
            return
        super().save_global(obj, name)

    def save_bytes(self, obj: bytes) -> None:
        # Python 2 `str`: what FLAME's array buffers were
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)

    dispatch[bytes] = save_bytes

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    dispatch[str] = save_str

    def save_pickle_as(self, obj: PickleAs) -> None:
        self.save(_GlobalRef(obj.module, obj.name))
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[PickleAs] = save_pickle_as

    def save_globalref(self, obj: _GlobalRef) -> None:
        self._write_global(obj.module, obj.name)

    dispatch[_GlobalRef] = save_globalref

    def save_sparse(self, obj: sp.spmatrix) -> None:
        # an old scipy pickled csc_matrix as scipy.sparse.csc.csc_matrix + its __dict__
        mat = obj.tocsc()
        state = {
            "data": np.asarray(mat.data),
            "indices": np.asarray(mat.indices),
            "indptr": np.asarray(mat.indptr),
            "_shape": tuple(int(s) for s in mat.shape),
            "maxprint": 50,
            "format": "csc",
        }
        self.save_pickle_as(PickleAs("scipy.sparse.csc", "csc_matrix", state))

    dispatch[sp.csc_matrix] = save_sparse
    dispatch[sp.csr_matrix] = save_sparse


def dumps_py2(obj: Any) -> bytes:
    """Pickle ``obj`` with protocol 2 as a Python 2 program would have."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()
