"""``torch.save`` files read without running code, and without trusting their sizes.

A zip-format torch file (torch >= 1.6, DECA's ``deca_model.tar``, Lightning ``.ckpt``) is
``<prefix>/data.pkl`` (the object, tensors as persistent ids ``("storage", dtype, key,
location, numel)``) plus one member ``<prefix>/data/<key>`` of raw bytes per storage. Each
size below is checked against the bytes really there *before* anything is allocated:

* a zip member may not claim more bytes than the archive holds (stored) or inflate more
  than :data:`MAX_INFLATE_RATIO` times its compressed size (torch never compresses);
* a storage member must hold exactly ``numel * element size`` bytes, as its record says
  (a truncated download or a record claiming 4 GiB in a 1 KB file is refused);
* a tensor view must fit in its storage: ``offset + sum((size - 1) * stride) + 1``
  elements (torch's ``set_`` would otherwise grow the storage with leftover memory).

Refusals name the file and the tensor's key path (``state_dict/deca.E_flame.weight``).
Legacy (non-zip) files go to ``torch.load(weights_only=True)``, torch's own restricted
loader, with its refusal folded to one line.
"""

from __future__ import annotations

import functools
import os
import re
import zipfile
from collections.abc import Callable
from typing import Any

from emoca.io.pickle_limits import UnsafePickleError
from emoca.io.pickle_tree import _BadTensor
from emoca.io.safe_pickle import unpickle_bytes

__all__ = ["MAX_INFLATE_RATIO", "load_torch", "torch_globals"]

#: a compressed member may inflate to at most this many times its size (+1 MiB)
MAX_INFLATE_RATIO = 64


def _element_size(dtype: Any) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def _view_problem(nbytes: int, elsize: int, offset: Any, size: Any, stride: Any) -> str | None:
    """Why a tensor view (offset, size, stride; in elements) does not fit ``nbytes``."""
    ints = [offset, *size, *stride]
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
        return f"malformed view (offset {offset!r}, size {tuple(size)}, stride {tuple(stride)})"
    available = nbytes // elsize
    if any(s == 0 for s in size):
        return None if offset <= available else f"offset {offset} beyond its storage"
    extent = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    if extent > available:
        return (f"shape {tuple(size)} (stride {tuple(stride)}, offset {offset}) needs "
                f"{extent} elements, its storage holds {available} (truncated or "
                "tampered file)")
    return None


@functools.lru_cache(maxsize=1)
def torch_globals() -> dict[tuple[str, str], Any]:
    """The torch names a checkpoint's ``data.pkl`` may use, mapped to checked rebuilders."""
    import torch

    def rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                          metadata=None):  # noqa: ANN001 - pickle signature
        if isinstance(storage, tuple):  # (untyped storage, dtype) from a zip archive
            untyped, dtype = storage
        else:  # a TypedStorage from a legacy payload
            untyped, dtype = storage._untyped_storage, storage.dtype
        if isinstance(untyped, _BadStorage):
            return _BadTensor(untyped.problem)
        size, stride = tuple(size), tuple(stride)
        problem = _view_problem(untyped.nbytes(), _element_size(dtype), offset, size, stride)
        if problem is not None:
            return _BadTensor(problem)  # the finaliser reports it with its key path
        t = torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)
        t.requires_grad_(requires_grad)
        return t

    def rebuild_parameter(data, requires_grad=True, hooks=None, state=None):  # noqa: ANN001
        if isinstance(data, _BadTensor):
            return data
        return torch.nn.Parameter(data, requires_grad=requires_grad)

    def load_from_bytes(data: bytes) -> Any:
        # a storage pickled with plain pickle carries a legacy torch.save of itself
        import io

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


def member_problem(info: zipfile.ZipInfo, archive_size: int) -> str | None:
    """Why a zip member's declared size cannot be trusted, or None (checked before reading)."""
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size or info.compress_size > archive_size:
            return (f"claims {info.file_size} bytes, the whole archive has {archive_size} "
                    "(truncated or tampered file)")
        return None
    if info.compress_size > archive_size:
        return f"claims {info.compress_size} compressed bytes in a {archive_size}-byte archive"
    if info.file_size > MAX_INFLATE_RATIO * info.compress_size + (1 << 20):
        return (f"would inflate {info.compress_size} bytes to {info.file_size} "
                f"(over {MAX_INFLATE_RATIO}x: a zip bomb)")
    return None


def read_member(zf: zipfile.ZipFile, name: str, source: str, archive_size: int) -> bytes:
    """A zip member's bytes after :func:`member_problem`; errors name the file and member."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise UnsafePickleError(f"{source}: member {name} is missing (truncated or "
                                "tampered file)") from None
    problem = member_problem(info, archive_size)
    if problem is not None:
        raise UnsafePickleError(f"{source}: member {name} {problem}")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # CRC, truncation
        raise UnsafePickleError(f"{source}: member {name} is unreadable ({e})") from None


class _BadStorage:
    """A storage whose member does not match its record; tensors on it become _BadTensor."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _read_storage(zf: zipfile.ZipFile, name: str, numel: int, dtype: Any,
                  archive_size: int) -> Any:
    """The storage's bytes as an ``UntypedStorage``, or a :class:`_BadStorage` saying why
    not; nothing is read when the sizes disagree."""
    import torch

    need = numel * _element_size(dtype)
    info = zf.NameToInfo.get(name)
    if info is None:
        return _BadStorage(f"its storage {name} is missing (truncated or tampered file)")
    if info.file_size != need:
        return _BadStorage(f"its storage {name} holds {info.file_size} bytes, the record says "
                           f"{numel} x {dtype} = {need} bytes (truncated or tampered file)")
    problem = member_problem(info, archive_size)
    if problem is not None:
        return _BadStorage(f"its storage {name} {problem}")
    try:
        raw = zf.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # CRC, truncation
        return _BadStorage(f"its storage {name} is unreadable ({e})")
    return torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else \
        torch.UntypedStorage(0)


def _load_zip(source: str, extra_globals: dict[tuple[str, str], Any] | None) -> Any:
    import torch

    archive_size = os.path.getsize(source)
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnsafePickleError(f"{source}: damaged zip archive ({e})") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise UnsafePickleError(f"{source}: zip archive without data.pkl: not a torch file")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and read_member(
                zf, f"{prefix}byteorder", source, archive_size).strip() != b"little":
            raise UnsafePickleError(f"{source}: big-endian torch files are not supported")
        storages: dict[str, tuple[Any, Any]] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
                raise UnsafePickleError(f"unexpected persistent id {pid!r}")
            _, dtype, key, _location, numel = pid[:5]
            if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or numel < 0:
                raise UnsafePickleError(f"bad storage record {pid!r}")
            key = str(key)
            if key not in storages:
                storages[key] = (_read_storage(zf, f"{prefix}data/{key}", numel, dtype,
                                               archive_size), dtype)
            return storages[key]

        data = read_member(zf, pkl[0], source, archive_size)
        before = _BadTensor.made
        obj = unpickle_bytes(data, source, encoding="utf-8", persistent_load=persistent_load,
                             extra_globals=extra_globals)
    if _BadTensor.made != before:  # one inside an object the finaliser does not walk
        raise UnsafePickleError(f"{source}: a tensor {_BadTensor.last}")
    return obj


def load_torch(path: str | os.PathLike, *, map_location: Any = "cpu",
               extra_globals: dict[tuple[str, str], Any] | None = None) -> Any:
    """Read a ``torch.save`` file (zip or legacy) without executing code.

    Zip archives (torch >= 1.6, Lightning ``.ckpt``) are read here: ``data.pkl`` goes
    through the allow-list, tensors are rebuilt from the archive's storages after the size
    checks in the module doc. Legacy files are handed to ``torch.load(weights_only=True)``.

    Returns:
        The saved object; OmegaConf containers (Lightning ``hyper_parameters``) become
        plain dicts/lists.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: refused global, unreadable file, a size that does not match the
            data (named with the tensor's key path) or a memory bomb.
    """
    import torch

    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such checkpoint file")
    if not zipfile.is_zipfile(source):
        with open(source, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip whose end (central directory) is gone
                raise UnsafePickleError(f"{source}: a torch zip archive cut short or damaged "
                                        "(no central directory): download it again")
        try:
            return torch.load(source, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises UnpicklingError / RuntimeError variants
            raise UnsafePickleError(f"{source}: {_legacy_refusal(e)}") from None
    obj = _load_zip(source, extra_globals)
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
    if "wrong byte size" in first:  # torch's own text here has unfilled %ld placeholders
        return ("a storage's recorded size does not match the bytes stored (truncated or "
                "tampered legacy torch file)")
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
