"""Restricted unpickling for every pickle-based file the project reads.

The official assets are pickles: FLAME's ``generic_model.pkl`` (Python 2, chumpy objects,
old scipy/numpy module paths), ``landmark_embedding.npy`` (a 0-d object array holding a dict
with pickled torch tensors) and torch / Lightning checkpoints (zip archives whose
``data.pkl`` may hold OmegaConf containers). A plain ``pickle.load`` on any of them runs
whatever callable the file names, so a tampered download could execute code.

Here every global a pickle asks for is looked up in an allow-list. Data classes are
rebuilt by stand-ins that only record their state and are then turned into plain values
(chumpy ``Ch`` -> ``np.ndarray``, OmegaConf containers -> ``dict``/``list``, old scipy
sparse matrices -> current ``scipy.sparse`` matrices). Anything else raises
:class:`UnsafePickleError` naming the file and the refused global; nothing is called.
chumpy and omegaconf are never imported.

Example:
    >>> import io, os, pickle
    >>> class Evil:
    ...     def __reduce__(self):
    ...         return (os.system, ("echo pwned",))
    >>> load_pickle(io.BytesIO(pickle.dumps(Evil())))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emoca.io.safe_pickle.UnsafePickleError: ...refused global 'posix.system'...
"""

from __future__ import annotations

import _compat_pickle
import collections
import functools
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from emoca.io.pickle_limits import PickleLimitError, PickleLimits, UnsafePickleError, scan_pickle
from emoca.io.pickle_tree import (
    _Finalizer,
    _SafeNdarray,
    _stand_in_class,
    _StandIn,
    _TreeError,
)

__all__ = [
    "UnsafePickleError",
    "load_pickle",
    "loads_pickle",
    "load_npy",
    "load_torch",
    "unpickle_bytes",
]

PathOrFile = str | os.PathLike | IO[bytes]


# ------------------------------------------------------------------------ allow-list


def _multiarray() -> Any:
    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray
    else:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _safe_reconstruct(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to stand-ins and a few plain types."""
    if base is not object or not (isinstance(cls, type) and issubclass(cls, _StandIn)):
        if cls in (dict, list, collections.OrderedDict, set):
            return cls()
        raise UnsafePickleError(f"refused reconstruction of {cls!r} from {base!r}")
    return cls()


def _ndarray_token(*args: Any, **kwargs: Any) -> Any:
    """What ``numpy.ndarray`` resolves to: a marker for ``_reconstruct``, never a constructor
    (``ndarray(shape)`` would allocate memory the file does not hold)."""
    raise UnsafePickleError("refused direct numpy.ndarray(...) construction")


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any, *, max_alloc: int) -> Any:
    if subtype is not _ndarray_token:
        raise UnsafePickleError(f"refused numpy array subtype {subtype!r}")
    try:
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise UnsafePickleError(f"malformed array header ({e})") from None
    if nbytes > max_alloc:  # honest pickles start from an empty array and fill it
        raise UnsafePickleError(f"an array header asks for {nbytes} bytes, more than the "
                                f"file's {max_alloc} (a memory bomb)")
    return _multiarray()._reconstruct(_SafeNdarray, shape, dtype)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    return _multiarray().scalar(dtype, data)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> Any:
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol-2 pickles store bytes as latin-1 text re-encoded on load
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError(f"refused _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode(encoding)


def _defaultdict(factory: Any = None, *rest: Any) -> collections.defaultdict:
    if factory not in (None, list, dict, int, float, str, set, tuple):
        raise UnsafePickleError(f"refused defaultdict factory {factory!r}")
    return collections.defaultdict(factory)


_SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _bytearray(source: Any = b"", *args: Any) -> bytearray:
    # bytearray(n) would allocate n zero bytes that the file does not hold
    if not isinstance(source, (bytes, bytearray, str, list)):
        raise UnsafePickleError(f"refused bytearray({type(source).__name__}): only bytes, text "
                                "or a list of byte values (bytearray(n) is a memory bomb)")
    return bytearray(source, *args)


def _str(value: Any = "", *args: Any) -> str:
    # str(container) expands every shared reference: exponential for a nested-list bomb
    if not isinstance(value, _SCALARS):
        raise UnsafePickleError(f"refused str({type(value).__name__}): only scalars")
    return str(value, *args)


_PLAIN: dict[tuple[str, str], Any] = {
    ("builtins", "object"): object,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "str"): _str,
    ("builtins", "bool"): bool,
    ("builtins", "NoneType"): type(None),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _defaultdict,
    ("copyreg", "_reconstructor"): _safe_reconstruct,
    ("numpy", "ndarray"): _ndarray_token,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("pathlib", "PosixPath"): Path,
    ("pathlib", "WindowsPath"): Path,
    ("pathlib", "PurePosixPath"): Path,
    ("pathlib", "PureWindowsPath"): Path,
    ("typing", "Any"): None,
}
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
_SPARSE_MODULES = {
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse.csr",
    "scipy.sparse.coo",
    "scipy.sparse._csc",
    "scipy.sparse._csr",
    "scipy.sparse._coo",
    "scipy.sparse._arrays",
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], source: str, *, limits: PickleLimits,
                 encoding: str = "latin1",
                 persistent_load: Callable[[Any], Any] | None = None,
                 extra_globals: dict[tuple[str, str], Any] | None = None) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        self._limits = limits
        self._extra = extra_globals or {}
        self._pload = persistent_load

    def persistent_load(self, pid: Any) -> Any:  # noqa: D401 - pickle hook
        if self._pload is None:
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._pload(pid)

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__``, ``copy_reg``): overriding find_class skips the
        # stdlib's own fix_imports mapping, so apply it here
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in self._extra:
            return self._extra[key]
        if key in _PLAIN:
            return _PLAIN[key]
        if key in _RECONSTRUCT:
            return functools.partial(_np_reconstruct, max_alloc=self._limits.max_alloc)
        if module.startswith("chumpy"):
            return _stand_in_class("chumpy", f"{module}.{name}")
        if module.startswith("omegaconf"):
            return _stand_in_class("omegaconf", f"{module}.{name}")
        if module in _SPARSE_MODULES and name in _SPARSE_NAMES:
            return _stand_in_class("sparse", f"{module}.{name}")
        if module == "torch" or module.startswith("torch."):
            from emoca.io.torch_zip import torch_globals

            table = torch_globals()
            if key in table:
                return table[key]
        raise UnsafePickleError(
            f"{self._source}: refused global '{module}.{name}': not a data type this "
            "file format needs (the file may be tampered with or not what it claims)"
        )


def _describe(src: PathOrFile) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return getattr(src, "name", "<stream>")


def unpickle_bytes(data: bytes, source: str, *, encoding: str = "latin1",
                   persistent_load: Callable[[Any], Any] | None = None,
                   extra_globals: dict[tuple[str, str], Any] | None = None,
                   finalize: Callable[[Any, _Finalizer], Any] | None = None) -> Any:
    """Check, unpickle and finalise one in-memory pickle; every error names ``source``.

    The opcodes are scanned first (:func:`emoca.io.pickle_limits.scan_pickle`); reading
    from memory means a declared length beyond the data fails instead of allocating.
    ``finalize(obj, finalizer)`` replaces the default walk (``load_npy`` unwraps a 0-d
    object array with it).
    """
    try:
        limits = scan_pickle(data)
    except PickleLimitError as e:
        raise UnsafePickleError(f"{source}: refused pickle: {e}") from None
    except ValueError as e:
        raise UnsafePickleError(f"{source}: not a readable pickle ({e})") from None
    unpickler = _SafeUnpickler(io.BytesIO(data), source, limits=limits, encoding=encoding,
                               persistent_load=persistent_load, extra_globals=extra_globals)
    fin = _Finalizer(limits)
    try:
        obj = unpickler.load()
        return finalize(obj, fin) if finalize is not None else fin(obj)
    except UnsafePickleError as e:
        text = str(e)
        raise UnsafePickleError(text if text.startswith(source) else f"{source}: {text}") from None
    except _TreeError as e:
        raise UnsafePickleError(f"{source}: {e}") from None
    except RecursionError:
        raise UnsafePickleError(f"{source}: nested too deeply to read (a malformed or hostile "
                                "file)") from None
    except MemoryError:
        raise UnsafePickleError(f"{source}: asks for more memory than there is (a malformed "
                                "or hostile file)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError) as e:
        raise UnsafePickleError(f"{source}: not a readable pickle ({type(e).__name__}: "
                                f"{' '.join(str(e).split())})") from None


def load_pickle(src: PathOrFile, *, encoding: str = "latin1",
                extra_globals: dict[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle a file (path or binary stream) through the allow-list.

    Args:
        src: path or binary file object.
        encoding: for Python 2 pickles (FLAME's are): ``latin1`` keeps numpy buffers intact.
        extra_globals: ``{(module, name): object}`` to allow beyond the built-in list.

    Returns:
        The unpickled value with chumpy arrays, OmegaConf containers and old scipy sparse
        matrices converted to numpy arrays, plain dicts/lists and ``scipy.sparse`` matrices.

    Raises:
        UnsafePickleError: a refused global, a malformed pickle or one over the size limits
            of :mod:`emoca.io.pickle_limits`; the message names ``src``.
        FileNotFoundError: ``src`` does not exist.
    """
    source = _describe(src)
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            data = f.read()
    else:
        data = src.read()
    return unpickle_bytes(data, source, encoding=encoding, extra_globals=extra_globals)


def loads_pickle(data: bytes, *, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """:func:`load_pickle` for an in-memory pickle."""
    return unpickle_bytes(data, source, encoding=encoding)


def load_npy(path: str | os.PathLike) -> Any:
    """Read a ``.npy`` file; object arrays are unpickled through the allow-list.

    ``np.load(allow_pickle=True)`` would run arbitrary pickles; this reads the header
    itself and hands only the payload to the restricted unpickler. A 0-d object array
    (how DECA stores ``landmark_embedding.npy``) is returned as its single item.

    Raises:
        UnsafePickleError: not a .npy file, a refused or malformed pickle, or a header
            declaring more data than the file holds (named).
    """
    source = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise UnsafePickleError(f"{source}: not a .npy file ({e})") from e
        if not dtype.hasobject:
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if need > size - f.tell():
                raise UnsafePickleError(f"{source}: header declares {shape} {dtype} "
                                        f"({need} bytes), the file holds {size - f.tell()}")
            f.seek(0)
            return np.load(f, allow_pickle=False)
        payload = f.read()

    def unwrap(arr: Any, fin: _Finalizer) -> Any:
        if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
            return fin(arr.item())
        return fin(arr)

    return unpickle_bytes(payload, source, encoding="latin1", finalize=unwrap)


def load_torch(path: str | os.PathLike, *, map_location: Any = "cpu",
               extra_globals: dict[tuple[str, str], Any] | None = None) -> Any:
    """Read a ``torch.save`` file (zip or legacy) without executing code.

    See :func:`emoca.io.torch_zip.load_torch` (the zip format's checks live there).
    """
    from emoca.io.torch_zip import load_torch as _load

    return _load(path, map_location=map_location, extra_globals=extra_globals)
