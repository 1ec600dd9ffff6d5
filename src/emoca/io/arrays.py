"""Plain numeric ``.npy`` / ``.npz`` files read with one-line errors that name the file.

``np.load(allow_pickle=False)`` refuses object arrays with "Object arrays cannot be loaded
when allow_pickle=False", naming neither the file nor the array, and only when the array is
first read. Here every array is read at once and any problem becomes an
:class:`emoca.errors.InputError` naming the file (and the array). Zip members whose
declared sizes cannot be trusted (a zip bomb) are refused before inflating.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from emoca.errors import InputError, file_problem

__all__ = ["read_npy", "read_npz"]

_OBJECTS = "holds Python objects (a pickle) where plain numeric arrays are expected (the file " \
    "may be tampered with or not what it claims)"


def _problem(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return _OBJECTS if "Object arrays cannot be loaded" in text else text


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` array (no pickles).

    Raises:
        FileNotFoundError: no such file.
        InputError: object array, truncated or not a .npy file (names ``path``).
    """
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise InputError(file_problem(path, f"not a readable .npy array: {_problem(e)}")) from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles), read now.

    Raises:
        FileNotFoundError: no such file.
        InputError: an object array, a zip-bomb member, a damaged archive (names ``path``
            and the array).
    """
    from emoca.io.torch_zip import member_problem

    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                problem = member_problem(info, size)
                if problem is not None:
                    raise InputError(file_problem(path, f"member {info.filename} {problem}"))
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    out[key] = z[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                    raise InputError(file_problem(path, f"array '{key}' {_problem(e)}")) from None
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(file_problem(Path(path), f"not a readable .npz archive: "
                                                  f"{_problem(e)}")) from None
    return out
