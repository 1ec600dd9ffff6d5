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
import copyreg
import functools
import io
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "UnsafePickleError",
    "load_pickle",
    "loads_pickle",
    "load_npy",
    "load_torch",
]

PathOrFile = str | os.PathLike | IO[bytes]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list, or was malformed."""


# --------------------------------------------------------------------------- stand-ins


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


def _chumpy_to_array(obj: _StandIn) -> np.ndarray:
    state = obj.state
    if isinstance(state, dict) and "x" in state:
        return np.asarray(_finalize(state["x"]))
    raise UnsafePickleError(
        f"chumpy object {obj.origin} carries no array under 'x'; cannot read it without chumpy"
    )


def _sparse_to_scipy(obj: _StandIn) -> Any:
    import scipy.sparse as sp

    state = obj.state if isinstance(obj.state, dict) else {}
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
        raise UnsafePickleError(f"sparse matrix {obj.origin} lacks field {e}") from None
    raise UnsafePickleError(f"unsupported sparse format {obj.origin}")


def _omegaconf_to_plain(obj: _StandIn) -> Any:
    state = obj.state if isinstance(obj.state, dict) else {}
    # OmegaConf keeps its state under __dict__-like keys; some versions nest it one level
    if "__dict__" in state and isinstance(state["__dict__"], dict):
        state = state["__dict__"]
    if "_content" in state:
        content = state["_content"]
        if isinstance(content, str):  # interpolation string or "???" (missing)
            return content
        return _finalize(content)
    if "_val" in state:
        return _finalize(state["_val"])
    return None  # metadata objects carry nothing a caller needs


def _finalize(obj: Any, _memo: dict[int, Any] | None = None) -> Any:
    """Replace stand-ins by plain values, recursively through containers."""
    memo = {} if _memo is None else _memo
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _StandIn):
        out = {
            "chumpy": _chumpy_to_array,
            "sparse": _sparse_to_scipy,
            "omegaconf": _omegaconf_to_plain,
        }[obj.kind](obj)
    elif isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        memo[key] = out
        for k, v in obj.items():
            out[_finalize(k, memo)] = _finalize(v, memo)
        return out
    elif isinstance(obj, list):
        out = []
        memo[key] = out
        out.extend(_finalize(v, memo) for v in obj)
        return out
    elif isinstance(obj, tuple):
        out = tuple(_finalize(v, memo) for v in obj)
    else:
        out = obj
    memo[key] = out
    return out


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


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refused numpy array subtype {subtype!r}")
    return _multiarray()._reconstruct(subtype, shape, dtype)


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


_PLAIN: dict[tuple[str, str], Any] = {
    ("builtins", "object"): object,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "str"): str,
    ("builtins", "bool"): bool,
    ("builtins", "NoneType"): type(None),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _defaultdict,
    ("copyreg", "_reconstructor"): _safe_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
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


@functools.lru_cache(maxsize=1)
def _torch_globals() -> dict[tuple[str, str], Any]:
    import torch

    def rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                          metadata=None):  # noqa: ANN001 - pickle signature
        if isinstance(storage, tuple):  # (untyped storage, dtype) from a zip archive
            untyped, dtype = storage
        else:  # a TypedStorage from a legacy payload
            untyped, dtype = storage._untyped_storage, storage.dtype
        t = torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)
        t.requires_grad_(requires_grad)
        return t

    def rebuild_parameter(data, requires_grad=True, hooks=None, state=None):  # noqa: ANN001
        return torch.nn.Parameter(data, requires_grad=requires_grad)

    def load_from_bytes(data: bytes) -> Any:
        # a storage pickled with plain pickle carries a legacy torch.save of itself
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    table: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "strided"): torch.strided,
        ("torch.serialization", "_get_layout"): lambda name: torch.strided,
    }
    # archives name a typed storage class per tensor; only its dtype is needed
    storage_dtypes = {
        "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
        "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
        "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
        "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
        "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    }
    for name, dtype in storage_dtypes.items():
        table[("torch", name)] = dtype
    for name in dir(torch):
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype):
            table[("torch", name)] = obj
    return table


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], source: str, *, encoding: str = "latin1",
                 persistent_load: Callable[[Any], Any] | None = None,
                 extra_globals: dict[tuple[str, str], Any] | None = None) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
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
        if module.startswith("chumpy"):
            return _stand_in_class("chumpy", f"{module}.{name}")
        if module.startswith("omegaconf"):
            return _stand_in_class("omegaconf", f"{module}.{name}")
        if module in _SPARSE_MODULES and name in _SPARSE_NAMES:
            return _stand_in_class("sparse", f"{module}.{name}")
        if module == "torch" or module.startswith("torch."):
            table = _torch_globals()
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


def _run(unpickler: _SafeUnpickler, source: str) -> Any:
    try:
        obj = unpickler.load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise UnsafePickleError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e
    return _finalize(obj)


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
        UnsafePickleError: a refused global or a malformed pickle; the message names ``src``.
        FileNotFoundError: ``src`` does not exist.
    """
    source = _describe(src)
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            return _run(_SafeUnpickler(f, source, encoding=encoding,
                                       extra_globals=extra_globals), source)
    return _run(_SafeUnpickler(src, source, encoding=encoding, extra_globals=extra_globals),
                source)


def loads_pickle(data: bytes, *, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """:func:`load_pickle` for an in-memory pickle."""
    return _run(_SafeUnpickler(io.BytesIO(data), source, encoding=encoding), source)


def load_npy(path: str | os.PathLike) -> Any:
    """Read a ``.npy`` file; object arrays are unpickled through the allow-list.

    ``np.load(allow_pickle=True)`` would run arbitrary pickles; this reads the header
    itself and hands only the payload to the restricted unpickler. A 0-d object array
    (how DECA stores ``landmark_embedding.npy``) is returned as its single item.
    """
    source = os.fspath(path)
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
            f.seek(0)
            return np.load(f, allow_pickle=False)
        arr = _run(_SafeUnpickler(f, source, encoding="latin1"), source)
    if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
        return _finalize(arr.item())
    return arr


# ------------------------------------------------------------------------- torch files


def load_torch(path: str | os.PathLike, *, map_location: Any = "cpu",
               extra_globals: dict[tuple[str, str], Any] | None = None) -> Any:
    """Read a ``torch.save`` file (zip or legacy) without executing code.

    Zip archives (torch >= 1.6, Lightning ``.ckpt``) are read here: ``data.pkl`` goes
    through the allow-list, tensors are rebuilt from the archive's storages. Legacy files
    are handed to ``torch.load(weights_only=True)``, torch's own restricted loader.

    Returns:
        The saved object; OmegaConf containers (Lightning ``hyper_parameters``) become
        plain dicts/lists.

    Raises:
        UnsafePickleError: refused global or unreadable file; the message names ``path``.
    """
    import torch

    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such checkpoint file")
    if not zipfile.is_zipfile(source):
        try:
            return torch.load(source, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises UnpicklingError / RuntimeError variants
            raise UnsafePickleError(f"{source}: {_legacy_refusal(e)}") from None

    with zipfile.ZipFile(source) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise UnsafePickleError(f"{source}: zip archive without data.pkl: not a torch file")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise UnsafePickleError(f"{source}: big-endian torch files are not supported")
        storages: dict[str, Any] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
                raise UnsafePickleError(f"{source}: unexpected persistent id {pid!r}")
            _, storage_type, key, _location, numel = pid[:5]
            if not isinstance(storage_type, torch.dtype):
                raise UnsafePickleError(f"{source}: bad storage type in {pid!r}")
            if key not in storages:
                raw = zf.read(f"{prefix}data/{key}")
                storages[key] = (torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8)
                                 if raw else torch.UntypedStorage(0))
            return storages[key], storage_type

        with zf.open(pkl[0]) as f:
            obj = _run(_SafeUnpickler(io.BytesIO(f.read()), source, encoding="utf-8",
                                      persistent_load=persistent_load,
                                      extra_globals=extra_globals), source)
    if map_location not in (None, "cpu"):
        obj = _map_tensors(obj, lambda t: t.to(map_location))
    return obj


def _legacy_refusal(e: BaseException) -> str:
    """One line for torch's refusal of a legacy file, without its advice to switch the
    guard off (``weights_only=False`` / ``add_safe_globals``) or its terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"refused global {found.group(1)!r} in a legacy torch file (the file may be "
                "tampered with or not what it claims)")
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    if "weights_only" in first or "Weights only load failed" in first:
        first = "its contents are not plain tensors and containers"
    return f"refused or unreadable legacy torch file: {first}"


def _map_tensors(obj: Any, fn: Callable[[Any], Any]) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _map_tensors(v, fn)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


# keep the reconstructor import visible for readers: this is what old pickles name
_ = copyreg
